//! Full rows for offline audit and export: one [`StepRow`] per step with its
//! decision, the config rows, and whole-log statistics.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params_from_iter, Connection, Row};
use serde::{Deserialize, Serialize};

use crate::canonical::sha256_hex;
use crate::error::{AuditError, Result, SqlContext};
use crate::log::{
    read_head, AuditLog, ChainHead, DecisionRecord, Delivery, StepReceipt, StepRecord,
};
use crate::state::step_u64;

/// One step joined with its decision: everything the log holds about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub session_id: String,
    pub step_index: u64,
    pub ts_start_ms: i64,
    pub ts_end_ms: i64,
    pub tool: String,
    pub args: serde_json::Value,
    /// The step's text when the log stores text, else `None`.
    pub text: Option<String>,
    pub text_sha256: String,
    pub decision: String,
    pub reroute: Option<String>,
    pub rule_id: String,
    pub reason: String,
    pub classes: Vec<String>,
    pub delivery: Delivery,
    pub delivery_note: Option<String>,
    /// `None` when the step was not scored (stored NULL / NaN).
    pub stress_signature: Option<f64>,
    pub spike: bool,
    pub latency_ms: Option<f64>,
    /// Mean calibrated z per emotion (`None` for a NaN score).
    pub scores: BTreeMap<String, Option<f64>>,
    /// Peak calibrated z per emotion.
    pub peak: BTreeMap<String, Option<f64>>,
    pub tracker_state: Option<serde_json::Value>,
    /// Config row in force when the session was first seen.
    pub config_row: Option<i64>,
    pub step_row: i64,
    pub step_seq: i64,
    pub step_hash: String,
    pub decision_row: i64,
    pub decision_seq: i64,
    /// Hash of the decision row (it chains over the step row).
    pub decision_hash: String,
}

impl StepRow {
    /// The row [`AuditLog::step_rows`] will read back for a step just appended, built from
    /// the records and the receipt without a read (to stream each committed step elsewhere).
    /// `text_stored`: whether the log keeps text (`AuditOptions::store_text`).
    pub fn committed(
        step: &StepRecord,
        decision: &DecisionRecord,
        receipt: &StepReceipt,
        text_stored: bool,
    ) -> StepRow {
        // Scores are stored as JSON written from f32 (shortest form) and read as f64; going
        // through the same digits gives the values a later read returns.
        let as_read = |m: &BTreeMap<String, f32>| {
            m.iter()
                .map(|(k, v)| {
                    let v = Some(*v)
                        .filter(|v| v.is_finite())
                        .and_then(|v| v.to_string().parse::<f64>().ok());
                    (k.clone(), v)
                })
                .collect()
        };
        let stress = f64::from(step.stress_signature);
        StepRow {
            session_id: step.session_id.clone(),
            step_index: step.step_index,
            ts_start_ms: step.ts_start_ms,
            ts_end_ms: step.ts_end_ms,
            tool: step.tool.clone(),
            args: step.args.clone(),
            text: text_stored.then(|| step.text.clone()),
            text_sha256: sha256_hex(step.text.as_bytes()),
            decision: decision.decision.clone(),
            reroute: decision.reroute.clone(),
            rule_id: decision.rule_id.clone(),
            reason: decision.reason.clone(),
            classes: decision.classes.clone(),
            delivery: decision.delivery,
            delivery_note: decision.delivery_note.clone(),
            stress_signature: (!stress.is_nan()).then_some(stress),
            spike: step.spike,
            latency_ms: (!step.latency_ms.is_nan()).then_some(step.latency_ms),
            scores: as_read(&step.scores),
            peak: as_read(&step.peak),
            tracker_state: step.tracker_state.clone(),
            config_row: None,
            step_row: receipt.step_row,
            step_seq: receipt.step_seq,
            step_hash: receipt.step_hash.clone(),
            decision_row: receipt.decision_row,
            decision_seq: receipt.seq,
            decision_hash: receipt.row_hash.clone(),
        }
    }
}

