//! Tampering with the log through a separate connection must be caught by
//! `verify`, pointing at the right first bad row.

use std::path::Path;
use std::process::Command;

use crate::common::{attacker, populated, recompute_chain, row_at, seq_of, truncate_last_step};
use limbic_audit::{verify, verify_against_anchor, AuditLog, AuditOptions, BadRow, Problem};

fn first_bad(path: &Path) -> BadRow {
    let report = verify(path).unwrap();
    assert!(!report.ok, "tampering went undetected: {report:?}");
    report
        .first_bad
        .expect("a failed report names the first bad row")
}

#[test]
fn untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 3, 10, true);
    let report = verify(&path).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.first_bad, None);
    // 1 config + 3 sessions + 30 steps + 30 decisions.
    assert_eq!(report.rows_checked, 64);
    let head = AuditLog::open(&path, AuditOptions::default())
        .unwrap()
        .head()
        .unwrap();
    assert_eq!(head.seq, 64);
    assert_eq!(report.verified_head, head);
    let last = receipts.last().unwrap();
    assert_eq!((last.seq, &last.row_hash), (head.seq, &head.hash));
}

#[test]
fn edited_step_score_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 2, 8, true);
    let target = receipts[10].step_row;
    let conn = attacker(&path);
    let seq = seq_of(&conn, "steps", target);
    let changed = conn
        .execute(
            "UPDATE steps SET scores_json = replace(scores_json, '\"desperation\":', '\"desperation\":-') WHERE id = ?1",
            [target],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!(
        (bad.table.as_str(), bad.seq, bad.rowid),
        ("steps", Some(seq), Some(target))
    );
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }), "{bad}");
}

#[test]
fn edited_stress_float_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 6, false);
    let target = receipts[4].step_row;
    let conn = attacker(&path);
    let seq = seq_of(&conn, "steps", target);
    // The smallest possible change to a REAL.
    conn.execute(
        "UPDATE steps SET stress_signature = stress_signature * (1 + 1e-15) WHERE id = ?1",
        [target],
    )
    .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!((bad.table.as_str(), bad.seq), ("steps", Some(seq)));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
}

#[test]
fn edited_decision_reason_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 2, 8, true);
    let target = receipts[6].decision_row;
    let conn = attacker(&path);
    let seq = seq_of(&conn, "decisions", target);
    conn.execute(
        "UPDATE decisions SET decision = 'allow', reason = 'looked fine' WHERE id = ?1",
        [target],
    )
    .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!(
        (bad.table.as_str(), bad.seq, bad.rowid),
        ("decisions", Some(seq), Some(target))
    );
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
}

#[test]
fn deleted_middle_row_is_detected_at_the_next_row() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 2, 8, true);
    let target = receipts[5].decision_row;
    let conn = attacker(&path);
    let seq = seq_of(&conn, "decisions", target);
    let (next_table, next_id) = row_at(&conn, seq + 1);
    conn.execute("DELETE FROM decisions WHERE id = ?1", [target])
        .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!(
        (bad.table.as_str(), bad.seq, bad.rowid),
        (next_table.as_str(), Some(seq + 1), Some(next_id))
    );
    assert_eq!(
        bad.problem,
        Problem::SeqGap {
            expected: seq,
            found: seq + 1
        }
    );
}

#[test]
fn deleted_and_renumbered_rows_are_detected_by_the_link() {
    // A cleverer attacker deletes a step + decision and shifts later seqs
    // down so there is no gap; the prev_hash link still breaks.
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 8, true);
    let victim = &receipts[3];
    let conn = attacker(&path);
    let step_seq = seq_of(&conn, "steps", victim.step_row);
    let (next_table, next_id) = row_at(&conn, step_seq + 2);
    conn.execute("DELETE FROM decisions WHERE id = ?1", [victim.decision_row])
        .unwrap();
    conn.execute("DELETE FROM steps WHERE id = ?1", [victim.step_row])
        .unwrap();
    for table in ["steps", "decisions"] {
        // Two passes via negatives to dodge the UNIQUE(seq) constraint.
        conn.execute(
            &format!("UPDATE {table} SET seq = -(seq - 2) WHERE seq > ?1"),
            [step_seq],
        )
        .unwrap();
        conn.execute(&format!("UPDATE {table} SET seq = -seq WHERE seq < 0"), [])
            .unwrap();
    }
    conn.execute("UPDATE chain_head SET last_seq = last_seq - 2", [])
        .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!(
        (bad.table.as_str(), bad.seq, bad.rowid),
        (next_table.as_str(), Some(step_seq), Some(next_id))
    );
    assert!(
        matches!(bad.problem, Problem::PrevHashMismatch { .. }),
        "{bad}"
    );
}

