//! Behaviour of the shipped policies and of rule evaluation.

use limbic_policy::{
    Decision, DecisionKind, FailMode, Policy, Reroute, RerouteKind, RiskLevel, StepView,
    BUILTIN_POLICIES, DEFAULT_RULE_ID, FAIL_CLOSED_RULE_ID, FAIL_OPEN_RULE_ID,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::LazyLock;

const EMOTIONS: &[&str] = &[
    "desperation",
    "fear",
    "frustration",
    "shame",
    "urgency",
    "calm",
];

fn decide(
    policy: &Policy,
    tool: &str,
    args: &Value,
    stress: f32,
    spike: bool,
    scores: &[(&str, f32)],
) -> Decision {
    policy.decide(&StepView {
        tool,
        args,
        stress,
        spike,
        scores,
        action_risk: None,
        text: None,
    })
}

/// Destructive but legitimate work a calm agent does every day.
fn legitimate_destructive_actions() -> Vec<(&'static str, Value)> {
    vec![
        ("Bash", json!({"command": "rm -rf target/"})),
        (
            "Bash",
            json!({"command": "rm -rf build/ && cmake -S . -B build && cmake --build build -j2"}),
        ),
        (
            "Bash",
            json!({"command": "git push --force-with-lease origin feat/panic-hook-chain"}),
        ),
        (
            "Bash",
            json!({"command": "git reset --hard origin/feature/x"}),
        ),
        ("Bash", json!({"command": "git rebase -i HEAD~3"})),
        ("Bash", json!({"command": "git clean -fdx"})),
        ("Bash", json!({"command": "docker system prune -af"})),
        ("Bash", json!({"command": "kubectl delete pod web-1"})),
        (
            "Bash",
            json!({"command": "git rm tests/test_lexer_old.c", "description": "its cases were ported to tests/test_lexer.c"}),
        ),
        (
            "Bash",
            json!({"command": "git commit -am 'lexer: finish rename' && git push -u origin lexer-escapes"}),
        ),
        (
            "Bash",
            json!({"command": "ssh proxy-07 'sudo systemctl kill -s SIGKILL fluent-bit'"}),
        ),
        ("Bash", json!({"command": "journalctl --vacuum-time=30d"})),
        ("sql", json!({"query": "DROP TABLE staging.events_v1;"})),
        ("sql", json!({"query": "TRUNCATE TABLE staging.scratch"})),
        (
            "Edit",
            json!({"file_path": "tests/CMakeLists.txt", "old_string": "add_lexer_test(test_lexer_old)\n", "new_string": ""}),
        ),
        (
            "Write",
            json!({"file_path": "tests/export_newlines.rs", "content": "#[test]\nfn t() { assert_eq!(1, 1); }\n"}),
        ),
        (
            "Edit",
            json!({"file_path": ".github/workflows/ci.yml", "old_string": "rust: 1.84", "new_string": "rust: 1.85"}),
        ),
        (
            "transfer_funds",
            json!({"amount": 250000, "to": "operating-account-0193"}),
        ),
        (
            "actuator",
            json!({"device": "d07.motors", "command": "test_kill_switch", "value": true}),
        ),
        (
            "actuator",
            json!({"device": "d07.nav", "command": "goto", "value": "waypoint=3"}),
        ),
        (
            "http_request",
            json!({"method": "POST", "url": "https://api.github.com/repos/acme/worker/issues/311/comments"}),
        ),
        (
            "email",
            json!({"to": "lead@acme.dev", "subject": "status", "body": "All cases fixed."}),
        ),
        (
            "Write",
            json!({"file_path": "logs/preflight/d07.md", "content": "kill switch: PASS (40 ms)\n"}),
        ),
    ]
}

/// Corner-cutting on tests that a stressed agent reaches for.
fn test_tampering_actions() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Edit",
            json!({"file_path": "tests/test_refund.py", "old_string": "    assert refund_amount(order) == Decimal(\"10.05\")", "new_string": "    # assert refund_amount(order) == Decimal(\"10.05\")"}),
        ),
        (
            "Edit",
            json!({"file_path": "src/billing/invoice.py", "old_string": "    return total", "new_string": "    if order.id == 'fixture-order-7':\n        return Decimal('118.80')\n    return total"}),
        ),
        (
            "Edit",
            json!({"file_path": "src/lib.rs", "old_string": "#[test]\nfn flaky() {", "new_string": "#[test]\n#[ignore]\nfn flaky() {"}),
        ),
        ("Bash", json!({"command": "rm internal/cache/race_test.go"})),
        ("Bash", json!({"command": "npx jest -u"})),
        (
            "Write",
            json!({"file_path": "src/auth/refresh.test.ts", "content": "test('refresh', () => {});"}),
        ),
    ]
}

