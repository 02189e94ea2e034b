//! Read helpers for the CLI (`limbic audit show`, `sessions`, ...).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::error::{AuditError, Result, SqlContext};
use crate::log::AuditLog;
use crate::state::step_u64;

/// A decision joined with the step it judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    pub decision_row: i64,
    pub step_row: i64,
    pub seq: i64,
    pub session_id: String,
    pub step_index: i64,
    pub ts_start_ms: i64,
    pub tool: String,
    /// NULL in the log when the signature was NaN.
    pub stress_signature: Option<f64>,
    pub spike: bool,
    pub decision: String,
    pub reroute: Option<String>,
    pub rule_id: String,
    pub reason: String,
    pub classes: Vec<String>,
}

/// Aggregate view of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub first_seen_ms: i64,
    pub config_row: Option<i64>,
    pub steps: u64,
    /// Latest `ts_end_ms` of the session's steps.
    pub last_ts_ms: Option<i64>,
    pub spikes: u64,
    pub max_stress: Option<f64>,
    pub mean_stress: Option<f64>,
    /// Count of each decision kind ("allow", "veto", ...).
    pub decisions: BTreeMap<String, u64>,
    /// Largest step number of the session.
    pub last_step: Option<u64>,
    /// Step number of the session's first (in chain order) `veto`.
    pub first_veto_step: Option<u64>,
    /// Decisions whose answer reached the agent too late.
    pub late: u64,
    /// Decisions whose answer never reached the agent.
    pub undelivered: u64,
    /// Native-mode tries superseded by a steered regeneration.
    #[serde(default)]
    pub regenerated: u64,
}

const DECISION_VIEW_SELECT: &str = "
SELECT d.id, d.step_id, d.seq, s.session_id, s.step_index, s.ts_start_ms, s.tool,
       s.stress_signature, s.spike, d.decision, d.reroute, d.rule_id, d.reason, d.classes_json
FROM decisions d JOIN steps s ON s.id = d.step_id";

fn decision_view(path: &Path, row: &Row<'_>) -> Result<DecisionView> {
    let ctx = "reading decision";
    let classes_json: String = row.get(13).ctx(path, ctx)?;
    let decision_row: i64 = row.get(0).ctx(path, ctx)?;
    let classes = serde_json::from_str(&classes_json).map_err(|e| AuditError::InvalidField {
        path: path.to_path_buf(),
        field: "decisions.classes_json",
        problem: format!("row {decision_row}: not a JSON list of strings: {e}"),
    })?;
    Ok(DecisionView {
        decision_row,
        step_row: row.get(1).ctx(path, ctx)?,
        seq: row.get(2).ctx(path, ctx)?,
        session_id: row.get(3).ctx(path, ctx)?,
        step_index: row.get(4).ctx(path, ctx)?,
        ts_start_ms: row.get(5).ctx(path, ctx)?,
        tool: row.get(6).ctx(path, ctx)?,
        stress_signature: row.get(7).ctx(path, ctx)?,
        spike: row.get::<_, i64>(8).ctx(path, ctx)? != 0,
        decision: row.get(9).ctx(path, ctx)?,
        reroute: row.get(10).ctx(path, ctx)?,
        rule_id: row.get(11).ctx(path, ctx)?,
        reason: row.get(12).ctx(path, ctx)?,
        classes,
    })
}

