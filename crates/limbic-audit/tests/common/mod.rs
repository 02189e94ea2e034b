//! Shared fixtures for the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use limbic_audit::canonical::row_hash;
use limbic_audit::{
    AuditLog, AuditOptions, ConfigRecord, DecisionRecord, Delivery, StepReceipt, StepRecord,
};
use rusqlite::types::Value;
use rusqlite::Connection;

pub fn config(policy_hash: &str) -> ConfigRecord {
    ConfigRecord {
        policy_hash: policy_hash.to_string(),
        pack_hash: "pack-".to_string() + policy_hash,
        model_sha256: "ab".repeat(32),
        model_name: "SmolLM2-135M-Instruct".into(),
        limbic_version: "0.1.0".into(),
        settings: serde_json::json!({"fail_mode": "closed", "layers": [10, 15, 20]}),
        started_at_ms: 1_700_000_000_000,
    }
}

/// A step whose scores vary with the index so rows differ; odd steps carry
/// a tracker state.
pub fn step(session: &str, index: u32) -> StepRecord {
    let x = index as f32;
    let scores: BTreeMap<String, f32> = [
        ("desperation", 0.25 * x),
        ("fear", 0.1 * x - 0.3),
        ("calm", 1.0 - 0.2 * x),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let peak = scores.iter().map(|(k, v)| (k.clone(), v + 0.5)).collect();
    StepRecord {
        session_id: session.to_string(),
        step_index: u64::from(index),
        ts_start_ms: 1_700_000_000_000 + i64::from(index) * 1000,
        ts_end_ms: 1_700_000_000_000 + i64::from(index) * 1000 + 40,
        tool: if index % 2 == 0 { "Bash" } else { "Edit" }.into(),
        args: serde_json::json!({"command": format!("cargo test --step {index}")}),
        text: format!("step {index}: the test still fails, trying again"),
        scores,
        peak,
        stress_signature: 0.3 * x,
        spike: index >= 5,
        latency_ms: 12.5 + f64::from(index),
        tracker_state: (index % 2 == 1)
            .then(|| serde_json::json!({"ewma": 0.1 * f64::from(index), "history": [index, 1, 2]})),
    }
}

pub fn decision(kind: &str) -> DecisionRecord {
    DecisionRecord {
        decision: kind.to_string(),
        reroute: (kind == "reroute").then(|| "confirm".to_string()),
        rule_id: format!("rule-{kind}"),
        reason: format!("{kind}: stress is what it is"),
        classes: vec!["destructive_shell".into(), "vcs_history_rewrite".into()],
        delivery: Delivery::Delivered,
        delivery_note: None,
    }
}

/// Decisions cycle through the kinds; every fifth (from index 3) reached the
/// agent too late.
pub fn decision_for(index: u32) -> DecisionRecord {
    let mut d = decision(["allow", "warn", "veto", "reroute"][index as usize % 4]);
    if index % 5 == 3 {
        d.delivery = Delivery::Late;
        d.delivery_note = Some(format!(
            "hook deadline passed at step {index}; agent told deny"
        ));
    }
    d
}

/// A log with one config row and `sessions` sessions of `steps` steps each.
pub fn populated(
    dir: &Path,
    sessions: usize,
    steps: u32,
    store_text: bool,
) -> (PathBuf, Vec<StepReceipt>) {
    let path = dir.join("audit.db");
    let log = AuditLog::open(
        &path,
        AuditOptions {
            store_text,
            ..AuditOptions::default()
        },
    )
    .unwrap();
    log.record_config(&config("policy-1")).unwrap();
    let mut receipts = Vec::new();
    for s in 0..sessions {
        for i in 0..steps {
            receipts.push(
                log.append_step(&step(&format!("session-{s}"), i), &decision_for(i))
                    .unwrap(),
            );
        }
    }
    (path, receipts)
}

/// A raw connection, as an attacker with the sqlite3 tool would have.
/// Foreign keys off like the sqlite3 CLI's default (the bundled library
/// used here defaults them on).
pub fn attacker(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    conn
}

/// `seq` of a row, read with a raw connection.
pub fn seq_of(conn: &Connection, table: &str, id: i64) -> i64 {
    conn.query_row(
        &format!("SELECT seq FROM {table} WHERE id = ?1"),
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

/// (table, id) of the row at `seq`.
pub fn row_at(conn: &Connection, seq: i64) -> (String, i64) {
    conn.query_row(
        "SELECT 'config', id FROM config WHERE seq = ?1
         UNION ALL SELECT 'sessions', id FROM sessions WHERE seq = ?1
         UNION ALL SELECT 'steps', id FROM steps WHERE seq = ?1
         UNION ALL SELECT 'decisions', id FROM decisions WHERE seq = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// Rewrites every `prev_hash`/`row_hash` and the head with the public
/// encoding, as an attacker who edited rows would: the result verifies on
/// its own. Columns added by schema version 2 are hashed only up to the last
/// non-NULL one (the documented encoding). Returns the new head.
pub fn recompute_chain(conn: &Connection) -> (i64, String) {
    let base_fields = |table: &str| match table {
        "config" => 9,
        "sessions" => 5,
        "steps" => 15,
        "decisions" => 8,
        other => panic!("unknown table {other}"),
    };
    let mut prev = limbic_audit::GENESIS_HASH.to_string();
    let rows: Vec<(String, i64)> = {
        let mut stmt = conn
            .prepare(
                "SELECT 'config', id, seq FROM config UNION ALL SELECT 'sessions', id, seq FROM sessions
                 UNION ALL SELECT 'steps', id, seq FROM steps UNION ALL SELECT 'decisions', id, seq FROM decisions
                 ORDER BY 3",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut last_seq = 0;
    for (table, id) in rows {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} WHERE id = ?1"))
            .unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let values: Vec<Value> = stmt
            .query_row([id], |r| (0..names.len()).map(|i| r.get(i)).collect())
            .unwrap();
        let mut fields: Vec<Value> = names
            .iter()
            .zip(values.iter())
            .filter(|(n, _)| *n != "prev_hash" && *n != "row_hash")
            .map(|(_, v)| v.clone())
            .collect();
        while fields.len() > base_fields(&table) && fields.last() == Some(&Value::Null) {
            fields.pop();
        }
        last_seq = match fields[1] {
            Value::Integer(s) => s,
            _ => unreachable!(),
        };
        let hash = row_hash(&prev, &table, &fields);
        conn.execute(
            &format!("UPDATE {table} SET prev_hash = ?1, row_hash = ?2 WHERE id = ?3"),
            (&prev, &hash, id),
        )
        .unwrap();
        prev = hash;
    }
    conn.execute(
        "UPDATE chain_head SET last_seq = ?1, last_hash = ?2",
        (last_seq, &prev),
    )
    .unwrap();
    (last_seq, prev)
}

/// Deletes the last step and its decision and points `chain_head` at the new
/// end: the one-statement truncation that plain verify cannot see.
pub fn truncate_last_step(conn: &Connection, last: &StepReceipt) -> (i64, String) {
    conn.execute("DELETE FROM decisions WHERE id = ?1", [last.decision_row])
        .unwrap();
    conn.execute("DELETE FROM steps WHERE id = ?1", [last.step_row])
        .unwrap();
    let new_end: (i64, String) = conn
        .query_row(
            "SELECT seq, row_hash FROM decisions ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    conn.execute(
        "UPDATE chain_head SET last_seq = ?1, last_hash = ?2",
        (new_end.0, &new_end.1),
    )
    .unwrap();
    new_end
}