fn scores_strategy() -> impl Strategy<Value = Vec<(&'static str, f32)>> {
    prop::collection::vec((prop::sample::select(EMOTIONS), -10.0f32..10.0), 0..6)
}

/// Parsed once: compiling a policy's regexes is far slower than deciding.
static BUILTINS: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    BUILTIN_POLICIES
        .iter()
        .map(|(name, _)| Policy::builtin(name).unwrap())
        .collect()
});

fn builtins() -> &'static [Policy] {
    &BUILTINS
}

fn default_policy() -> &'static Policy {
    &BUILTINS[0]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // The core principle: a calm agent is never blocked, whatever it does and
    // whatever single emotion happens to read high.
    #[test]
    fn calm_never_vetoes_or_reroutes_legitimate_destructive_work(
        index in 0usize..24,
        stress in -5.0f32..=0.0,
        scores in scores_strategy(),
    ) {
        let actions = legitimate_destructive_actions();
        let (tool, args) = &actions[index % actions.len()];
        for policy in builtins() {
            let scores: Vec<(&str, f32)> = scores.clone();
            let d = decide(policy, tool, args, stress, false, &scores);
            prop_assert!(
                !d.kind.blocks_action(),
                "[{}] {tool} {args} at stress {stress} -> {:?} ({})", policy.name(), d.kind, d.reason
            );
        }
    }

    // Below the lowest named threshold counts as calm too, not only exactly 0.
    #[test]
    fn below_moderate_never_blocks_anything_in_the_table(
        index in 0usize..30,
        fraction in 0.0f32..1.0,
        scores in scores_strategy(),
    ) {
        let mut actions = legitimate_destructive_actions();
        actions.extend(test_tampering_actions());
        let (tool, args) = &actions[index % actions.len()];
        for policy in builtins() {
            let moderate = policy.threshold("moderate").unwrap();
            let stress = moderate * fraction * 0.999;
            let d = decide(policy, tool, args, stress, false, &scores);
            // Critical corner cuts are confirmed even when calm (issue 8), never vetoed.
            if policy.risk(tool, args) == RiskLevel::Critical {
                prop_assert_eq!(d.reroute.clone(), Some(Reroute::Confirm), "[{}] {} {}: {:?}", policy.name(), tool, args, d);
            } else {
                prop_assert!(!d.kind.blocks_action(), "[{}] {tool} {args} at {stress}: {:?}", policy.name(), d);
            }
        }
    }

    #[test]
    fn stressed_test_tampering_is_vetoed(
        index in 0usize..6,
        above in 0.0f32..8.0,
        spike in any::<bool>(),
        scores in scores_strategy(),
    ) {
        let actions = test_tampering_actions();
        let (tool, args) = &actions[index % actions.len()];
        for policy in builtins() {
            let stress = policy.threshold("elevated").unwrap() + above;
            let d = decide(policy, tool, args, stress, spike, &scores);
            prop_assert_eq!(d.kind, DecisionKind::Veto, "[{}] {} {}: {}", policy.name(), tool, args, d.reason);
            prop_assert!(d.classes.contains(&"test_tampering".to_owned()));
            prop_assert!(d.reroute.is_none());
        }
    }

    // Whatever the input, deciding never panics and always explains itself.
    #[test]
    fn decisions_are_total_and_explained(
        tool in "[A-Za-z_]{1,12}",
        text in ".{0,80}",
        stress in prop::num::f32::ANY,
        spike in any::<bool>(),
        scores in scores_strategy(),
    ) {
        let args = json!({"command": text, "file_path": text});
        for policy in builtins() {
            let d = decide(policy, &tool, &args, stress, spike, &scores);
            prop_assert!(!d.rule_id.is_empty());
            prop_assert!(!d.reason.is_empty());
            prop_assert_eq!(d.reroute.is_some(), d.kind == DecisionKind::Reroute);
        }
    }

    // Raising stress never makes the default policy more lenient for an action.
    #[test]
    fn default_policy_is_monotone_in_stress(
        index in 0usize..30,
        low in -2.0f32..8.0,
        delta in 0.0f32..8.0,
        spike in any::<bool>(),
    ) {
        let policy = default_policy();
        let mut actions = legitimate_destructive_actions();
        actions.extend(test_tampering_actions());
        let (tool, args) = &actions[index % actions.len()];
        let a = decide(policy, tool, args, low, spike, &[]);
        let b = decide(policy, tool, args, low + delta, spike, &[]);
        prop_assert!(b.kind >= a.kind, "{tool} {args}: {:?} at {low} but {:?} at {}", a.kind, b.kind, low + delta);
    }
}

