//! Broken policies must fail to load, with errors that name the file, the
//! class or rule, and the problem.

use limbic_policy::{Policy, PolicyError, BUILTIN_POLICIES, DEFAULT_POLICY_TOML};
use sha2::{Digest, Sha256};

const CLASS: &str = r#"
[thresholds]
elevated = 1.0
[[class]]
id = "push"
description = "git push"
[[class.match]]
tools = ["Bash"]
args = ['\bgit\s+push\b']
"#;

fn with_rule(rule: &str) -> String {
    format!("{CLASS}\n[[rule]]\n{rule}\n")
}

fn error_text(source: &str) -> String {
    match Policy::parse(source, "policy.test.toml") {
        Ok(_) => panic!("policy should have been rejected:\n{source}"),
        Err(err) => err.to_string(),
    }
}

fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            text.contains(part),
            "error {text:?} should mention {part:?}"
        );
    }
}

#[test]
fn valid_minimal_policy_loads() {
    let policy = Policy::parse(
        &with_rule(
            r#"id = "r"
when = { classes = ["push"], stress_at_least = "elevated" }
decision = "veto"
reason = "no"
"#,
        ),
        "policy.test.toml",
    )
    .unwrap();
    assert_eq!(policy.rule_ids().collect::<Vec<_>>(), vec!["r"]);
    assert_eq!(policy.origin(), "policy.test.toml");
    assert_eq!(policy.name(), "unnamed");
}

#[test]
fn unknown_top_level_key_is_rejected() {
    let text = error_text(&format!("fail_mod = \"open\"\n{CLASS}"));
    assert_mentions(&text, &["policy.test.toml", "top level", "fail_mod"]);
}

#[test]
fn unknown_key_in_a_rule_names_the_rule() {
    let text = error_text(&with_rule(
        r#"id = "needs-lease"
whn = { classes = ["push"] }
decision = "veto"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["policy.test.toml", "rule `needs-lease`", "whn"]);
}

#[test]
fn unknown_key_in_a_condition_names_the_rule() {
    let text = error_text(&with_rule(
        r#"id = "typo"
when = { classes = ["push"], stres_at_least = 1.0 }
decision = "veto"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `typo`", "stres_at_least"]);
}

#[test]
fn unknown_key_in_a_class_matcher_names_the_class() {
    let source = CLASS.replace("tools = [\"Bash\"]", "tool = [\"Bash\"]");
    let text = error_text(&source);
    assert_mentions(&text, &["class `push`", "tool"]);
}

#[test]
fn unknown_decision_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r1"
decision = "block"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r1`", "block", "veto"]);
}

#[test]
fn unknown_fail_mode_is_rejected() {
    let text = error_text(&format!("fail_mode = \"ajar\"\n{CLASS}"));
    assert_mentions(&text, &["ajar", "closed"]);
}

#[test]
fn bad_regex_names_class_matcher_and_pattern() {
    let source = CLASS.replace(r"'\bgit\s+push\b'", r"'git (push'");
    let text = error_text(&source);
    assert_mentions(
        &text,
        &[
            "policy.test.toml",
            "class `push` match #1",
            "args",
            "git (push",
            "regex",
        ],
    );
}

#[test]
fn bad_field_regex_names_the_field() {
    let source = format!(
        "{CLASS}\n[[class]]\nid = \"edit\"\ndescription = \"d\"\n[[class.match]]\nfield = {{ file_path = '[' }}\n"
    );
    let text = error_text(&source);
    assert_mentions(&text, &["class `edit` match #1", "field.file_path"]);
}

#[test]
fn unknown_class_in_rule_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r"
when = { classes = ["force_push"] }
decision = "veto"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r`", "unknown class `force_push`", "push"]);
}

#[test]
fn unknown_class_in_except_classes_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r"
when = { except_classes = ["read_only"] }
decision = "warn"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r`", "except_classes", "read_only"]);
}

#[test]
fn unknown_threshold_name_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r"
when = { stress_at_least = "elevatd" }
decision = "warn"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r`", "elevatd", "elevated"]);
}

#[test]
fn non_finite_threshold_is_rejected() {
    let text = error_text(&format!("{CLASS}\n").replace("elevated = 1.0", "elevated = nan"));
    assert_mentions(&text, &["[thresholds] elevated", "finite"]);
}

#[test]
fn reroute_without_kind_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r"
decision = "reroute"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r`", "needs reroute"]);
}

#[test]
fn reroute_kind_on_a_veto_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r"
decision = "veto"
reroute = "confirm"
reason = "x"
"#,
    ));
    assert_mentions(
        &text,
        &["rule `r`", "only applies to decision = \"reroute\""],
    );
}

#[test]
fn unknown_reroute_kind_is_rejected() {
    let text = error_text(&with_rule(
        r#"id = "r"
decision = "reroute"
reroute = "ask"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r`", "ask", "confirm"]);
}