/// One row of the `config` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRow {
    pub row: i64,
    pub seq: i64,
    pub row_hash: String,
    pub policy_hash: String,
    pub pack_hash: String,
    pub model_sha256: String,
    pub model_name: String,
    pub limbic_version: String,
    pub settings: serde_json::Value,
    pub started_at_ms: i64,
}

/// Whole-log statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditStats {
    pub schema_version: i64,
    /// Head as recorded in `chain_head` (not verified; see [`crate::verify`]).
    pub head: ChainHead,
    pub configs: u64,
    pub sessions: u64,
    pub steps: u64,
    /// Steps with no decision row (should be 0: both are written in one
    /// transaction).
    pub steps_without_decision: u64,
    /// Count of each decision kind.
    pub decisions: BTreeMap<String, u64>,
    /// Count of each delivery outcome (`delivered`, `late`, `undelivered`).
    pub delivery: BTreeMap<String, u64>,
    pub spikes: u64,
    /// Steps without a stress score (scorer unavailable).
    pub unscored: u64,
    pub max_stress: Option<f64>,
    pub mean_stress: Option<f64>,
    pub mean_latency_ms: Option<f64>,
    pub first_ts_ms: Option<i64>,
    pub last_ts_ms: Option<i64>,
}

/// spikes, unscored, max / mean stress, mean latency, first / last time.
type StepAggregates = (
    Option<i64>,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
);

/// `expr` on a file that has the version-2 columns, NULL on a version-1 file.
fn v2(version: i64, expr: &'static str) -> &'static str {
    if version >= 2 {
        expr
    } else {
        "NULL"
    }
}

fn step_rows_sql(version: i64, one_session: bool) -> String {
    format!(
        "SELECT s.id, s.seq, s.row_hash, s.session_id, s.step_index, s.ts_start_ms, s.ts_end_ms,
                s.tool, s.args_json, s.text, s.text_sha256, s.scores_json, s.peak_json,
                s.stress_signature, s.spike, s.latency_ms, {tracker},
                d.id, d.seq, d.row_hash, d.decision, d.reroute, d.rule_id, d.reason,
                d.classes_json, {delivery}, {note}, se.config_id
         FROM steps s
         JOIN decisions d ON d.step_id = s.id
         LEFT JOIN sessions se ON se.session_id = s.session_id
         {filter}
         ORDER BY s.seq",
        tracker = v2(version, "s.tracker_state"),
        delivery = v2(version, "d.delivery"),
        note = v2(version, "d.delivery_note"),
        filter = if one_session {
            "WHERE s.session_id = ?1"
        } else {
            ""
        },
    )
}

fn invalid(path: &Path, field: &'static str, row: i64, problem: String) -> AuditError {
    AuditError::InvalidField {
        path: path.to_path_buf(),
        field,
        problem: format!("row {row}: {problem}"),
    }
}

fn parse_json(path: &Path, field: &'static str, row: i64, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| invalid(path, field, row, format!("not JSON: {e}")))
}

fn score_map(
    path: &Path,
    field: &'static str,
    row: i64,
    text: &str,
) -> Result<BTreeMap<String, Option<f64>>> {
    match parse_json(path, field, row, text)? {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::Null => Ok((k, None)),
                serde_json::Value::Number(n) => Ok((k, n.as_f64())),
                other => Err(invalid(
                    path,
                    field,
                    row,
                    format!("score `{k}` is {other}, not a number"),
                )),
            })
            .collect(),
        other => Err(invalid(
            path,
            field,
            row,
            format!("{other} is not an object"),
        )),
    }
}