#[test]
fn deleted_last_row_is_detected_by_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 2, 5, true);
    let last = receipts.last().unwrap();
    let conn = attacker(&path);
    conn.execute("DELETE FROM decisions WHERE id = ?1", [last.decision_row])
        .unwrap();
    drop(conn);
    let report = verify(&path).unwrap();
    assert!(!report.ok);
    // Everything that remains is a valid chain...
    assert_eq!(report.rows_checked, (last.seq - 1) as u64);
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.table, "chain_head");
    match bad.problem {
        Problem::HeadMismatch {
            head_seq,
            chain_seq,
            ..
        } => assert_eq!((head_seq, chain_seq), (last.seq, last.seq - 1)),
        other => panic!("expected HeadMismatch, got {other:?}"),
    }
}

#[test]
fn consistent_tail_truncation_needs_an_external_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 2, 5, true);
    let anchor = AuditLog::open(&path, AuditOptions::default())
        .unwrap()
        .head()
        .unwrap();
    let last = receipts.last().unwrap();
    let conn = attacker(&path);
    let new_end = truncate_last_step(&conn, last);
    drop(conn);

    // Documented limitation: the file alone looks fine.
    assert!(verify(&path).unwrap().ok);
    // The anchor exported before the truncation catches it.
    let report = verify_against_anchor(&path, &anchor).unwrap();
    assert!(!report.ok);
    assert_eq!(
        report.first_bad.unwrap().problem,
        Problem::AnchorBeyondEnd {
            anchor_seq: anchor.seq,
            chain_seq: new_end.0
        }
    );
}

#[test]
fn full_chain_rewrite_needs_an_external_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 6, true);
    let anchor = AuditLog::open(&path, AuditOptions::default())
        .unwrap()
        .head()
        .unwrap();
    let conn = attacker(&path);
    let edited = receipts[1].decision_row;
    conn.execute(
        "UPDATE decisions SET decision = 'allow' WHERE id = ?1",
        [edited],
    )
    .unwrap();
    recompute_chain(&conn);
    drop(conn);

    assert!(
        verify(&path).unwrap().ok,
        "a consistent rewrite is undetectable alone"
    );
    let report = verify_against_anchor(&path, &anchor).unwrap();
    let bad = report.first_bad.expect("anchor catches the rewrite");
    assert_eq!(bad.seq, Some(anchor.seq));
    assert!(matches!(bad.problem, Problem::AnchorMismatch { .. }));
}

#[test]
fn swapped_seqs_are_detected_at_the_earlier_position() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 8, true);
    let step_row = receipts[2].step_row;
    let decision_row = receipts[5].decision_row;
    let conn = attacker(&path);
    let a = seq_of(&conn, "steps", step_row);
    let b = seq_of(&conn, "decisions", decision_row);
    assert!(a < b);
    conn.execute("UPDATE steps SET seq = ?1 WHERE id = ?2", (b, step_row))
        .unwrap();
    conn.execute(
        "UPDATE decisions SET seq = ?1 WHERE id = ?2",
        (a, decision_row),
    )
    .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    // At position `a` the chain now finds the decision row.
    assert_eq!(
        (bad.table.as_str(), bad.seq, bad.rowid),
        ("decisions", Some(a), Some(decision_row))
    );
    assert!(
        matches!(bad.problem, Problem::PrevHashMismatch { .. }),
        "{bad}"
    );
}

#[test]
fn swapped_contents_of_two_rows_are_detected() {
    // Reordering by swapping everything but seq/prev_hash/row_hash.
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 6, true);
    let (x, y) = (receipts[1].decision_row, receipts[3].decision_row);
    let conn = attacker(&path);
    let sx = seq_of(&conn, "decisions", x);
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE t AS SELECT * FROM decisions WHERE id IN ({x}, {y});
         UPDATE decisions SET decision = (SELECT decision FROM t WHERE id = {y}),
                              reason = (SELECT reason FROM t WHERE id = {y}) WHERE id = {x};
         UPDATE decisions SET decision = (SELECT decision FROM t WHERE id = {x}),
                              reason = (SELECT reason FROM t WHERE id = {x}) WHERE id = {y};"
    ))
    .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!((bad.table.as_str(), bad.seq), ("decisions", Some(sx)));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
}