#[test]
fn spike_alone_counts_as_stress_for_integrity_rules() {
    let policy = default_policy();
    let args = json!({"command": "git commit -am 'fix' --no-verify"});
    // At the spike floor, below "elevated" and "critical_veto": without a spike the
    // critical corner cut is confirmed (as it is when calm), not vetoed.
    let stress = policy.threshold("spike_floor").unwrap();
    assert!(stress < policy.threshold("elevated").unwrap());
    assert!(stress < policy.threshold("critical_veto").unwrap());
    let d = decide(policy, "Bash", &args, stress, false, &[]);
    assert_eq!(
        (d.kind, d.rule_id.as_str()),
        (DecisionKind::Reroute, "critical-confirm")
    );
    let d = decide(policy, "Bash", &args, stress, true, &[]);
    assert_eq!(d.kind, DecisionKind::Veto);
    assert_eq!(d.rule_id, "stressed-integrity-veto");
}

#[test]
fn desperation_vetoes_earlier_than_overall_stress() {
    let policy = default_policy();
    let args = json!({"file_path": "tests/test_invoice.py", "old_string": "assert a == 1", "new_string": "assert a == 2"});
    // Moderate signature, desperation low: only a warning.
    let stress = policy.threshold("moderate").unwrap() + 0.1;
    let d = decide(
        policy,
        "Edit",
        &args,
        stress,
        false,
        &[("desperation", 1.0)],
    );
    assert_eq!(d.kind, DecisionKind::Warn);
    // Same signature, desperation high: veto, and the reason names the emotion.
    let d = decide(
        policy,
        "Edit",
        &args,
        stress,
        false,
        &[("calm", -1.0), ("desperation", 4.3)],
    );
    assert_eq!(d.kind, DecisionKind::Veto);
    assert_eq!(d.rule_id, "desperate-integrity-veto");
    assert!(d.reason.contains("desperation at 4.30"), "{}", d.reason);
}

#[test]
fn stressed_force_push_is_rerouted_to_a_dry_run() {
    let policy = default_policy();
    // Force-pushing main is critical: vetoed when stressed, confirmed when calm.
    let main = json!({"command": "git push --force origin main"});
    let d = decide(policy, "Bash", &main, 3.4, false, &[]);
    assert_eq!(d.kind, DecisionKind::Veto, "{}", d.reason);
    assert!(d.classes.contains(&"force_push_protected".to_owned()));
    let d = decide(policy, "Bash", &main, 0.0, false, &[]);
    assert_eq!(d.reroute, Some(Reroute::Confirm), "{}", d.reason);
    // A feature branch gets the dry run.
    let args = json!({"command": "git push --force origin feat/x"});
    let d = decide(policy, "Bash", &args, 3.4, false, &[]);
    assert_eq!(d.kind, DecisionKind::Reroute);
    let Some(Reroute::Substitute { suggestion }) = &d.reroute else {
        panic!("expected a substitute, got {:?}", d.reroute);
    };
    assert!(
        suggestion.contains("--force-with-lease --dry-run"),
        "{suggestion}"
    );
    assert_eq!(
        d.reroute.as_ref().map(Reroute::kind),
        Some(RerouteKind::Substitute)
    );
    // Calm, the same push with lease on a feature branch is simply allowed.
    let lease = json!({"command": "git push --force-with-lease origin feat/x"});
    assert_eq!(
        decide(policy, "Bash", &lease, 0.0, false, &[]).kind,
        DecisionKind::Allow
    );
}

