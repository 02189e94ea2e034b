//! Opening, appending, querying and schema handling.

use crate::common::{attacker, config, decision, populated, step};
use limbic_audit::{
    sha256_hex, verify, AuditError, AuditLog, AuditOptions, DecisionRecord, Delivery, StepRecord,
    SCHEMA_VERSION,
};
use proptest::prelude::*;

fn open(path: &std::path::Path, store_text: bool) -> AuditLog {
    AuditLog::open(
        path,
        AuditOptions {
            store_text,
            ..AuditOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn hash_only_mode_stores_null_text_and_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 3, false);
    let conn = attacker(&path);
    let (text, sha): (Option<String>, String) = conn
        .query_row(
            "SELECT text, text_sha256 FROM steps WHERE id = ?1",
            [receipts[1].step_row],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(text, None);
    assert_eq!(sha, sha256_hex(step("session-0", 1).text.as_bytes()));
    let stored: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM steps WHERE text IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
    assert!(verify(&path).unwrap().ok);
}

#[test]
fn text_mode_stores_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 3, true);
    let (text, sha): (Option<String>, String) = attacker(&path)
        .query_row(
            "SELECT text, text_sha256 FROM steps WHERE id = ?1",
            [receipts[2].step_row],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let expected = step("session-0", 2).text;
    assert_eq!(text.as_deref(), Some(expected.as_str()));
    assert_eq!(sha, sha256_hex(expected.as_bytes()));
}

#[test]
fn journal_is_wal_and_schema_version_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 1, false);
    let conn = attacker(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn non_sqlite_file_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[thresholds]\nelevated = 1.0\n".repeat(100)).unwrap();
    let err = AuditLog::open(&path, AuditOptions::default()).unwrap_err();
    assert!(matches!(err, AuditError::NotADatabase { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("policy.toml"), "{message}");
    assert!(message.contains("not an SQLite database"), "{message}");
    // verify says the same rather than reporting tampering.
    let err = verify(&path).unwrap_err();
    assert!(matches!(err, AuditError::NotADatabase { .. }), "{err:?}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 1, false);
    attacker(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = AuditLog::open(&path, AuditOptions::default()).unwrap_err();
    match &err {
        AuditError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("newer"), "{err}");
    assert!(matches!(
        verify(&path),
        Err(AuditError::SchemaTooNew { .. })
    ));
}

#[test]
fn other_applications_database_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    attacker(&path)
        .execute_batch("CREATE TABLE users (name TEXT);")
        .unwrap();
    let err = AuditLog::open(&path, AuditOptions::default()).unwrap_err();
    assert!(matches!(err, AuditError::NotAnAuditLog { .. }), "{err:?}");
    assert!(err.to_string().contains("users"), "{err}");
    // Our tables were not added.
    let tables: i64 = attacker(&path)
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn verify_of_a_blank_sqlite_file_says_it_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.db");
    attacker(&path).execute_batch("VACUUM;").unwrap();
    let err = verify(&path).unwrap_err();
    assert!(matches!(err, AuditError::NotAnAuditLog { .. }), "{err:?}");
    assert!(err.to_string().contains("blank.db"), "{err}");
}

#[test]
fn missing_file_for_verify_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    assert!(matches!(verify(&path), Err(AuditError::Missing { .. })));
    assert!(matches!(
        AuditLog::open_read_only(&path),
        Err(AuditError::Missing { .. })
    ));
    assert!(!path.exists(), "neither call may create the file");
}

#[test]
fn empty_log_verifies_with_genesis_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path, false);
    let head = log.head().unwrap();
    assert_eq!(
        (head.seq, head.hash.as_str()),
        (0, limbic_audit::GENESIS_HASH)
    );
    let report = verify(&path).unwrap();
    assert!(report.ok);
    assert_eq!(report.rows_checked, 0);
}