#[test]
fn substitute_needs_a_template_and_only_with_substitute() {
    let text = error_text(&with_rule(
        r#"id = "r"
decision = "reroute"
reroute = "substitute"
reason = "x"
"#,
    ));
    assert_mentions(&text, &["rule `r`", "substitute template"]);
    let text = error_text(&with_rule(
        r#"id = "r"
decision = "reroute"
reroute = "confirm"
substitute = "git push --dry-run"
reason = "x"
"#,
    ));
    assert_mentions(
        &text,
        &["rule `r`", "only used with reroute = \"substitute\""],
    );
}

#[test]
fn duplicate_ids_are_rejected() {
    let text = error_text(&format!(
        "{CLASS}{}",
        CLASS.replace("[thresholds]\nelevated = 1.0\n", "")
    ));
    assert_mentions(&text, &["class `push`", "duplicate class id"]);
    let rule = "id = \"same\"\ndecision = \"warn\"\nreason = \"x\"\n";
    let text = error_text(&format!("{}\n[[rule]]\n{rule}", with_rule(rule)));
    assert_mentions(&text, &["rule `same`", "duplicate rule id"]);
}

#[test]
fn reserved_rule_ids_are_rejected() {
    let text = error_text(&with_rule(
        "id = \"default\"\ndecision = \"warn\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `default`", "reserved"]);
}

