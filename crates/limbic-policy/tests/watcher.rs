//! Hot reload: good edits are picked up, broken edits keep the last good policy.

use std::path::Path;
use std::time::{Duration, Instant};

use limbic_policy::{DecisionKind, Policy, PolicyError, PolicyWatcher, StepView};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn policy_text(decision: &str) -> String {
    format!(
        r#"name = "watched-{decision}"
[[class]]
id = "push"
description = "git push"
[[class.match]]
tools = ["Bash"]
args = ['\bgit\s+push\b']
[[rule]]
id = "pushes"
when = {{ classes = ["push"] }}
decision = "{decision}"
reason = "pushes are {decision}"
"#
    )
}

/// Polls `condition` until it holds or `WAIT` passes; file events are
/// asynchronous, so a fixed sleep would be either flaky or slow.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn push_decision(policy: &Policy) -> DecisionKind {
    let args = json!({"command": "git push origin main"});
    policy
        .decide(&StepView {
            tool: "Bash",
            args: &args,
            stress: 0.0,
            spike: false,
            scores: &[],
            action_risk: None,
            text: None,
        })
        .kind
}

/// Writes via a temporary file and rename, the way editors and config
/// managers replace files.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn broken_edit_keeps_last_good_policy_and_fix_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy_text("warn")).unwrap();

    let watcher = PolicyWatcher::spawn(&path).unwrap();
    let original = watcher.current();
    assert_eq!(original.name(), "watched-warn");
    assert_eq!(push_decision(&original), DecisionKind::Warn);
    assert!(watcher.last_error().is_none());

    // Broken: unknown decision. The watcher must record the error and keep going.
    std::fs::write(&path, policy_text("explode")).unwrap();
    wait_until("the broken file to be reported", || {
        watcher.last_error().is_some()
    });
    let err = watcher.last_error().unwrap();
    assert!(err.to_string().contains("explode"), "{err}");
    assert!(err.to_string().contains("policy.toml"), "{err}");
    assert_eq!(watcher.current().hash(), original.hash());
    assert_eq!(push_decision(&watcher.current()), DecisionKind::Warn);
    assert_eq!(watcher.reload_count(), 0);

    // A truncated (empty) file is an error too, not an allow-everything policy.
    std::fs::write(&path, "").unwrap();
    wait_until("the empty file to be reported", || {
        watcher
            .last_error()
            .is_some_and(|e| e.to_string().contains("no classes and no rules"))
    });
    assert_eq!(watcher.current().hash(), original.hash());

    // Fixed with a different decision: the new policy takes over, error clears.
    std::fs::write(&path, policy_text("veto")).unwrap();
    wait_until("the fixed policy to load", || {
        watcher.current().name() == "watched-veto"
    });
    assert_eq!(push_decision(&watcher.current()), DecisionKind::Veto);
    wait_until("the error to clear", || watcher.last_error().is_none());
    assert!(watcher.reload_count() >= 1);

    // Handles given to other threads see the same policy.
    let handle = watcher.handle();
    let seen = std::thread::spawn(move || handle.current().name().to_owned())
        .join()
        .unwrap();
    assert_eq!(seen, "watched-veto");
}

#[test]
fn atomic_replacement_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy_text("allow")).unwrap();
    let watcher = PolicyWatcher::spawn(&path).unwrap();

    replace_atomically(&path, &policy_text("veto"));
    wait_until("the renamed-over policy to load", || {
        watcher.current().name() == "watched-veto"
    });

    // Deleting the file is reported but keeps the policy in force.
    std::fs::remove_file(&path).unwrap();
    wait_until("the deletion to be reported", || {
        matches!(
            watcher.last_error().as_deref(),
            Some(PolicyError::Read { .. })
        )
    });
    assert_eq!(watcher.current().name(), "watched-veto");

    std::fs::write(&path, policy_text("warn")).unwrap();
    wait_until("the recreated policy to load", || {
        watcher.current().name() == "watched-warn"
    });
}

#[test]
fn reload_now_reports_changes_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy_text("allow")).unwrap();
    let watcher = PolicyWatcher::spawn(&path).unwrap();
    assert_eq!(watcher.path(), path);
    // Unchanged content: nothing to swap.
    assert!(!watcher.reload_now().unwrap());
    std::fs::write(&path, "not = [valid").unwrap();
    let err = watcher.reload_now().unwrap_err();
    assert!(matches!(*err, PolicyError::Syntax { .. }), "{err}");
    assert_eq!(watcher.current().name(), "watched-allow");
}

#[test]
fn spawn_fails_when_the_initial_policy_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy_text("nope")).unwrap();
    let err = PolicyWatcher::spawn(&path)
        .err()
        .expect("broken initial policy must fail");
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(PolicyWatcher::spawn(dir.path().join("missing.toml")).is_err());
}

#[test]
fn the_change_hook_hears_each_reload_and_each_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy_text("warn")).unwrap();
    let watcher = PolicyWatcher::spawn(&path).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = heard.clone();
    watcher
        .handle()
        .set_on_change(Box::new(move |policy, error: Option<&PolicyError>| {
            counter.fetch_add(1, Ordering::SeqCst);
            log.lock()
                .unwrap()
                .push((policy.name().to_string(), error.is_some()));
        }));
    replace_atomically(&path, "decision = [");
    wait_until("the hook to hear the error", || {
        calls.load(Ordering::SeqCst) == 1
    });
    assert!(watcher.last_error().is_some());
    replace_atomically(&path, &policy_text("veto"));
    wait_until("the hook to hear the reload", || {
        calls.load(Ordering::SeqCst) == 2
    });
    assert_eq!(watcher.current().name(), "watched-veto");
    // Unrelated files in the directory do not call it.
    std::fs::write(dir.path().join("other.txt"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *heard.lock().unwrap(),
        [
            ("watched-warn".to_string(), true),
            ("watched-veto".to_string(), false)
        ]
    );
}
