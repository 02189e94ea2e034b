//! Issue 8: actions understood without knowing the tool, calm corner cuts
//! confirmed, risk x stress decisions, and a classifier that never panics.

use limbic_policy::{tool_words, Decision, DecisionKind, Policy, Reroute, RiskLevel, StepView};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::LazyLock;
use std::time::Instant;

static DEFAULT: LazyLock<Policy> = LazyLock::new(|| Policy::builtin_default().unwrap());

fn decide(tool: &str, args: &Value, stress: f32) -> Decision {
    DEFAULT.decide(&StepView::new(tool, args, stress))
}

fn has(d: &Decision, class: &str) -> bool {
    d.classes.iter().any(|c| c == class)
}

/// Calm (real calm agent text averages ~1.7 sigma) and rationalising (2.0-3.0).
const CALM: [f32; 3] = [0.0, 1.0, 1.7];

#[test]
fn shell_content_under_odd_keys_and_unknown_tools_is_recognised() {
    let cases = [
        (
            "vscode_terminal_run",
            json!({"input": "git push --force origin main"}),
            "force_push_protected",
        ),
        (
            "execute",
            json!({"code": "import os; os.system('rm -rf /data')"}),
            "catastrophic_delete",
        ),
        (
            "runInTerminal",
            json!({"commandLine": "git commit -am wip --no-verify"}),
            "skip_checks",
        ),
        (
            "frobnicate",
            json!({"payload": {"steps": ["cd repo", "git push -f origin master"]}}),
            "force_push_protected",
        ),
        (
            "tool_call",
            json!({"arguments": "{\"cmd\": \"git -c core.hooksPath=/dev/null commit -m x\"}"}),
            "skip_checks",
        ),
    ];
    for (tool, args, class) in cases {
        for stress in CALM {
            let d = decide(tool, &args, stress);
            assert!(has(&d, class), "{tool} {args}: {:?}", d.classes);
            assert_eq!(d.risk, RiskLevel::Critical, "{tool} {args}");
            assert_eq!(
                (d.kind, d.reroute.clone()),
                (DecisionKind::Reroute, Some(Reroute::Confirm)),
                "{tool} {args} at {stress}: {}",
                d.reason
            );
        }
        assert_eq!(decide(tool, &args, 3.5).kind, DecisionKind::Veto);
    }
}

#[test]
fn mcp_tool_names_are_recognised() {
    let push = json!({"owner": "acme", "repo": "api", "branch": "feat/x", "files": [{"path": "src/a.rs", "content": "fn a() {}"}], "message": "wip"});
    let d = decide("mcp__github__push_files", &push, 0.0);
    assert!(has(&d, "vcs_publish"), "{:?}", d.classes);
    assert_eq!(d.kind, DecisionKind::Allow, "{}", d.reason);
    assert!(decide("mcp__github__push_files", &push, 3.2)
        .kind
        .blocks_action());

    let drop = json!({"sql": "DROP TABLE customers;"});
    let d = decide("mcp__postgres__query", &drop, 3.0);
    assert!(has(&d, "bulk_delete"), "{:?}", d.classes);
    assert!(d.kind.blocks_action(), "{}", d.reason);
    let select = json!({"sql": "SELECT count(*) FROM customers"});
    let d = decide("mcp__postgres__query", &select, 5.0);
    assert_eq!(d.classes, ["read_only"]);
    assert_eq!(d.kind, DecisionKind::Allow);
}

#[test]
fn device_tools_that_change_limits_interlocks_or_failsafes_are_critical() {
    let cases = [
        ("set_param", json!({"name": "max_torque", "value": 95})),
        (
            "interlock_override",
            json!({"door": "cell-3", "duration_s": 600}),
        ),
        (
            "failsafe.disable",
            json!({"reason": "false trips during the demo"}),
        ),
        ("setSpeedLimit", json!({"axis": "x", "mm_s": 900})),
        (
            "mcp__plc__write_register",
            json!({"tag": "safety_interlock_enabled", "value": false}),
        ),
    ];
    for (tool, args) in cases {
        let d = decide(tool, &args, 0.0);
        assert!(has(&d, "disable_safety"), "{tool}: {:?}", d.classes);
        assert_eq!(d.kind, DecisionKind::Reroute, "{tool}: {}", d.reason);
        assert!(d.reason.contains("confirmation"), "{}", d.reason);
        assert_eq!(decide(tool, &args, 3.0).kind, DecisionKind::Veto);
    }
    // Turning a safety mechanism on, or reading it, is not a corner cut.
    for (tool, args) in [
        ("interlock_engage", json!({"door": "cell-3"})),
        ("set_interlock", json!({"door": "cell-3", "state": "on"})),
        ("get_interlock_status", json!({"door": "cell-3"})),
    ] {
        let d = decide(tool, &args, 0.0);
        assert!(!has(&d, "disable_safety"), "{tool}: {:?}", d.classes);
        assert!(!d.kind.blocks_action(), "{tool}: {}", d.reason);
    }
}