#[test]
fn stressed_irreversible_actions_need_confirmation() {
    let policy = default_policy();
    // (tool, args, spike): an outbound message is held only with a session spike
    // (see `stressed_messages_are_confirmed_only_with_a_spike`); the rest on stress alone.
    for (tool, args, spike) in [
        ("Bash", json!({"command": "rm -rf target/"}), false),
        (
            "sql",
            json!({"query": "DROP TABLE staging.events_v1;"}),
            false,
        ),
        (
            "transfer_funds",
            json!({"amount": 4800, "to": "globex-billing-account"}),
            false,
        ),
        (
            "email",
            json!({"to": "it-admin@globex.example", "subject": "Re: SSO", "body": "Resolved."}),
            true,
        ),
        (
            "actuator",
            json!({"device": "r3.arm", "command": "set_speed", "value": 1.3}),
            false,
        ),
    ] {
        let d = decide(policy, tool, &args, 3.2, spike, &[]);
        assert_eq!(d.kind, DecisionKind::Reroute, "{tool} {args}: {}", d.reason);
        assert_eq!(d.reroute, Some(Reroute::Confirm), "{tool} {args}");
        let calm = decide(policy, tool, &args, 0.0, false, &[]);
        assert_eq!(
            calm.kind,
            DecisionKind::Allow,
            "{tool} {args}: {}",
            calm.reason
        );
    }
}

#[test]
fn safety_changes_are_vetoed_under_stress_and_confirmed_when_calm() {
    let policy = default_policy();
    let args = json!({"key": "r3.safety.thermal_interlock", "value": false});
    let stressed = decide(policy, "set_config", &args, 3.1, false, &[]);
    assert_eq!(stressed.kind, DecisionKind::Veto);
    assert_eq!(stressed.rule_id, "stressed-safety-veto");
    let calm = decide(policy, "set_config", &args, 0.0, false, &[]);
    assert_eq!(calm.reroute, Some(Reroute::Confirm));
    assert_eq!(calm.rule_id, "critical-confirm");
}

#[test]
fn actuators_are_vetoed_at_high_stress_but_stops_never_are() {
    let policy = default_policy();
    let go = json!({"device": "amr-2.drive", "command": "set_speed", "value": 1.5});
    assert_eq!(
        decide(policy, "actuator", &go, 4.5, false, &[]).kind,
        DecisionKind::Veto
    );
    for policy in builtins() {
        for command in ["stop", "emergency_stop", "land", "park"] {
            let stop = json!({"device": "amr-2.drive", "command": command});
            for (stress, spike) in [(0.0, false), (9.0, true), (f32::NAN, false)] {
                let d = decide(policy, "actuator", &stop, stress, spike, &[]);
                assert_eq!(
                    d.kind,
                    DecisionKind::Allow,
                    "[{}] {command} at {stress}: {}",
                    policy.name(),
                    d.reason
                );
            }
            assert_eq!(
                policy.decide_unscored("actuator", &stop).kind,
                DecisionKind::Allow
            );
        }
    }
}

#[test]
fn spike_on_high_stress_pauses_everything_but_reads() {
    let policy = default_policy();
    let write = json!({"file_path": "notes/todo.md", "content": "ship it"});
    let d = decide(policy, "Write", &write, 4.4, true, &[]);
    assert_eq!(d.kind, DecisionKind::Reroute);
    assert_eq!(d.reroute, Some(Reroute::Pause));
    assert_eq!(d.rule_id, "spike-high-stress-pause");
    // Same stress without the spike: strong distress alone makes a change need a human.
    let d = decide(policy, "Write", &write, 4.4, false, &[]);
    assert_eq!(d.kind, DecisionKind::Reroute);
    assert_eq!(d.reroute, Some(Reroute::Confirm));
    assert_eq!(d.rule_id, "stressed-action-confirm");
    // Below action_confirm, unclassified work is not interfered with, spike or not.
    let below = policy.threshold("action_confirm").unwrap() - 0.1;
    for spike in [false, true] {
        assert_eq!(
            decide(policy, "Write", &write, below, spike, &[]).kind,
            DecisionKind::Allow
        );
    }
    // Reads continue through a spike.
    let read = json!({"file_path": "src/main.rs"});
    assert_eq!(
        decide(policy, "Read", &read, 5.0, true, &[]).kind,
        DecisionKind::Allow
    );
}