#[test]
fn identical_config_is_reused_and_new_config_gets_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path, false);
    let first = log.record_config(&config("p1")).unwrap();
    let mut later = config("p1");
    later.started_at_ms += 60_000;
    assert_eq!(log.record_config(&later).unwrap(), first);
    log.append_step(&step("a", 0), &decision("allow")).unwrap();
    let second = log.record_config(&config("p2")).unwrap();
    assert_ne!(second, first);
    log.append_step(&step("b", 0), &decision("allow")).unwrap();
    // Switching back to p1 is a new configuration in force: new row.
    let third = log.record_config(&config("p1")).unwrap();
    assert_ne!(third, first);

    assert_eq!(
        log.session_summary("a").unwrap().unwrap().config_row,
        Some(first)
    );
    assert_eq!(
        log.session_summary("b").unwrap().unwrap().config_row,
        Some(second)
    );
    let rows: i64 = attacker(&path)
        .query_row("SELECT COUNT(*) FROM config", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);
    assert!(verify(&path).unwrap().ok);
}

#[test]
fn session_row_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path, false);
    let r0 = log.append_step(&step("s", 0), &decision("allow")).unwrap();
    let r1 = log.append_step(&step("s", 1), &decision("allow")).unwrap();
    assert_eq!(r0.session_row, r1.session_row);
    // session + step + decision, then step + decision.
    assert_eq!((r0.seq, r1.seq), (3, 5));
    assert_eq!(log.head().unwrap().seq, 5);
    let summary = log.session_summary("s").unwrap().unwrap();
    assert_eq!(
        summary.config_row, None,
        "no config recorded through this handle"
    );
    assert_eq!(summary.first_seen_ms, step("s", 0).ts_start_ms);
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 3, false);
    let log = open(&path, false);
    let next = log
        .append_step(&step("session-0", 3), &decision("warn"))
        .unwrap();
    assert_eq!(next.seq, receipts.last().unwrap().seq + 2);
    let report = verify(&path).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.verified_head.hash, next.row_hash);
}

#[test]
fn recent_decisions_newest_first_with_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 2, 4, false);
    let log = open(&path, false);
    let recent = log.recent_decisions(3).unwrap();
    assert_eq!(recent.len(), 3);
    let expected: Vec<i64> = receipts
        .iter()
        .rev()
        .take(3)
        .map(|r| r.decision_row)
        .collect();
    let got: Vec<i64> = recent.iter().map(|d| d.decision_row).collect();
    assert_eq!(got, expected);
    let newest = &recent[0];
    let source = step("session-1", 3);
    assert_eq!(newest.session_id, "session-1");
    assert_eq!(newest.step_index, 3);
    assert_eq!(newest.tool, source.tool);
    assert_eq!(newest.decision, "reroute");
    assert_eq!(newest.reroute.as_deref(), Some("confirm"));
    assert_eq!(newest.rule_id, "rule-reroute");
    assert_eq!(newest.classes, decision("reroute").classes);
    assert_eq!(
        newest.stress_signature,
        Some(f64::from(source.stress_signature))
    );
    assert_eq!(log.recent_decisions(100).unwrap().len(), receipts.len());
}

#[test]
fn session_summary_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 2, 8, false);
    let log = open(&path, false);
    let summary = log.session_summary("session-1").unwrap().unwrap();
    let steps: Vec<StepRecord> = (0..8).map(|i| step("session-1", i)).collect();
    assert_eq!(summary.steps, 8);
    assert_eq!(
        summary.spikes,
        steps.iter().filter(|s| s.spike).count() as u64
    );
    assert_eq!(summary.last_ts_ms, steps.iter().map(|s| s.ts_end_ms).max());
    let max = steps
        .iter()
        .map(|s| f64::from(s.stress_signature))
        .fold(f64::MIN, f64::max);
    assert_eq!(summary.max_stress, Some(max));
    let mean = steps
        .iter()
        .map(|s| f64::from(s.stress_signature))
        .sum::<f64>()
        / 8.0;
    assert!((summary.mean_stress.unwrap() - mean).abs() < 1e-9);
    // decision_for cycles allow, warn, veto, reroute.
    for kind in ["allow", "warn", "veto", "reroute"] {
        assert_eq!(summary.decisions.get(kind), Some(&2), "{kind}");
    }
    assert!(log.session_summary("never-seen").unwrap().is_none());

    let all = log.session_summaries(10).unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(
        ids,
        ["session-1", "session-0"],
        "most recently active first"
    );
    assert_eq!(log.session_summaries(1).unwrap().len(), 1);
    let decisions = log.session_decisions("session-0").unwrap();
    assert_eq!(
        decisions.iter().map(|d| d.step_index).collect::<Vec<_>>(),
        (0..8).collect::<Vec<i64>>()
    );
}