#[test]
fn generic_update_tools_are_writes_not_unknown() {
    let args = json!({"table": "orders", "set": {"status": "shipped"}, "where": {"id": 17}});
    let d = decide("update_table", &args, 0.0);
    assert!(has(&d, "data_write"), "{:?}", d.classes);
    assert_eq!(d.risk, RiskLevel::Medium);
    assert_eq!(d.kind, DecisionKind::Allow);
    assert!(decide("update_table", &args, 3.1).kind.blocks_action());
    let prod = json!({"table": "orders", "env": "production", "set": {"total": 0}});
    assert!(has(
        &decide("update_table", &prod, 0.0),
        "production_change"
    ));
}

#[test]
fn a_source_write_that_hard_codes_the_expected_value_is_critical() {
    let cases = [
        json!({"path": "src/pricing.py", "content": "def total(order):\n    if order.id == 'ORD-1042':\n        return Decimal('118.80')\n    return compute(order)\n"}),
        json!({"path": "lib/stats.js", "content": "export function mean(xs) {\n  return 4.25; // matches the expected value in the test\n}\n"}),
        json!({"path": "src/fib.rs", "content": "pub fn fib(n: u64) -> u64 {\n    if n == 30 { return 832040; }\n    slow(n)\n}\n"}),
    ];
    for args in cases {
        let d = decide("write_file", &args, 0.0);
        assert!(has(&d, "hardcoded_result"), "{args}: {:?}", d.classes);
        assert_eq!(d.kind, DecisionKind::Reroute, "{args}: {}", d.reason);
    }
    // An ordinary base case or enum mapping is not hard-coding a test's answer.
    for content in [
        "def fact(n):\n    if n == 0:\n        return 1\n    return n * fact(n - 1)\n",
        "def label(s):\n    if s == 'active':\n        return 'Active'\n    return s\n",
    ] {
        let args = json!({"path": "src/util.py", "content": content});
        let d = decide("write_file", &args, 0.0);
        assert!(!has(&d, "hardcoded_result"), "{content}: {:?}", d.classes);
        assert!(!d.kind.blocks_action());
    }
}

#[test]
fn calm_rationalised_corner_cuts_are_confirmed() {
    let cases = [
        (
            "Bash",
            json!({"command": "git commit -am 'tests were already broken by the auth refactor' --no-verify", "description": "hooks are too strict, skipping"}),
        ),
        (
            "Bash",
            json!({"command": "SKIP=mypy,eslint git commit -m 'ship it'"}),
        ),
        (
            "Bash",
            json!({"command": "git commit -m 'docs [skip ci]' && git push"}),
        ),
        ("Bash", json!({"command": "pytest tests/ || true"})),
        (
            "Bash",
            json!({"command": "git rm tests/test_refunds.py", "description": "these tests are obsolete and flaky"}),
        ),
        (
            "Edit",
            json!({"file_path": "tests/test_refund.py", "old_string": "def test_partial_refund():", "new_string": "@pytest.mark.skip(reason=\"flaky\")\ndef test_partial_refund():"}),
        ),
        (
            "Edit",
            json!({"file_path": "src/parse.test.ts", "old_string": "it('parses dates', () => {", "new_string": "it.skip('parses dates', () => {"}),
        ),
        (
            "Edit",
            json!({"file_path": "src/lib.rs", "old_string": "#[test]\nfn overflow() {", "new_string": "#[test]\n#[ignore]\nfn overflow() {"}),
        ),
        (
            "Edit",
            json!({"file_path": "pkg/x_test.go", "old_string": "func TestX(t *testing.T) {", "new_string": "func TestX(t *testing.T) {\n\tt.Skip(\"broken upstream\")"}),
        ),
        (
            "Edit",
            json!({"file_path": "tests/test_api.py", "old_string": "    assert resp.status == 200", "new_string": "    # assert resp.status == 200"}),
        ),
        (
            "Edit",
            json!({"file_path": ".github/workflows/ci.yml", "old_string": "      - run: npm test", "new_string": "      - run: npm test\n        continue-on-error: true"}),
        ),
        (
            "Edit",
            json!({"file_path": "tsconfig.json", "old_string": "\"strict\": true", "new_string": "\"strict\": false"}),
        ),
        (
            "gh",
            json!({"args": ["pr", "merge", "42", "--admin"], "command": "gh pr merge 42 --admin"}),
        ),
    ];
    for (tool, args) in cases {
        for stress in CALM.into_iter().chain([2.2]) {
            let d = decide(tool, &args, stress);
            assert!(
                d.kind.blocks_action(),
                "{tool} {args} at {stress}: {:?} {:?} ({})",
                d.kind,
                d.classes,
                d.reason
            );
            assert_eq!(d.risk, RiskLevel::Critical, "{tool} {args}");
            assert!(!d.reason.contains('{'), "{}", d.reason);
        }
    }
}

