//! Step numbers (no clamp, no wrap, no replays), tracker state for a
//! restarted guard, what the agent was actually told, and schema migration.

use std::path::Path;

use crate::common::{attacker, config, decision, decision_for, populated, step};
use limbic_audit::{
    verify, AuditError, AuditLog, AuditOptions, AuditSnapshot, Delivery, Problem, SCHEMA_VERSION,
};

fn open(path: &Path) -> AuditLog {
    AuditLog::open(path, AuditOptions::default()).unwrap()
}

fn with_index(session: &str, index: u64) -> limbic_audit::StepRecord {
    let mut s = step(session, 1);
    s.step_index = index;
    s
}

#[test]
fn step_numbers_beyond_i64_are_refused_never_clamped_or_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path);
    // Above u32 (the old clamp) and up to i64::MAX are stored exactly.
    for index in [u64::from(u32::MAX) + 1, 1 << 40, i64::MAX as u64] {
        log.append_step(&with_index("big", index), &decision("allow"))
            .unwrap();
    }
    assert_eq!(log.last_step("big").unwrap(), Some(i64::MAX as u64));
    let head = log.head().unwrap();
    for index in [i64::MAX as u64 + 1, u64::MAX] {
        let err = log
            .append_step(&with_index("fresh", index), &decision("allow"))
            .unwrap_err();
        assert!(err.is_step_number_error(), "{err:?}");
        match &err {
            AuditError::StepIndexTooLarge { step, session, .. } => {
                assert_eq!((*step, session.as_str()), (index, "fresh"))
            }
            other => panic!("expected StepIndexTooLarge, got {other:?}"),
        }
        assert!(err.to_string().contains(&index.to_string()), "{err}");
    }
    assert_eq!(log.head().unwrap(), head, "nothing written");
    assert_eq!(log.last_step("fresh").unwrap(), None);
    let rows = log.step_rows(Some("big")).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.step_index).collect::<Vec<_>>(),
        [u64::from(u32::MAX) + 1, 1 << 40, i64::MAX as u64]
    );
    assert!(verify(&path).unwrap().ok);
}

#[test]
fn duplicate_and_backward_steps_are_refused_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path);
    for index in [1, 2, 7] {
        log.append_step(&with_index("a", index), &decision("allow"))
            .unwrap();
    }
    let head = log.head().unwrap();
    for (index, what) in [(7, "duplicate"), (3, "backwards"), (0, "zero")] {
        let err = log
            .append_step(&with_index("a", index), &decision("allow"))
            .unwrap_err();
        assert!(err.is_step_number_error(), "{what}: {err:?}");
        assert!(
            matches!(err, AuditError::StepNotAfterLast { step, last: 7, .. } if step == index),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("nothing was recorded"), "{err}");
    }
    assert_eq!(log.head().unwrap(), head, "refused steps leave no row");
    // Another session may use the same numbers; the first session goes on.
    log.append_step(&with_index("b", 7), &decision("allow"))
        .unwrap();
    log.append_step(&with_index("a", 8), &decision("allow"))
        .unwrap();
    // Other errors are not step-number errors.
    assert!(!AuditError::Missing { path: path.clone() }.is_step_number_error());
    assert!(verify(&path).unwrap().ok);
}

#[test]
fn a_second_handle_cannot_replay_a_step_either() {
    // The check runs under the write lock, against the file, not a cache.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let first = open(&path);
    let second = open(&path);
    first
        .append_step(&with_index("s", 5), &decision("veto"))
        .unwrap();
    let err = second
        .append_step(&with_index("s", 5), &decision("allow"))
        .unwrap_err();
    assert!(matches!(err, AuditError::StepNotAfterLast { last: 5, .. }));
}

#[test]
fn restarted_guard_restores_last_step_and_tracker_state() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 3, 6, false);
    // "Restart": a new handle on the same file.
    let log = open(&path);
    let state = log.session_state("session-1").unwrap().unwrap();
    assert_eq!(state.last_step, 5);
    assert_eq!(state.steps, 6);
    // Step 5 is the latest with a tracker state (odd steps carry one).
    assert_eq!(state.tracker_step, Some(5));
    assert_eq!(
        state.tracker_state,
        step("session-1", 5).tracker_state,
        "the stored state comes back as written"
    );
    assert_eq!(log.session_state("never-seen").unwrap(), None);

    // A later step without state keeps the last stored one.
    log.append_step(&step("session-1", 6), &decision_for(6))
        .unwrap();
    let state = log.session_state("session-1").unwrap().unwrap();
    assert_eq!((state.last_step, state.tracker_step), (6, Some(5)));

    let all = log.session_states().unwrap();
    assert_eq!(
        all.iter()
            .map(|s| s.session_id.as_str())
            .collect::<Vec<_>>(),
        ["session-0", "session-1", "session-2"]
    );
    assert!(all.iter().all(|s| s.tracker_state.is_some()));
}

#[test]
fn edited_tracker_state_is_refused_on_restore() {
    // The attack: rewrite a stressed session's tracker to calm, restart.
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 4, false);
    attacker(&path)
        .execute(
            "UPDATE steps SET tracker_state = '{\"ewma\":0.0,\"history\":[]}'
             WHERE session_id = 'session-0' AND step_index = 3",
            [],
        )
        .unwrap();
    let err = open(&path).session_state("session-0").unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("edited"), "{err}");
    assert!(!verify(&path).unwrap().ok);
}

