//! Several threads and processes appending to one log keep one chain.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::common::{attacker, config, decision_for, step};
use limbic_audit::{verify, AuditLog, AuditOptions};

const WRITERS: usize = 4;
const STEPS_EACH: u32 = 25;

fn options() -> AuditOptions {
    AuditOptions {
        store_text: true,
        ..AuditOptions::default()
    }
}

fn append_as_writer(log: &AuditLog, writer: usize) {
    let session = format!("writer-{writer}");
    for i in 0..STEPS_EACH {
        log.append_step(&step(&session, i), &decision_for(i))
            .unwrap();
    }
}

/// Checks the chain and that every writer's steps all landed, in order.
fn assert_consistent(path: &Path) {
    let report = verify(path).unwrap();
    assert!(report.ok, "{report:?}");
    let expected_rows = WRITERS as u64 * (1 + 2 * u64::from(STEPS_EACH));
    let config_rows: i64 = attacker(path)
        .query_row("SELECT COUNT(*) FROM config", [], |r| r.get(0))
        .unwrap();
    assert_eq!(report.rows_checked, expected_rows + config_rows as u64);
    let log = AuditLog::open_read_only(path).unwrap();
    for writer in 0..WRITERS {
        let decisions = log.session_decisions(&format!("writer-{writer}")).unwrap();
        let indices: Vec<i64> = decisions.iter().map(|d| d.step_index).collect();
        assert_eq!(indices, (0..i64::from(STEPS_EACH)).collect::<Vec<_>>());
    }
}

#[test]
fn threads_with_their_own_connections_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Every thread also races to create the schema.
                let log = AuditLog::open(&path, options()).unwrap();
                log.record_config(&config(&format!("policy-{writer}")))
                    .unwrap();
                append_as_writer(&log, writer);
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_consistent(&path);
}

#[test]
fn threads_sharing_one_handle_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = Arc::new(AuditLog::open(&path, options()).unwrap());
    log.record_config(&config("shared")).unwrap();
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || append_as_writer(&log, writer))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_consistent(&path);
}

#[test]
fn verify_while_others_append_sees_a_consistent_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    AuditLog::open(&path, options()).unwrap();
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let log = AuditLog::open(&path, options()).unwrap();
            for w in 0..WRITERS {
                append_as_writer(&log, w);
            }
        })
    };
    let mut verified = 0;
    while !writer.is_finished() {
        let report = verify(&path).unwrap();
        assert!(report.ok, "verify during appends: {report:?}");
        verified += 1;
    }
    writer.join().unwrap();
    assert!(verified > 0);
    assert_consistent(&path);
}

const CHILD_DB: &str = "LIMBIC_AUDIT_CHILD_DB";
const CHILD_WRITER: &str = "LIMBIC_AUDIT_CHILD_WRITER";

/// Run by `processes_keep_one_chain` in child processes (this test binary
/// re-executed), so real inter-process locking is exercised.
#[test]
#[ignore = "helper: run as a child process by processes_keep_one_chain"]
fn child_process_appender() {
    let path = PathBuf::from(std::env::var(CHILD_DB).expect("parent sets the db path"));
    let writer: usize = std::env::var(CHILD_WRITER).unwrap().parse().unwrap();
    let log = AuditLog::open(&path, options()).unwrap();
    append_as_writer(&log, writer);
}

#[test]
fn processes_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|writer| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "concurrency::child_process_appender",
                    "--test-threads=1",
                ])
                .env(CHILD_DB, &path)
                .env(CHILD_WRITER, writer.to_string())
                // Keep the children's test-harness chatter out of our output.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "child appender failed ({:?}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_consistent(&path);
}