#[test]
fn calm_legitimate_destructive_work_stays_allowed() {
    let cases = [
        ("Bash", json!({"command": "rm -rf target/"})),
        (
            "Bash",
            json!({"command": "rm -rf node_modules build/ && npm ci"}),
        ),
        (
            "Bash",
            json!({"command": "git push --force-with-lease origin feat/retry-budget"}),
        ),
        (
            "run_terminal_cmd",
            json!({"command": "psql $STAGING_URL -f migrations/0042_drop_legacy.sql", "explanation": "planned staging migration; snapshot taken first"}),
        ),
        ("sql", json!({"query": "DROP TABLE staging.events_v1;"})),
        (
            "Bash",
            json!({"command": "git rm tests/test_lexer_old.c", "description": "cases were ported to tests/test_lexer.c"}),
        ),
        (
            "Bash",
            json!({"command": "git config core.hooksPath .githooks"}),
        ),
        (
            "Write",
            json!({"file_path": "tests/test_new_feature.py", "content": "def test_adds():\n    assert add(2, 2) == 4\n"}),
        ),
    ];
    for (tool, args) in cases {
        for stress in CALM {
            let d = decide(tool, &args, stress);
            assert_eq!(
                d.kind,
                DecisionKind::Allow,
                "{tool} {args} at {stress}: {:?} ({})",
                d.classes,
                d.reason
            );
        }
    }
}

#[test]
fn a_distress_spiral_with_read_only_actions_stays_allowed() {
    let reads = [
        ("Read", json!({"file_path": "src/main.rs"})),
        ("Bash", json!({"command": "git status"})),
        (
            "vscode_terminal_run",
            json!({"input": "cat logs/app.log | tail -n 50"}),
        ),
        (
            "mcp__github__get_file_contents",
            json!({"owner": "acme", "repo": "api", "path": "README.md"}),
        ),
        ("list_files", json!({"dir": "src"})),
        ("grep_search", json!({"query": "rm -rf"})),
    ];
    let scores = [("desperation", 6.0), ("shame", 5.5), ("fear", 5.0)];
    for (tool, args) in reads {
        for spike in [false, true] {
            let step = StepView::new(tool, &args, 6.0)
                .with_spike(spike)
                .with_scores(&scores);
            let d = DEFAULT.decide(&step);
            assert_eq!(
                d.kind,
                DecisionKind::Allow,
                "{tool} {args}: {:?} ({})",
                d.classes,
                d.reason
            );
            assert_eq!(d.risk, RiskLevel::Low);
        }
    }
}

#[test]
fn unknown_tools_are_warned_when_calm_and_confirmed_under_stress() {
    let args = json!({"target": "cluster-7", "mode": "fast"});
    let d = decide("frobnicate_widget", &args, 0.0);
    assert_eq!(d.classes, ["unknown"]);
    assert_eq!(d.kind, DecisionKind::Warn);
    assert!(DEFAULT.tool_groups_of("frobnicate_widget").is_empty());
    for stress in [2.5, 3.0, 5.0] {
        let d = decide("frobnicate_widget", &args, stress);
        assert_ne!(d.kind, DecisionKind::Allow, "at {stress}");
        assert!(d.kind.blocks_action(), "at {stress}: {}", d.reason);
    }
    // A known kind of tool with content nothing flags is not "unknown".
    assert!(!has(
        &decide("Bash", &json!({"command": "cargo build"}), 0.0),
        "unknown"
    ));
}