fn step_row(path: &Path, r: &Row<'_>) -> Result<StepRow> {
    let ctx = "reading step rows";
    let step_row: i64 = r.get(0).ctx(path, ctx)?;
    let args: String = r.get(8).ctx(path, ctx)?;
    let scores: String = r.get(11).ctx(path, ctx)?;
    let peak: String = r.get(12).ctx(path, ctx)?;
    let tracker: Option<String> = r.get(16).ctx(path, ctx)?;
    let classes: String = r.get(24).ctx(path, ctx)?;
    let delivery: Option<String> = r.get(25).ctx(path, ctx)?;
    let decision_row: i64 = r.get(17).ctx(path, ctx)?;
    let delivery = Delivery::from_stored(delivery.as_deref()).ok_or_else(|| {
        invalid(
            path,
            "decisions.delivery",
            decision_row,
            format!("unknown value {delivery:?}"),
        )
    })?;
    let classes = serde_json::from_str(&classes).map_err(|e| {
        invalid(
            path,
            "decisions.classes_json",
            decision_row,
            format!("not a JSON list of strings: {e}"),
        )
    })?;
    Ok(StepRow {
        session_id: r.get(3).ctx(path, ctx)?,
        step_index: step_u64(path, r.get(4).ctx(path, ctx)?)?,
        ts_start_ms: r.get(5).ctx(path, ctx)?,
        ts_end_ms: r.get(6).ctx(path, ctx)?,
        tool: r.get(7).ctx(path, ctx)?,
        args: parse_json(path, "steps.args_json", step_row, &args)?,
        text: r.get(9).ctx(path, ctx)?,
        text_sha256: r.get(10).ctx(path, ctx)?,
        decision: r.get(20).ctx(path, ctx)?,
        reroute: r.get(21).ctx(path, ctx)?,
        rule_id: r.get(22).ctx(path, ctx)?,
        reason: r.get(23).ctx(path, ctx)?,
        classes,
        delivery,
        delivery_note: r.get(26).ctx(path, ctx)?,
        stress_signature: r.get(13).ctx(path, ctx)?,
        spike: r.get::<_, i64>(14).ctx(path, ctx)? != 0,
        latency_ms: r.get(15).ctx(path, ctx)?,
        scores: score_map(path, "steps.scores_json", step_row, &scores)?,
        peak: score_map(path, "steps.peak_json", step_row, &peak)?,
        tracker_state: tracker
            .map(|t| parse_json(path, "steps.tracker_state", step_row, &t))
            .transpose()?,
        config_row: r.get(27).ctx(path, ctx)?,
        step_row,
        step_seq: r.get(1).ctx(path, ctx)?,
        step_hash: r.get(2).ctx(path, ctx)?,
        decision_row,
        decision_seq: r.get(18).ctx(path, ctx)?,
        decision_hash: r.get(19).ctx(path, ctx)?,
    })
}

