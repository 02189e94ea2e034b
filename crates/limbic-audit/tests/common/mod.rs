//! Shared fixtures for the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use limbic_audit::{AuditLog, AuditOptions, ConfigRecord, DecisionRecord, StepReceipt, StepRecord};
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

/// A step whose scores vary with the index so rows differ.
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
        step_index: index,
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
    }
}

pub fn decision(kind: &str) -> DecisionRecord {
    DecisionRecord {
        decision: kind.to_string(),
        reroute: (kind == "reroute").then(|| "confirm".to_string()),
        rule_id: format!("rule-{kind}"),
        reason: format!("{kind}: stress is what it is"),
        classes: vec!["destructive_shell".into(), "vcs_history_rewrite".into()],
    }
}

pub fn decision_for(index: u32) -> DecisionRecord {
    decision(["allow", "warn", "veto", "reroute"][index as usize % 4])
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