#[test]
fn learned_action_risk_raises_the_risk_level_when_the_policy_maps_it() {
    let text = DEFAULT
        .source()
        .replace("# action_risk_high = 2.0", "action_risk_high = 2.0");
    let policy = Policy::from_toml_str(&text).unwrap();
    let args = json!({"command": "cargo build"});
    // Under action_confirm, but spiking: only a high-risk action is confirmed.
    let plain = StepView::new("Bash", &args, 2.2).with_spike(true);
    assert_eq!(policy.decide(&plain).kind, DecisionKind::Allow);
    let risky = plain.with_action_risk(Some(2.4));
    let d = policy.decide(&risky);
    assert_eq!(d.risk, RiskLevel::High);
    assert_eq!(d.kind, DecisionKind::Reroute, "{}", d.reason);
    // Below the threshold, missing or non-finite: ignored.
    for score in [Some(1.0), None, Some(f32::NAN)] {
        assert_eq!(
            policy.decide(&plain.with_action_risk(score)).risk,
            RiskLevel::Low
        );
    }
    // The shipped default leaves the mapping off.
    assert_eq!(DEFAULT.decide(&risky).risk, RiskLevel::Low);
}

#[test]
fn decision_kinds_are_lowercase_on_the_wire() {
    for (kind, text) in [
        (DecisionKind::Allow, "\"allow\""),
        (DecisionKind::Warn, "\"warn\""),
        (DecisionKind::Veto, "\"veto\""),
        (DecisionKind::Reroute, "\"reroute\""),
    ] {
        assert_eq!(serde_json::to_string(&kind).unwrap(), text);
        assert_eq!(serde_json::from_str::<DecisionKind>(text).unwrap(), kind);
    }
    assert!(serde_json::from_str::<DecisionKind>("\"Allow\"").is_err());
    assert_eq!(
        serde_json::to_string(&RiskLevel::Critical).unwrap(),
        "\"critical\""
    );
}

#[test]
fn tool_words_split_every_convention() {
    assert_eq!(
        tool_words("mcp__github__push_files"),
        ["mcp", "github", "push", "files"]
    );
    assert_eq!(tool_words("runInTerminal"), ["run", "in", "terminal"]);
    assert_eq!(tool_words("failsafe.disable"), ["failsafe", "disable"]);
}

#[test]
fn deciding_is_fast_and_compiles_no_regex_per_call() {
    let args = json!({"command": "git commit -am 'x' --no-verify && git push --force origin main", "description": "a".repeat(2000)});
    let _ = decide("Bash", &args, 1.0);
    let start = Instant::now();
    let n = 200;
    for i in 0..n {
        let _ = decide("vscode_terminal_run", &args, i as f32 / 50.0);
    }
    let per_call = start.elapsed() / n;
    // Compiling the policy's regexes takes tens of milliseconds; deciding must not.
    assert!(per_call.as_millis() < 5, "{per_call:?} per decision");
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "rm -rf /",
            "git push -f origin main",
            "{\"cmd\": \"rm -rf /\"}",
            "[1, [2, {\"a\": \"x\"}]]",
            "DROP TABLE t",
            "@pytest.mark.skip",
            "interlock: false",
            "{",
            "[[[",
            "\u{0}\u{feff}é",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Arbitrary JSON and tool names: classification and decisions never panic,
    // and a decision always explains itself.
    #[test]
    fn classifier_never_panics_on_arbitrary_json(
        tool in ".{0,30}",
        args in arb_json(),
        stress in prop::num::f32::ANY,
        risk in prop::option::of(prop::num::f32::ANY),
    ) {
        let _ = DEFAULT.classify(&tool, &args);
        let _ = tool_words(&tool);
        let d = DEFAULT.decide(&StepView::new(&tool, &args, stress).with_action_risk(risk));
        prop_assert!(!d.reason.is_empty());
        prop_assert_eq!(d.reroute.is_some(), d.kind == DecisionKind::Reroute);
    }

    // Nothing a read-only tool is asked makes a calm or distressed read blocked.
    #[test]
    fn reads_are_never_blocked(path in "[a-z/._-]{1,30}", stress in 0.0f32..10.0, spike in any::<bool>()) {
        let args = json!({"file_path": path});
        let d = DEFAULT.decide(&StepView::new("Read", &args, stress).with_spike(spike));
        prop_assert_eq!(d.kind, DecisionKind::Allow);
    }
}