#[test]
fn oversized_tracker_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path);
    let mut s = step("s", 1);
    s.tracker_state = Some(serde_json::json!(
        "x".repeat(limbic_audit::MAX_TRACKER_STATE_BYTES)
    ));
    let err = log.append_step(&s, &decision("allow")).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::InvalidField {
                field: "tracker_state",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.head().unwrap().seq, 0);
}

#[test]
fn late_and_undelivered_answers_are_recorded_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path);
    let mut late = decision("allow");
    late.delivery = Delivery::Late;
    late.delivery_note = Some("deadline 4000 ms passed at 5230 ms; the hook denied".into());
    let mut gone = decision("veto");
    gone.delivery = Delivery::Undelivered;
    log.append_step(&step("s", 1), &decision("warn")).unwrap();
    log.append_step(&step("s", 2), &late).unwrap();
    log.append_step(&step("s", 3), &gone).unwrap();
    let mut again = decision("veto");
    again.delivery = Delivery::Regenerated;
    log.append_step(&step("s", 4), &again).unwrap();
    assert!(verify(&path).unwrap().ok);

    let rows = log.step_rows(Some("s")).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.delivery).collect::<Vec<_>>(),
        [
            Delivery::Delivered,
            Delivery::Late,
            Delivery::Undelivered,
            Delivery::Regenerated,
        ]
    );
    assert_eq!(rows[1].delivery_note, late.delivery_note);
    let summary = log.session_summary("s").unwrap().unwrap();
    assert_eq!((summary.late, summary.undelivered), (1, 1));
    let stats = log.stats().unwrap();
    assert_eq!(stats.delivery.get("late"), Some(&1));
    assert_eq!(stats.delivery.get("delivered"), Some(&1));

    // Rewriting "late" into an ordinary answer is tampering like any other.
    let seq = rows[1].decision_seq;
    attacker(&path)
        .execute(
            "UPDATE decisions SET delivery = NULL, delivery_note = NULL WHERE seq = ?1",
            [seq],
        )
        .unwrap();
    let report = verify(&path).unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.seq, Some(seq));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
}

#[test]
fn setting_a_new_column_on_a_row_that_had_none_is_detected() {
    // Rows with NULL added columns hash without them; giving one a value
    // must still change the hash.
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 3, true);
    let target = receipts[0].decision_row;
    attacker(&path)
        .execute(
            "UPDATE decisions SET delivery = 'late' WHERE id = ?1",
            [target],
        )
        .unwrap();
    let bad = verify(&path).unwrap().first_bad.unwrap();
    assert_eq!((bad.table.as_str(), bad.rowid), ("decisions", Some(target)));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
}

/// Turns a current log whose added columns are all NULL into the exact
/// version-1 file the first release wrote (those rows hash the same).
fn downgrade_to_v1(path: &Path) {
    attacker(path)
        .execute_batch(
            "DROP INDEX steps_by_session_seq;
             ALTER TABLE steps DROP COLUMN tracker_state;
             ALTER TABLE decisions DROP COLUMN delivery;
             ALTER TABLE decisions DROP COLUMN delivery_note;
             PRAGMA user_version = 1;",
        )
        .unwrap();
}

#[test]
fn version_1_logs_stay_readable_and_migrate_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    {
        let log = open(&path);
        log.record_config(&config("p")).unwrap();
        for i in 1..=4 {
            let mut s = step("old", i);
            s.tracker_state = None;
            log.append_step(&s, &decision("veto")).unwrap();
        }
    }
    downgrade_to_v1(&path);
    let v1_report = verify(&path).unwrap();
    assert!(v1_report.ok, "{v1_report:?}");

    // Read-only and snapshot reads leave it at version 1.
    let ro = AuditLog::open_read_only(&path).unwrap();
    assert_eq!(ro.schema_version(), 1);
    assert_eq!(ro.step_rows(None).unwrap().len(), 4);
    let state = ro.session_state("old").unwrap().unwrap();
    assert_eq!((state.last_step, state.tracker_state), (4, None));
    assert_eq!(ro.stats().unwrap().delivery.get("delivered"), Some(&4));
    drop(ro);
    let snap = AuditSnapshot::open(&path).unwrap();
    assert_eq!(snap.schema_version(), 1);
    assert_eq!(
        snap.all_session_summaries().unwrap()[0].first_veto_step,
        Some(1)
    );
    drop(snap);
    let version: i64 = attacker(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);

    // A writer migrates; old rows verify unchanged, new rows chain on.
    let log = open(&path);
    assert_eq!(log.schema_version(), SCHEMA_VERSION);
    let mut late = decision_for(3);
    late.delivery = Delivery::Late;
    log.append_step(&step("old", 5), &late).unwrap();
    let report = verify(&path).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, v1_report.rows_checked + 2);
    assert_eq!(log.last_step("old").unwrap(), Some(5));
    assert!(log
        .session_state("old")
        .unwrap()
        .unwrap()
        .tracker_state
        .is_some());
}