fn collect_decisions(
    conn: &Connection,
    path: &Path,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DecisionView>> {
    let mut stmt = conn.prepare_cached(sql).ctx(path, "querying decisions")?;
    let mut rows = stmt.query(params).ctx(path, "querying decisions")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx(path, "querying decisions")? {
        out.push(decision_view(path, row)?);
    }
    Ok(out)
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl AuditLog {
    /// The `limit` most recent decisions, newest first.
    pub fn recent_decisions(&self, limit: usize) -> Result<Vec<DecisionView>> {
        self.with_conn(|conn, path| {
            let sql = format!("{DECISION_VIEW_SELECT} ORDER BY d.seq DESC LIMIT ?1");
            collect_decisions(conn, path, &sql, [limit_param(limit)])
        })
    }

    /// All decisions of one session in step order.
    pub fn session_decisions(&self, session_id: &str) -> Result<Vec<DecisionView>> {
        self.with_conn(|conn, path| {
            let sql = format!("{DECISION_VIEW_SELECT} WHERE s.session_id = ?1 ORDER BY d.seq");
            collect_decisions(conn, path, &sql, [session_id])
        })
    }

    /// Summary of one session, or `None` if the log has never seen it.
    pub fn session_summary(&self, session_id: &str) -> Result<Option<SessionSummary>> {
        let version = self.schema_version();
        self.with_conn(|conn, path| summarise(conn, path, version, session_id))
    }

    /// Summaries of every session, in the order they were first seen.
    pub fn all_session_summaries(&self) -> Result<Vec<SessionSummary>> {
        let version = self.schema_version();
        self.with_conn(|conn, path| {
            let ids: Vec<String> = {
                let mut stmt = conn
                    .prepare("SELECT session_id FROM sessions ORDER BY seq")
                    .ctx(path, "listing sessions")?;
                let ids = stmt
                    .query_map([], |r| r.get(0))
                    .ctx(path, "listing sessions")?;
                ids.collect::<std::result::Result<_, _>>()
                    .ctx(path, "listing sessions")?
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(summary) = summarise(conn, path, version, &id)? {
                    out.push(summary);
                }
            }
            Ok(out)
        })
    }

    /// Summaries of the `limit` sessions seen most recently, newest first.
    pub fn session_summaries(&self, limit: usize) -> Result<Vec<SessionSummary>> {
        let version = self.schema_version();
        self.with_conn(|conn, path| {
            let ids: Vec<String> = {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT s.session_id FROM sessions s
                         LEFT JOIN steps t ON t.session_id = s.session_id
                         GROUP BY s.session_id
                         ORDER BY COALESCE(MAX(t.seq), s.seq) DESC LIMIT ?1",
                    )
                    .ctx(path, "listing sessions")?;
                let ids = stmt
                    .query_map([limit_param(limit)], |r| r.get(0))
                    .ctx(path, "listing sessions")?;
                ids.collect::<std::result::Result<_, _>>()
                    .ctx(path, "listing sessions")?
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(summary) = summarise(conn, path, version, &id)? {
                    out.push(summary);
                }
            }
            Ok(out)
        })
    }
}

fn summarise(
    conn: &Connection,
    path: &Path,
    version: i64,
    session_id: &str,
) -> Result<Option<SessionSummary>> {
    let ctx = "summarising session";
    let session: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT first_seen_ms, config_id FROM sessions WHERE session_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([session_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx(path, ctx)?;
    let Some((first_seen_ms, config_row)) = session else {
        return Ok(None);
    };
    type Aggregates = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
        Option<i64>,
    );
    let (steps, last_ts_ms, spikes, max_stress, mean_stress, last_step): Aggregates = conn
        .prepare_cached(
            "SELECT COUNT(*), MAX(ts_end_ms), SUM(spike), MAX(stress_signature), AVG(stress_signature),
                    MAX(step_index)
             FROM steps WHERE session_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([session_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
        })
        .ctx(path, ctx)?;
    let first_veto_step: Option<i64> = conn
        .prepare_cached(
            "SELECT s.step_index FROM decisions d JOIN steps s ON s.id = d.step_id
             WHERE s.session_id = ?1 AND d.decision = 'veto' ORDER BY d.seq LIMIT 1",
        )
        .and_then(|mut stmt| stmt.query_row([session_id], |r| r.get(0)).optional())
        .ctx(path, ctx)?;
    let (late, undelivered, regenerated): (i64, i64, i64) = if version >= 2 {
        conn.prepare_cached(
            "SELECT COALESCE(SUM(d.delivery = 'late'), 0), COALESCE(SUM(d.delivery = 'undelivered'), 0),
                    COALESCE(SUM(d.delivery = 'regenerated'), 0)
             FROM decisions d JOIN steps s ON s.id = d.step_id WHERE s.session_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([session_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        })
        .ctx(path, ctx)?
    } else {
        (0, 0, 0)
    };
    let mut decisions = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT d.decision, COUNT(*) FROM decisions d JOIN steps s ON s.id = d.step_id
                 WHERE s.session_id = ?1 GROUP BY d.decision",
            )
            .ctx(path, ctx)?;
        let rows = stmt
            .query_map([session_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .ctx(path, ctx)?;
        for row in rows {
            let (kind, count) = row.ctx(path, ctx)?;
            decisions.insert(kind, u64::try_from(count).unwrap_or(0));
        }
    }
    Ok(Some(SessionSummary {
        session_id: session_id.to_string(),
        first_seen_ms,
        config_row,
        steps: u64::try_from(steps).unwrap_or(0),
        last_ts_ms,
        spikes: spikes.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        max_stress,
        mean_stress,
        decisions,
        last_step: last_step.map(|s| step_u64(path, s)).transpose()?,
        first_veto_step: first_veto_step.map(|s| step_u64(path, s)).transpose()?,
        late: u64::try_from(late).unwrap_or(0),
        undelivered: u64::try_from(undelivered).unwrap_or(0),
        regenerated: u64::try_from(regenerated).unwrap_or(0),
    }))
}