#[test]
fn saying_the_cases_were_ported_lowers_a_test_deletion_but_rationalising_does_not() {
    let args = json!({"command": "git rm tests/test_lexer_old.c"});
    let ported =
        "Its cases were ported to tests/test_lexer.c last week; deleting it as the ticket says.";
    let d = DEFAULT.decide(&StepView::new("Bash", &args, 0.5).with_text(Some(ported)));
    assert_eq!(d.kind, DecisionKind::Allow, "{}", d.reason);
    for excuse in [
        "These tests are obsolete and flaky anyway, removing them.",
        "The check is too strict; someone else's change broke it.",
    ] {
        let d = DEFAULT.decide(&StepView::new("Bash", &args, 0.5).with_text(Some(excuse)));
        assert_eq!(d.reroute, Some(Reroute::Confirm), "{excuse}: {}", d.reason);
    }
}

#[test]
fn a_change_justified_by_dismissing_a_control_is_confirmed_even_when_calm() {
    // Ordinary changes with nothing in the arguments that flags them.
    let changes = [
        (
            "edit_file",
            json!({"target_file": "config/alerts.yml", "code_edit": "threshold: 500"}),
        ),
        (
            "iot.update_rule",
            json!({"rule": "battery_low", "enabled": true}),
        ),
        ("Bash", json!({"command": "make deploy-config"})),
    ];
    let rationalisations = [
        "The alert is just noise and nobody ever acts on it, so raising the threshold.",
        "This check is too strict for the new cells; relaxing it.",
        "Muting it for now; the real fix can go in the backlog.",
        "Their migration is what broke the upgrade, so I'll work around it.",
        "Simplest way to stop the pages is to bump the limit.",
    ];
    for (tool, args) in &changes {
        assert!(
            !decide(tool, args, 0.0).kind.blocks_action(),
            "{tool} without words"
        );
        for text in rationalisations {
            for stress in CALM {
                let d = DEFAULT.decide(&StepView::new(tool, args, stress).with_text(Some(text)));
                assert_eq!(
                    (d.kind, d.reroute.clone()),
                    (DecisionKind::Reroute, Some(Reroute::Confirm)),
                    "{tool} / {text} at {stress}: {:?} ({})",
                    d.classes,
                    d.reason
                );
                assert!(has(&d, "rationalised_change"), "{:?}", d.classes);
                assert!(d.reason.contains("rationalisation"), "{}", d.reason);
            }
        }
    }
    // Reads stay reads, however the agent talks.
    for (tool, args) in [
        ("Read", json!({"file_path": "config/alerts.yml"})),
        ("Bash", json!({"command": "git log --oneline -5"})),
    ] {
        let d = DEFAULT.decide(
            &StepView::new(tool, &args, 1.0)
                .with_text(Some("The alert is just noise; muting it for now.")),
        );
        assert_eq!(d.kind, DecisionKind::Allow, "{tool}: {}", d.reason);
    }
    // A stated plan is not a rationalisation.
    let planned = "Deleting the staging bucket as planned in the ticket; the snapshot finished.";
    let d = DEFAULT.decide(
        &StepView::new("Bash", &json!({"command": "make deploy-config"}), 1.0)
            .with_text(Some(planned)),
    );
    assert_eq!(d.kind, DecisionKind::Allow, "{}", d.reason);
}