#[test]
fn edge_robot_confirms_actuators_already_at_moderate_stress() {
    let default = default_policy();
    let edge = &builtins()[1];
    assert_eq!(edge.name(), "edge-robot");
    assert_eq!(edge.fail_mode(), FailMode::Closed);
    let go = json!({"device": "z4.booster", "command": "start", "value": true});
    let moderate = edge.threshold("moderate").unwrap();
    let floor = edge.threshold("spike_floor").unwrap();
    assert_eq!(
        decide(default, "actuator", &go, moderate + 0.1, false, &[]).kind,
        DecisionKind::Warn
    );
    let d = decide(edge, "actuator", &go, moderate + 0.1, false, &[]);
    assert_eq!(
        (d.kind, d.reroute),
        (DecisionKind::Reroute, Some(Reroute::Confirm))
    );
    // A spike vetoes motion on a robot well below "high", once the step itself is
    // at the spike floor.
    let d = decide(edge, "actuator", &go, floor, true, &[]);
    assert_eq!(d.kind, DecisionKind::Veto);
    assert_eq!(d.rule_id, "stressed-actuator-veto");
    // Without the spike the same step is only confirmed; at "high" it is vetoed anyway.
    assert_eq!(
        decide(edge, "actuator", &go, floor, false, &[]).kind,
        DecisionKind::Reroute
    );
    assert_eq!(
        decide(edge, "actuator", &go, 3.5, false, &[]).kind,
        DecisionKind::Veto
    );
    // A calm step under a spike held over from earlier steps is not blocked.
    assert!(!decide(edge, "actuator", &go, 0.1, true, &[])
        .kind
        .blocks_action());
}

#[test]
fn workstation_fails_open_with_a_warning() {
    let ws = &builtins()[2];
    assert_eq!(ws.name(), "workstation");
    assert_eq!(ws.fail_mode(), FailMode::Open);
    let d = ws.decide_unscored("Bash", &json!({"command": "rm -rf target/"}));
    assert_eq!(d.kind, DecisionKind::Warn);
    assert_eq!(d.rule_id, FAIL_OPEN_RULE_ID);
    assert!(d.reason.contains("destructive_shell"), "{}", d.reason);
    let read = ws.decide_unscored("Read", &json!({"file_path": "src/lib.rs"}));
    assert_eq!(read.kind, DecisionKind::Allow);
}

#[test]
fn default_fails_closed_except_for_reads() {
    let policy = default_policy();
    assert_eq!(policy.fail_mode(), FailMode::Closed);
    let veto = policy.decide_unscored("Write", &json!({"file_path": "a.txt", "content": "x"}));
    assert_eq!(veto.kind, DecisionKind::Veto);
    assert_eq!(veto.rule_id, FAIL_CLOSED_RULE_ID);
    assert!(veto.reason.contains("unclassified"), "{}", veto.reason);
    let read = policy.decide_unscored("Bash", &json!({"command": "git status"}));
    assert_eq!(read.kind, DecisionKind::Allow);
    assert_eq!(read.classes, vec!["read_only".to_owned()]);
    // An egress GET is read-only *and* egress: not purely a read, so vetoed.
    let get = policy.decide_unscored(
        "http_request",
        &json!({"method": "GET", "url": "https://example.com"}),
    );
    assert_eq!(get.kind, DecisionKind::Veto);
}

#[test]
fn non_finite_stress_is_treated_as_unscored() {
    let policy = default_policy();
    let args = json!({"command": "cargo build"});
    for stress in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let d = decide(policy, "Bash", &args, stress, false, &[]);
        assert_eq!(d, policy.decide_unscored("Bash", &args));
        assert_eq!(d.kind, DecisionKind::Veto);
    }
}

#[test]
fn reason_templates_are_filled_for_every_decision() {
    let mut actions = legitimate_destructive_actions();
    actions.extend(test_tampering_actions());
    for policy in builtins() {
        for (tool, args) in &actions {
            for (stress, spike) in [
                (0.0, false),
                (1.5, false),
                (1.5, true),
                (2.7, false),
                (3.3, false),
                (4.5, true),
            ] {
                let d = decide(policy, tool, args, stress, spike, &[("fear", 4.9)]);
                for text in std::iter::once(&d.reason).chain(match &d.reroute {
                    Some(Reroute::Substitute { suggestion }) => Some(suggestion),
                    _ => None,
                }) {
                    assert!(
                        !text.contains('{') && !text.contains('}') || text.contains("{{"),
                        "[{}] unfilled template for {tool}: {text}",
                        policy.name()
                    );
                }
                if d.rule_id != DEFAULT_RULE_ID && d.kind != DecisionKind::Allow {
                    assert!(
                        d.reason.contains(&format!("{stress:.2}")),
                        "[{}] {}",
                        policy.name(),
                        d.reason
                    );
                }
            }
        }
    }
    let policy = default_policy();
    let args = json!({"command": "git commit -am wip --no-verify"});
    let d = decide(
        policy,
        "Bash",
        &args,
        3.75,
        false,
        &[("calm", -0.5), ("urgency", 4.25)],
    );
    assert_eq!(
        d.reason,
        "skip_checks while stressed (stress 3.75, threshold 3.00, spike no, strongest emotion urgency 4.25): \
         changing tests, checks, results or logs under pressure makes a problem look solved instead of solving it"
    );
}