#[test]
fn read_only_handle_queries_but_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 2, false);
    let log = AuditLog::open_read_only(&path).unwrap();
    assert_eq!(log.recent_decisions(10).unwrap().len(), receipts.len());
    assert_eq!(log.head().unwrap().seq, receipts.last().unwrap().seq);
    let err = log
        .append_step(&step("x", 0), &decision("allow"))
        .unwrap_err();
    assert!(matches!(err, AuditError::ReadOnly { .. }), "{err:?}");
    assert!(matches!(
        log.record_config(&config("p")),
        Err(AuditError::ReadOnly { .. })
    ));
}

#[test]
fn non_finite_and_negative_zero_floats_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open(&path, true);
    let mut odd = step("s", 0);
    odd.stress_signature = f32::NAN;
    odd.latency_ms = -0.0;
    odd.scores.insert("fear".into(), f32::INFINITY);
    odd.peak.insert("shame".into(), f32::NEG_INFINITY);
    log.append_step(&odd, &decision("warn")).unwrap();
    let mut inf = step("s", 1);
    inf.stress_signature = f32::INFINITY;
    inf.latency_ms = 2.0; // integral REAL: SQLite may store it as an integer
    log.append_step(&inf, &decision("veto")).unwrap();
    let report = verify(&path).unwrap();
    assert!(report.ok, "{report:?}");
    let recent = log.recent_decisions(2).unwrap();
    assert_eq!(recent[0].stress_signature, Some(f64::INFINITY));
    assert_eq!(recent[1].stress_signature, None, "NaN is stored as NULL");
}

fn arb_step() -> impl Strategy<Value = (StepRecord, DecisionRecord)> {
    let float = prop_oneof![
        any::<f32>(),
        Just(f32::NAN),
        Just(-0.0f32),
        Just(f32::INFINITY)
    ];
    (
        "[a-c]",
        1..=u64::from(u32::MAX),
        any::<i64>(),
        ".{0,40}",
        proptest::collection::btree_map("[a-z]{1,8}", float.clone(), 0..4),
        float,
        any::<bool>(),
        any::<f64>(),
        proptest::option::of("[a-z]{1,6}"),
        ".{0,30}",
        (
            proptest::option::of(any::<i32>()),
            prop_oneof![
                Just(Delivery::Delivered),
                Just(Delivery::Late),
                Just(Delivery::Undelivered),
                Just(Delivery::Regenerated)
            ],
            proptest::option::of(".{0,20}"),
        ),
    )
        .prop_map(
            |(session, gap, ts, text, scores, stress, spike, latency, reroute, reason, extra)| {
                let (tracker, delivery, delivery_note) = extra;
                let step = StepRecord {
                    session_id: session,
                    // A gap; the test turns gaps into increasing numbers.
                    step_index: gap,
                    ts_start_ms: ts,
                    ts_end_ms: ts.wrapping_add(5),
                    tool: "Bash".into(),
                    args: serde_json::json!({ "command": text.clone() }),
                    text,
                    peak: scores.clone(),
                    scores,
                    stress_signature: stress,
                    spike,
                    latency_ms: latency,
                    tracker_state: tracker.map(|t| serde_json::json!({ "t": t })),
                };
                let decision = DecisionRecord {
                    decision: "warn".into(),
                    reroute,
                    rule_id: "r".into(),
                    reason,
                    classes: vec![],
                    delivery,
                    delivery_note,
                };
                (step, decision)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever values the probe produces, what was written verifies.
    #[test]
    fn arbitrary_steps_always_verify(
        steps in proptest::collection::vec(arb_step(), 1..12),
        store_text in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let log = open(&path, store_text);
        let mut last = None;
        let mut next: std::collections::HashMap<String, u64> = Default::default();
        for (step, decision) in &steps {
            let mut step = step.clone();
            let index = next.get(&step.session_id).copied().unwrap_or(0) + step.step_index;
            next.insert(step.session_id.clone(), index);
            step.step_index = index;
            last = Some(log.append_step(&step, decision).unwrap());
        }
        let report = verify(&path).unwrap();
        prop_assert!(report.ok, "{:?}", report);
        let last = last.unwrap();
        prop_assert_eq!(report.verified_head.seq, last.seq);
        prop_assert_eq!(report.verified_head.hash, last.row_hash);
    }
}