#[test]
fn unknown_placeholder_in_reason_or_substitute_is_rejected() {
    let text = error_text(&with_rule(
        "id = \"r\"\ndecision = \"warn\"\nreason = \"stress {stres}\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "reason", "{stres}"]);
    let text = error_text(&with_rule(
        "id = \"r\"\ndecision = \"reroute\"\nreroute = \"substitute\"\nsubstitute = \"{cmd} --dry-run\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "substitute", "{cmd}"]);
}

#[test]
fn empty_reason_is_rejected() {
    let text = error_text(&with_rule(
        "id = \"r\"\ndecision = \"warn\"\nreason = \"  \"\n",
    ));
    assert_mentions(&text, &["rule `r`", "empty reason"]);
}

#[test]
fn unknown_tool_group_is_rejected() {
    let source = CLASS.replace("tools = [\"Bash\"]", "tools = [\"@shel\"]");
    let text = error_text(&source);
    assert_mentions(&text, &["class `push` match #1", "@shel"]);
}

#[test]
fn matcher_with_only_exclusions_is_rejected() {
    let source = CLASS.replace(
        "tools = [\"Bash\"]\nargs = ['\\bgit\\s+push\\b']",
        "except_tools = [\"Read\"]",
    );
    let text = error_text(&source);
    assert_mentions(&text, &["class `push` match #1", "at least one of"]);
}

#[test]
fn class_without_matchers_is_rejected() {
    let text = error_text("[[class]]\nid = \"empty\"\ndescription = \"d\"\n");
    assert_mentions(&text, &["class `empty`", "no [[class.match]]"]);
}

#[test]
fn empty_class_list_and_contradictory_conditions_are_rejected() {
    let text = error_text(&with_rule(
        "id = \"r\"\nwhen = { classes = [] }\ndecision = \"warn\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "never match"]);
    let text = error_text(&with_rule(
        "id = \"r\"\nwhen = { or_spike = true }\ndecision = \"warn\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "or_spike", "stress_at_least"]);
    let text = error_text(&with_rule(
        "id = \"r\"\nwhen = { stress_at_least = 1, or_spike = true, spike = false }\ndecision = \"warn\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "contradict"]);
    let text = error_text(&with_rule(
        "id = \"r\"\nwhen = { read_only = false }\ndecision = \"warn\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "read-only class"]);
}

#[test]
fn emotion_names_are_checked_against_the_declared_list() {
    let source = format!(
        "emotions = [\"desperation\"]\n{}",
        with_rule("id = \"r\"\nwhen = { emotions = { despreation = 1.5 } }\ndecision = \"warn\"\nreason = \"x\"\n")
    );
    let text = error_text(&source);
    assert_mentions(&text, &["rule `r`", "despreation", "desperation"]);
}

#[test]
fn unknown_read_only_or_fail_safe_class_is_rejected() {
    let text = error_text(&format!("read_only_class = \"reads\"\n{CLASS}"));
    assert_mentions(&text, &["read_only_class", "reads"]);
    let text = error_text(&format!("fail_closed_allow = [\"stops\"]\n{CLASS}"));
    assert_mentions(&text, &["fail_closed_allow", "stops"]);
}

#[test]
fn unsupported_version_is_rejected() {
    let text = error_text(&format!("version = 2\n{CLASS}"));
    assert_mentions(&text, &["version", "2"]);
}

#[test]
fn toml_syntax_errors_say_so_with_a_line() {
    let text = error_text("[[class]\nid = \"x\"\n");
    assert_mentions(&text, &["policy.test.toml", "TOML syntax", "line 1"]);
}

#[test]
fn wrong_value_type_is_rejected() {
    let text = error_text(&with_rule(
        "id = \"r\"\nwhen = { stress_at_least = true }\ndecision = \"warn\"\nreason = \"x\"\n",
    ));
    assert_mentions(&text, &["rule `r`", "threshold"]);
}

#[test]
fn load_reports_the_path_for_missing_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = Policy::load(&missing).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }));
    assert_mentions(&err.to_string(), &["nope.toml"]);

    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        with_rule("id = \"r\"\ndecision = \"maybe\"\nreason = \"x\"\n"),
    )
    .unwrap();
    let err = Policy::load(&broken).unwrap_err();
    assert_mentions(&err.to_string(), &["broken.toml", "rule `r`", "maybe"]);
}

#[test]
fn unknown_builtin_lists_the_available_ones() {
    let err = Policy::builtin("laptop").unwrap_err();
    assert_mentions(
        &err.to_string(),
        &["laptop", "default", "edge-robot", "workstation"],
    );
}

#[test]
fn hash_is_sha256_of_the_canonical_text() {
    let policy = Policy::from_toml_str(CLASS).unwrap();
    assert_eq!(policy.hash(), hex::encode(Sha256::digest(CLASS.as_bytes())));
    assert_eq!(policy.hash().len(), 64);
    // CRLF checkouts and a BOM do not change the identity of a policy...
    let crlf = format!("\u{feff}{}", CLASS.replace('\n', "\r\n"));
    assert_eq!(Policy::from_toml_str(&crlf).unwrap().hash(), policy.hash());
    // ...but any real edit does, even a comment.
    let edited = format!("{CLASS}# tuned\n");
    assert_ne!(
        Policy::from_toml_str(&edited).unwrap().hash(),
        policy.hash()
    );
}

#[test]
fn builtin_default_is_the_embedded_file() {
    let policy = Policy::builtin_default().unwrap();
    assert_eq!(policy.source(), DEFAULT_POLICY_TOML.replace("\r\n", "\n"));
    assert_eq!(policy.origin(), "<builtin:default>");
    assert_eq!(policy.name(), "default");
    let on_disk = Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../firmware-configs/policy.default.toml"
    ))
    .unwrap();
    assert_eq!(on_disk.hash(), policy.hash());
}

#[test]
fn every_shipped_policy_documents_its_classes_and_thresholds() {
    for (name, _) in BUILTIN_POLICIES {
        let policy = Policy::builtin(name).unwrap();
        assert!(policy.description().is_some(), "{name}");
        for id in policy.class_ids() {
            assert!(
                !policy.class_description(id).unwrap_or("").is_empty(),
                "{name}: {id}"
            );
        }
        for threshold in ["moderate", "elevated", "high"] {
            assert!(policy.threshold(threshold).is_some(), "{name}: {threshold}");
        }
        let thresholds = policy.thresholds();
        assert!(
            thresholds["moderate"] < thresholds["elevated"]
                && thresholds["elevated"] < thresholds["high"],
            "{name}"
        );
    }
}

#[test]
fn empty_policy_is_rejected() {
    // An empty or comment-only file is valid TOML; loading it would allow
    // everything, so it is far more likely a truncated file than intent.
    for source in [
        "",
        "# just a comment\n",
        "name = \"x\"\n[thresholds]\nhigh = 2.0\n",
    ] {
        let text = error_text(source);
        assert_mentions(&text, &["policy.test.toml", "no classes and no rules"]);
    }
}

#[test]
fn firmware_configs_are_byte_equal_to_the_packaged_policies() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../firmware-configs");
    for (name, embedded) in limbic_policy::BUILTIN_POLICIES {
        let path = format!("{root}/policy.{name}.toml");
        let on_disk = std::fs::read(&path).unwrap();
        assert!(
            on_disk == embedded.as_bytes(),
            "{path} differs from crates/limbic-policy/policies/{name}.toml; copy one over the other"
        );
    }
}

mod fuzz {
    //! A policy file is outside input: any edit of a shipped policy loads or fails with an
    //! error, never a panic.
    use limbic_policy::{Policy, BUILTIN_POLICIES};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn mutated_policies_never_panic(
            which in any::<prop::sample::Index>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
        ) {
            let (_, source) = BUILTIN_POLICIES[which.index(BUILTIN_POLICIES.len())];
            let mut bytes = source.as_bytes().to_vec();
            for (at, value, op) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = value,
                    1 => bytes.insert(i, value),
                    2 => { bytes.remove(i); }
                    _ => bytes.truncate(i),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = Policy::parse(&text, "fuzz.toml");
        }

        #[test]
        fn any_text_as_a_policy_never_panics(text in "(\\[|\\]|=|\"|'|\\n|[a-z_]{1,8}|[0-9.]{1,4}| ){0,60}") {
            let _ = Policy::parse(&text, "fuzz.toml");
        }
    }
}