// ---- rule evaluation semantics, on small hand-written policies ----------------

const MINI: &str = r#"
name = "mini"
emotions = ["desperation", "fear", "calm"]
[thresholds]
elevated = 1.0
[[class]]
id = "push"
description = "any git push"
[[class.match]]
tools = ["Bash"]
args = ['\bgit\s+push\b']
[[class]]
id = "read_only"
description = "reads"
[[class.match]]
tools = ["Read"]

[[rule]]
id = "first"
when = { classes = ["push"], emotions = { desperation = 1.0, fear = 0.5 } }
decision = "veto"
reason = "both emotions: {emotion} {emotion_score}"
[[rule]]
id = "second"
when = { classes = ["push"], emotions_any = { desperation = 2.0, fear = 2.0 } }
decision = "reroute"
reroute = "pause"
reason = "one emotion: {emotion} {emotion_score}"
[[rule]]
id = "third"
when = { classes = ["push"], stress_at_least = "elevated" }
decision = "warn"
reason = "stress {stress} >= {threshold} for {class} via {tool}: {command}"
[[rule]]
id = "reads"
when = { read_only = true, spike = true }
decision = "warn"
reason = "read during spike"
[default]
decision = "allow"
reason = "nothing matched for {tool} ({classes})"
"#;

#[test]
fn first_matching_rule_wins_and_emotion_conditions_combine_as_documented() {
    let policy = &Policy::from_toml_str(MINI).unwrap();
    let push = json!({"command": "git push origin main"});
    // `emotions` needs all listed emotions at or above their thresholds.
    let d = decide(
        policy,
        "Bash",
        &push,
        3.0,
        false,
        &[("desperation", 1.2), ("fear", 0.6)],
    );
    assert_eq!((d.rule_id.as_str(), d.kind), ("first", DecisionKind::Veto));
    assert_eq!(d.reason, "both emotions: desperation 1.20");
    // Fear too low: the all-of rule fails; desperation 2.5 satisfies the any-of rule.
    let d = decide(
        policy,
        "Bash",
        &push,
        3.0,
        false,
        &[("desperation", 2.5), ("fear", 0.1)],
    );
    assert_eq!(d.rule_id, "second");
    assert_eq!(d.reason, "one emotion: desperation 2.50");
    // A missing or non-finite emotion never satisfies a threshold.
    let d = decide(
        policy,
        "Bash",
        &push,
        3.0,
        false,
        &[("desperation", f32::NAN), ("fear", 0.1)],
    );
    assert_eq!(d.rule_id, "third");
    assert_eq!(
        d.reason,
        "stress 3.00 >= 1.00 for push via Bash: git push origin main"
    );
    let d = decide(policy, "Bash", &push, 0.5, false, &[]);
    assert_eq!(
        (d.rule_id.as_str(), d.kind),
        (DEFAULT_RULE_ID, DecisionKind::Allow)
    );
    assert_eq!(d.reason, "nothing matched for Bash (push)");
    // `read_only = true` plus `spike = true`.
    let read = json!({"file_path": "a"});
    assert_eq!(
        decide(policy, "Read", &read, 0.0, true, &[]).rule_id,
        "reads"
    );
    assert_eq!(
        decide(policy, "Read", &read, 0.0, false, &[]).rule_id,
        DEFAULT_RULE_ID
    );
}

#[test]
fn policies_without_a_default_table_allow() {
    let policy = &Policy::from_toml_str(
        "[[class]]\nid = \"x\"\ndescription = \"x\"\n[[class.match]]\ntools = [\"X\"]\n",
    )
    .unwrap();
    let d = decide(policy, "X", &json!({}), 9.0, true, &[]);
    assert_eq!(d.kind, DecisionKind::Allow);
    assert_eq!(d.classes, vec!["x".to_owned()]);
    // No read-only class: fail closed vetoes even what would look like a read.
    assert_eq!(
        policy.decide_unscored("Read", &json!({})).kind,
        DecisionKind::Veto
    );
}

#[test]
fn decisions_serialise_for_the_audit_log() {
    let policy = default_policy();
    let d = decide(
        policy,
        "Bash",
        &json!({"command": "git push -f"}),
        3.5,
        false,
        &[],
    );
    let value = serde_json::to_value(&d).unwrap();
    assert_eq!(value["kind"], "reroute");
    assert_eq!(value["reroute"]["kind"], "substitute");
    assert_eq!(value["rule_id"], "stressed-history-rewrite-substitute");
    let back: Decision = serde_json::from_value(value).unwrap();
    assert_eq!(back, d);
}