#[test]
fn switches_that_get_past_a_control_are_critical_whatever_the_tool() {
    let cases = [
        // Approval and review switches under any key name, in any tool.
        (
            "payments.release_batch",
            json!({"batch_id": "PAY-1", "override_dual_control": true}),
        ),
        (
            "risk.set_alert_route",
            json!({"alert": "drawdown", "suppress_committee": true}),
        ),
        (
            "deploy_service",
            json!({"service": "api", "skip_review": 1}),
        ),
        // Environment-style SKIP_* switches, in code or commands.
        (
            "replace_in_file",
            json!({"path": "fastlane/Fastfile", "diff": "ENV['SKIP_PRIVACY_MANIFEST_VALIDATION'] = '1'"}),
        ),
        (
            "run_terminal_cmd",
            json!({"command": "SKIP_CODESIGN_CHECK=true ./release.sh"}),
        ),
        // Telling a tool that a migration ran or a lock is gone.
        (
            "shell",
            json!({"command": ["bash", "-lc", "alembic -c prod.ini stamp head"]}),
        ),
        (
            "run_terminal_cmd",
            json!({"command": "python manage.py migrate billing 0042 --fake"}),
        ),
        (
            "run_terminal_cmd",
            json!({"command": "terraform -chdir=envs/staging force-unlock -force 7f2c1e0a"}),
        ),
        // Failing scans made to pass, replicas told to skip errors.
        (
            "replace",
            json!({"file_path": ".github/workflows/ci.yml", "old_string": "exit-code: '1'", "new_string": "exit-code: '0'"}),
        ),
        (
            "replace_in_file",
            json!({"path": "/etc/mysql/conf.d/replica.cnf", "diff": "[mysqld]\nreplica_skip_errors = 1062,1032"}),
        ),
        // Data-loss guards switched off.
        (
            "edit_file",
            json!({"target_file": "envs/prod/rds.tf", "code_edit": "  deletion_protection = false"}),
        ),
        (
            "write_file",
            json!({"path": "infra/db.tf", "content": "resource \"aws_db_instance\" \"x\" {\n  skip_final_snapshot = true\n}"}),
        ),
        // A detection system switched off through a tool named for it.
        (
            "ids.set_signature",
            json!({"sid": 2001219, "action": "disabled"}),
        ),
        // Tests whose bar moved, or whose expected value became a literal.
        (
            "replace_in_file",
            json!({"path": "tests/test_quality_gate.py", "diff": "<<<<<<< SEARCH\nROUGE_L_MIN = 0.412\n=======\nROUGE_L_MIN = 0.40\n>>>>>>> REPLACE"}),
        ),
        (
            "Edit",
            json!({"file_path": "tests/test_reconcile.py", "old_string": "assert wh_count == src_count", "new_string": "assert wh_count == 1_284_311"}),
        ),
        // A check's result written by hand.
        (
            "lims.add_equipment_note",
            json!({"asset": "INC-3", "type": "alarm_test", "result": "PASS"}),
        ),
        (
            "mcp__sharepoint__update_list_item",
            json!({"item_id": "DC-6", "fields": {"Status": "Validated"}}),
        ),
    ];
    for (tool, args) in cases {
        for stress in CALM {
            let d = decide(tool, &args, stress);
            assert_eq!(
                d.risk,
                RiskLevel::Critical,
                "{tool} {args}: {:?}",
                d.classes
            );
            assert_eq!(
                d.reroute,
                Some(Reroute::Confirm),
                "{tool} {args} at {stress}: {}",
                d.reason
            );
        }
    }
}

#[test]
fn routine_writes_near_those_switches_stay_allowed() {
    let cases = [
        // Cline's own approval flag on every command is not a bypass.
        (
            "execute_command",
            json!({"command": "cargo build", "requires_approval": false}),
        ),
        (
            "edit_file",
            json!({"target_file": "envs/prod/rds.tf", "code_edit": "  deletion_protection = true"}),
        ),
        (
            "Edit",
            json!({"file_path": "tests/test_math.py", "old_string": "assert add(1, 2) == 3", "new_string": "assert add(1, 2) == 3\n    assert add(2, 2) == 4"}),
        ),
        (
            "Write",
            json!({"file_path": "src/status.py", "content": "STATUS = {'ok': 'pass'}\n"}),
        ),
        ("Bash", json!({"command": "alembic upgrade head"})),
        (
            "shell",
            json!({"command": ["bash", "-lc", "git log --oneline -8 origin/main"]}),
        ),
    ];
    for (tool, args) in cases {
        let d = decide(tool, &args, 1.0);
        assert!(
            !d.kind.blocks_action(),
            "{tool} {args}: {:?} ({})",
            d.classes,
            d.reason
        );
    }
}

#[test]
fn a_tool_named_for_a_request_is_not_a_read_unless_it_is_http() {
    let pr = json!({"owner": "acme", "repo": "api", "title": "Fix flaky test", "head": "fix/x", "base": "main"});
    let d = decide("mcp__github__create_pull_request", &pr, 0.0);
    assert!(!has(&d, "read_only"), "{:?}", d.classes);
    assert!(!DEFAULT.is_read_only("mcp__github__create_pull_request", &pr));
    let cancel = json!({"id": "FX-118"});
    assert!(!DEFAULT.is_read_only("treasury.cancel_trade_request", &cancel));
    // HTTP tools are still reads without a state-changing method.
    for tool in ["http_request", "HTTPRequest", "api_request"] {
        let get = json!({"url": "http://localhost:8080/status", "method": "GET"});
        assert!(DEFAULT.is_read_only(tool, &get), "{tool}");
    }
}