fn count(conn: &Connection, path: &Path, sql: &str) -> Result<u64> {
    let n: i64 = conn
        .query_row(sql, [], |r| r.get(0))
        .ctx(path, "computing statistics")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn grouped(conn: &Connection, path: &Path, sql: &str) -> Result<BTreeMap<String, u64>> {
    let ctx = "computing statistics";
    let mut stmt = conn.prepare(sql).ctx(path, ctx)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .ctx(path, ctx)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (key, n) = row.ctx(path, ctx)?;
        out.insert(key, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

impl AuditLog {
    /// Calls `f` with every step row (of one session, or all) in chain
    /// order, without loading them all; stops at the first error `f` returns.
    /// Returns the number of rows visited. The log's lock is held meanwhile.
    pub fn for_each_step(
        &self,
        session_id: Option<&str>,
        mut f: impl FnMut(StepRow) -> Result<()>,
    ) -> Result<u64> {
        let version = self.schema_version();
        self.with_conn(|conn, path| {
            let ctx = "reading step rows";
            let sql = step_rows_sql(version, session_id.is_some());
            let mut stmt = conn.prepare(&sql).ctx(path, ctx)?;
            let mut rows = stmt.query(params_from_iter(session_id)).ctx(path, ctx)?;
            let mut n = 0;
            while let Some(r) = rows.next().ctx(path, ctx)? {
                f(step_row(path, r)?)?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Every step row (of one session, or all) in chain order.
    pub fn step_rows(&self, session_id: Option<&str>) -> Result<Vec<StepRow>> {
        let mut out = Vec::new();
        self.for_each_step(session_id, |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }

    /// Emotion names present in the steps' scores (of one session, or all),
    /// sorted: the per-emotion columns of a CSV export.
    pub fn emotion_names(&self, session_id: Option<&str>) -> Result<Vec<String>> {
        self.with_conn(|conn, path| {
            let ctx = "listing emotion names";
            let sql = format!(
                "SELECT DISTINCT j.key FROM steps s, json_each(s.scores_json) j {} ORDER BY 1",
                if session_id.is_some() {
                    "WHERE s.session_id = ?1"
                } else {
                    ""
                }
            );
            let mut stmt = conn.prepare(&sql).ctx(path, ctx)?;
            let names = stmt
                .query_map(params_from_iter(session_id), |r| r.get(0))
                .ctx(path, ctx)?;
            names
                .collect::<std::result::Result<Vec<String>, _>>()
                .ctx(path, ctx)
        })
    }

    /// Every config row, in chain order.
    pub fn config_rows(&self) -> Result<Vec<ConfigRow>> {
        self.with_conn(|conn, path| {
            let ctx = "reading config rows";
            let mut stmt = conn
                .prepare(
                    "SELECT id, seq, row_hash, policy_hash, pack_hash, model_sha256, model_name,
                            limbic_version, settings_json, started_at_ms
                     FROM config ORDER BY seq",
                )
                .ctx(path, ctx)?;
            let mut rows = stmt.query([]).ctx(path, ctx)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().ctx(path, ctx)? {
                let row: i64 = r.get(0).ctx(path, ctx)?;
                let settings: String = r.get(8).ctx(path, ctx)?;
                out.push(ConfigRow {
                    row,
                    seq: r.get(1).ctx(path, ctx)?,
                    row_hash: r.get(2).ctx(path, ctx)?,
                    policy_hash: r.get(3).ctx(path, ctx)?,
                    pack_hash: r.get(4).ctx(path, ctx)?,
                    model_sha256: r.get(5).ctx(path, ctx)?,
                    model_name: r.get(6).ctx(path, ctx)?,
                    limbic_version: r.get(7).ctx(path, ctx)?,
                    settings: parse_json(path, "config.settings_json", row, &settings)?,
                    started_at_ms: r.get(9).ctx(path, ctx)?,
                });
            }
            Ok(out)
        })
    }

    /// Counts and ranges over the whole log.
    pub fn stats(&self) -> Result<AuditStats> {
        let version = self.schema_version();
        self.with_conn(|conn, path| {
            let ctx = "computing statistics";
            let (spikes, unscored, max_stress, mean_stress, mean_latency_ms, first, last): StepAggregates = conn
                .query_row(
                    "SELECT SUM(spike), COUNT(*) - COUNT(stress_signature), MAX(stress_signature),
                            AVG(stress_signature), AVG(latency_ms), MIN(ts_start_ms), MAX(ts_end_ms)
                     FROM steps",
                    [],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    },
                )
                .ctx(path, ctx)?;
            Ok(AuditStats {
                schema_version: version,
                head: read_head(conn, path)?,
                configs: count(conn, path, "SELECT COUNT(*) FROM config")?,
                sessions: count(conn, path, "SELECT COUNT(*) FROM sessions")?,
                steps: count(conn, path, "SELECT COUNT(*) FROM steps")?,
                steps_without_decision: count(
                    conn,
                    path,
                    "SELECT COUNT(*) FROM steps s
                     WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.step_id = s.id)",
                )?,
                decisions: grouped(
                    conn,
                    path,
                    "SELECT decision, COUNT(*) FROM decisions GROUP BY decision",
                )?,
                delivery: grouped(
                    conn,
                    path,
                    &format!(
                        "SELECT COALESCE({}, 'delivered'), COUNT(*) FROM decisions GROUP BY 1",
                        v2(version, "delivery")
                    ),
                )?,
                spikes: spikes.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                unscored: u64::try_from(unscored).unwrap_or(0),
                max_stress,
                mean_stress,
                mean_latency_ms,
                first_ts_ms: first,
                last_ts_ms: last,
            })
        })
    }
}