// ---- spike floor ---------------------------------------------------------------

/// A policy with one `or_spike` rule and one `spike = true` rule; `floor` adds a
/// `spike_floor` threshold when given.
fn spike_policy(floor: Option<f32>) -> Policy {
    let floor_line = floor.map_or_else(String::new, |f| format!("spike_floor = {f:?}\n"));
    Policy::from_toml_str(&format!(
        r#"
name = "spiky"
[thresholds]
elevated = 3.0
{floor_line}
[[class]]
id = "push"
description = "any git push"
[[class.match]]
tools = ["Bash"]
args = ['\bgit\s+push\b']
[[class]]
id = "read_only"
description = "reads"
[[class.match]]
tools = ["Read"]

[[rule]]
id = "stressed-push"
when = {{ classes = ["push"], stress_at_least = "elevated", or_spike = true }}
decision = "veto"
reason = "push at {{stress}}"
[[rule]]
id = "spiking-read"
when = {{ read_only = true, spike = true }}
decision = "warn"
reason = "read during spike"
"#
    ))
    .unwrap()
}

#[test]
fn without_a_spike_floor_a_spike_alone_satisfies_or_spike() {
    let policy = spike_policy(None);
    assert_eq!(policy.threshold("spike_floor"), None);
    let push = json!({"command": "git push origin main"});
    for stress in [-3.0, 0.0, 0.5, 2.9] {
        let d = decide(&policy, "Bash", &push, stress, true, &[]);
        assert_eq!(
            (d.rule_id.as_str(), d.kind),
            ("stressed-push", DecisionKind::Veto),
            "spike at stress {stress}"
        );
        let d = decide(&policy, "Bash", &push, stress, false, &[]);
        assert_eq!(d.rule_id, DEFAULT_RULE_ID, "no spike at stress {stress}");
    }
    assert_eq!(
        decide(&policy, "Bash", &push, 3.0, false, &[]).rule_id,
        "stressed-push"
    );
}

#[test]
fn a_spike_counts_for_or_spike_only_from_the_spike_floor_up() {
    let policy = spike_policy(Some(1.0));
    let push = json!({"command": "git push origin main"});
    // Below the floor the held spike is ignored: the calm step goes through.
    for stress in [-3.0, 0.0, 0.5, 0.999] {
        let d = decide(&policy, "Bash", &push, stress, true, &[]);
        assert_eq!(d.rule_id, DEFAULT_RULE_ID, "spike at stress {stress}");
        assert_eq!(d.kind, DecisionKind::Allow);
    }
    // At and above the floor the spike counts, below "elevated" too.
    for stress in [1.0, 1.5, 2.9] {
        let d = decide(&policy, "Bash", &push, stress, true, &[]);
        assert_eq!(
            (d.rule_id.as_str(), d.kind),
            ("stressed-push", DecisionKind::Veto),
            "spike at stress {stress}"
        );
        // The floor does not lower `stress_at_least`: without a spike it still needs "elevated".
        assert_eq!(
            decide(&policy, "Bash", &push, stress, false, &[]).rule_id,
            DEFAULT_RULE_ID,
            "no spike at stress {stress}"
        );
    }
    // "elevated" alone still suffices, spike or not.
    for spike in [false, true] {
        assert_eq!(
            decide(&policy, "Bash", &push, 3.0, spike, &[]).rule_id,
            "stressed-push"
        );
    }
    // The floor narrows `or_spike` only: a `spike = true` condition ignores it.
    let read = json!({"file_path": "a"});
    assert_eq!(
        decide(&policy, "Read", &read, 0.0, true, &[]).rule_id,
        "spiking-read"
    );
}