#[test]
fn duplicated_seq_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 4, true);
    let conn = attacker(&path);
    let seq = seq_of(&conn, "steps", receipts[1].step_row);
    // Insert a forged decision sharing the step's seq (seq is unique only
    // per table, so SQLite lets this through).
    conn.execute(
        "INSERT INTO decisions (id, seq, prev_hash, row_hash, step_id, decision, reroute, rule_id, reason, classes_json)
         SELECT 999, ?1, prev_hash, row_hash, 999, 'allow', NULL, 'forged', 'forged', '[]' FROM steps WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    drop(conn);
    let bad = first_bad(&path);
    assert_eq!(bad.seq, Some(seq));
    // ORDER BY seq, table name: "decisions" sorts before "steps", so the
    // forged row comes first and fails its hash; either way it's caught here.
    assert_eq!((bad.table.as_str(), bad.rowid), ("decisions", Some(999)));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }), "{bad}");
}

#[test]
fn edited_or_deleted_head_and_dropped_table_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 3, true);
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy(&path, &p).unwrap();
        p
    };
    let edited_head = copy("edited-head.db");
    attacker(&edited_head)
        .execute("UPDATE chain_head SET last_hash = ?1", ["f".repeat(64)])
        .unwrap();
    assert!(matches!(
        first_bad(&edited_head).problem,
        Problem::HeadMismatch { .. }
    ));

    let no_head = copy("no-head.db");
    attacker(&no_head)
        .execute("DELETE FROM chain_head", [])
        .unwrap();
    assert_eq!(first_bad(&no_head).problem, Problem::HeadMissing);

    let dropped = copy("dropped.db");
    attacker(&dropped)
        .execute_batch("PRAGMA foreign_keys = OFF; DROP TABLE decisions;")
        .unwrap();
    let bad = first_bad(&dropped);
    assert_eq!(
        (bad.table.as_str(), bad.problem),
        ("decisions", Problem::TableMissing)
    );
}

/// Every hashed column of every table is covered: changing any one of them
/// in the first row of its table is caught at exactly that row.
#[test]
fn every_column_is_covered_by_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 4, true);
    let columns: Vec<(&str, &str)> = [
        ("config", "policy_hash pack_hash model_sha256 model_name limbic_version settings_json started_at_ms"),
        ("sessions", "session_id first_seen_ms config_id"),
        (
            "steps",
            "session_id step_index ts_start_ms ts_end_ms tool args_json text text_sha256 scores_json peak_json stress_signature spike latency_ms tracker_state",
        ),
        ("decisions", "step_id decision reroute rule_id reason classes_json delivery delivery_note"),
    ]
    .into_iter()
    .flat_map(|(t, cols)| cols.split(' ').map(move |c| (t, c)))
    .chain([("steps", "id"), ("decisions", "id")])
    .collect();
    assert!(columns.len() > 28);
    for (i, (table, column)) in columns.into_iter().enumerate() {
        let copy = dir.path().join(format!("case-{i}.db"));
        std::fs::copy(&path, &copy).unwrap();
        let conn = attacker(&copy);
        // The first row of the table with a non-NULL value in this column
        // (reroute is NULL for most decisions).
        let (id, seq): (i64, i64) = conn
            .query_row(
                &format!(
                    "SELECT id, seq FROM {table} WHERE {column} IS NOT NULL ORDER BY seq LIMIT 1"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // Integers move by 1000 to stay clear of UNIQUE ids.
        let changed = conn
            .execute(
                &format!(
                    "UPDATE {table} SET {column} = CASE typeof({column})
                        WHEN 'integer' THEN {column} + 1000
                        WHEN 'real' THEN {column} + 0.5
                        ELSE {column} || 'x' END
                     WHERE id = ?1"
                ),
                [id],
            )
            .unwrap();
        assert_eq!(changed, 1);
        drop(conn);
        let bad = first_bad(&copy);
        assert_eq!(
            (bad.table.as_str(), bad.seq),
            (table, Some(seq)),
            "editing {table}.{column} was attributed to {bad}"
        );
        assert!(
            matches!(bad.problem, Problem::HashMismatch { .. }),
            "editing {table}.{column}: {bad}"
        );
    }
}

#[test]
fn sqlite3_cli_update_is_detected() {
    let cli = Path::new("/usr/bin/sqlite3");
    if !cli.exists() {
        println!("note: /usr/bin/sqlite3 not installed; skipping the CLI tampering test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 5, true);
    let target = receipts[2].decision_row;
    let seq = seq_of(&attacker(&path), "decisions", target);
    let output = Command::new(cli)
        .arg(&path)
        .arg(format!(
            "UPDATE decisions SET decision = 'allow', reason = 'approved by operator' WHERE id = {target};"
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bad = first_bad(&path);
    assert_eq!(
        (bad.table.as_str(), bad.seq, bad.rowid),
        ("decisions", Some(seq), Some(target))
    );
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
    assert!(bad.to_string().contains("modified"), "{bad}");
}