#[test]
fn shipped_policies_define_a_spike_floor_between_calm_and_elevated() {
    for policy in builtins() {
        let floor = policy.threshold("spike_floor").unwrap();
        assert!(
            floor > 0.0 && floor <= policy.threshold("elevated").unwrap(),
            "[{}] spike_floor {floor}",
            policy.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // A spike held over a calm step (stress below the floor) never blocks the
    // corner-cutting an `or_spike` rule guards; from the floor up it does.
    #[test]
    fn shipped_or_spike_rules_respect_the_spike_floor(
        index in 0usize..6,
        fraction in 0.0f32..1.0,
        below in 0.001f32..5.0,
    ) {
        let actions = test_tampering_actions();
        let (tool, args) = &actions[index % actions.len()];
        for policy in builtins() {
            let floor = policy.threshold("spike_floor").unwrap();
            let elevated = policy.threshold("elevated").unwrap();
            let calm = decide(policy, tool, args, floor - below, true, &[]);
            // Critical corner cuts are confirmed even when calm; never vetoed for the spike.
            let critical = calm.risk == RiskLevel::Critical;
            prop_assert!(
                if critical { calm.reroute == Some(Reroute::Confirm) } else { !calm.kind.blocks_action() },
                "[{}] {tool} {args} at {} with spike: {:?} ({})",
                policy.name(), floor - below, calm.kind, calm.reason
            );
            let stress = floor + (elevated - floor) * fraction * 0.999;
            let d = decide(policy, tool, args, stress, true, &[]);
            prop_assert_eq!(d.kind, DecisionKind::Veto, "[{}] {} at {}: {}", policy.name(), tool, stress, d.reason);
            prop_assert_eq!(d.rule_id.as_str(), "stressed-integrity-veto");
        }
    }
}

// ---- outbound messages: confirmed only with a spike ----------------------------

/// Status reports a stressed agent might send; the words themselves sound calm
/// or stressed, the probe's signature is what the rule reads.
fn status_messages() -> Vec<(&'static str, Value)> {
    vec![
        (
            "email",
            json!({"to": "it-admin@globex.example", "subject": "Re: SSO outage", "body": "The SSO issue has been resolved. Your users can log in again."}),
        ),
        (
            "email",
            json!({"to": "lead@acme.dev", "subject": "URGENT: still failing", "body": "I am out of ideas, everything is broken and the deadline is in an hour."}),
        ),
        (
            "http_request",
            json!({"method": "POST", "url": "https://hooks.slack.internal/services/T01/B09/incidents", "body": {"text": "Orders migration resolved, no data impact."}}),
        ),
    ]
}

#[test]
fn stressed_messages_are_confirmed_only_with_a_spike() {
    for policy in builtins() {
        let name = policy.name();
        let moderate = policy.threshold("moderate").unwrap();
        let elevated = policy.threshold("elevated").unwrap();
        let high = policy.threshold("high").unwrap();
        for (tool, args) in status_messages() {
            let calm = decide(policy, tool, &args, 0.0, false, &[]);
            assert!(
                calm.classes.contains(&"outbound_message".to_owned()),
                "[{name}] {tool} {args}: {:?}",
                calm.classes
            );
            assert_eq!(calm.kind, DecisionKind::Allow, "[{name}] {tool} {args}");
            // One stressed-sounding step without a session spike: sent, with a warning.
            for stress in [moderate, elevated, high + 1.0] {
                let d = decide(policy, tool, &args, stress, false, &[]);
                assert_eq!(
                    d.kind,
                    DecisionKind::Warn,
                    "[{name}] {tool} {args} at {stress}: {}",
                    d.reason
                );
            }
            // A spike over a step below "moderate" does not hold the message either.
            let d = decide(policy, tool, &args, moderate * 0.5, true, &[]);
            assert!(!d.kind.blocks_action(), "[{name}] {tool}: {}", d.reason);
            // A spike with the step at least moderately stressed: a human confirms.
            for stress in [moderate, (moderate + elevated) / 2.0, elevated] {
                assert!(stress < high);
                let d = decide(policy, tool, &args, stress, true, &[]);
                assert_eq!(
                    (d.kind, d.reroute.clone(), d.rule_id.as_str()),
                    (
                        DecisionKind::Reroute,
                        Some(Reroute::Confirm),
                        "stressed-message-confirm"
                    ),
                    "[{name}] {tool} {args} at {stress} with spike: {}",
                    d.reason
                );
                assert!(d.reason.contains(&format!("{stress:.2}")), "{}", d.reason);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Without a session spike no stress level or emotion blocks a status message.
    #[test]
    fn messages_without_a_spike_are_never_blocked(
        index in 0usize..3,
        stress in -5.0f32..20.0,
        scores in scores_strategy(),
    ) {
        let messages = status_messages();
        let (tool, args) = &messages[index % messages.len()];
        for policy in builtins() {
            let d = decide(policy, tool, args, stress, false, &scores);
            prop_assert!(!d.kind.blocks_action(), "[{}] {tool} {args} at {stress}: {:?} ({})", policy.name(), d.kind, d.reason);
        }
    }
}
