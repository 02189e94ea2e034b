//! Per-session state for a restarted guard: the last step number (for
//! auto-numbering and refusing replays) and the tracker state stored with
//! the latest step that had one.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::canonical::row_hash;
use crate::error::{AuditError, Result, SqlContext};
use crate::log::{last_step_index, AuditLog};
use crate::schema::STEPS;

/// What a restarted guard needs to resume one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub session_id: String,
    /// Largest step number recorded for the session; the next automatic
    /// number is `last_step + 1`, and any step `<= last_step` is refused.
    pub last_step: u64,
    /// Steps recorded for the session.
    pub steps: u64,
    /// `tracker_state` of the most recent step (by chain order) that stored
    /// one; `None` if no step of the session did.
    pub tracker_state: Option<serde_json::Value>,
    /// Step number of the row `tracker_state` came from.
    pub tracker_step: Option<u64>,
    /// `ts_end_ms` of the session's most recent step.
    pub last_ts_ms: i64,
}

impl AuditLog {
    /// Largest step number recorded for `session_id`, `None` for a session
    /// with no steps. [`AuditLog::append_step`] refuses any step number not
    /// above it.
    pub fn last_step(&self, session_id: &str) -> Result<Option<u64>> {
        self.with_conn(|conn, path| {
            last_step_index(conn, path, session_id)?
                .map(|s| step_u64(path, s))
                .transpose()
        })
    }

    /// The state a restarted guard restores for one session, `None` if the
    /// log has no step of it.
    ///
    /// The row holding the tracker state has its hash recomputed, so an edit
    /// of the stored state (e.g. to make a stressed session look calm after a
    /// restart) is refused as corruption. This checks that one row only, not
    /// its place in the chain: a full [`crate::verify`] (with a signed
    /// anchor) is what detects a consistent rewrite.
    pub fn session_state(&self, session_id: &str) -> Result<Option<SessionState>> {
        let version = self.schema_version();
        self.with_conn(|conn, path| load_state(conn, path, version, session_id))
    }

    /// [`AuditLog::session_state`] of every session that has steps, in the
    /// order sessions were first seen.
    pub fn session_states(&self) -> Result<Vec<SessionState>> {
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
                if let Some(state) = load_state(conn, path, version, &id)? {
                    out.push(state);
                }
            }
            Ok(out)
        })
    }
}

pub(crate) fn step_u64(path: &Path, step: i64) -> Result<u64> {
    u64::try_from(step).map_err(|_| AuditError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("negative step number {step} in steps.step_index"),
    })
}

fn load_state(
    conn: &Connection,
    path: &Path,
    version: i64,
    session_id: &str,
) -> Result<Option<SessionState>> {
    let ctx = "reading session state";
    let (steps, last_step, last_ts_ms): (i64, Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), MAX(step_index), MAX(ts_end_ms) FROM steps WHERE session_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([session_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        })
        .ctx(path, ctx)?;
    let (Some(last_step), Some(last_ts_ms)) = (last_step, last_ts_ms) else {
        return Ok(None);
    };
    let mut state = SessionState {
        session_id: session_id.to_string(),
        last_step: step_u64(path, last_step)?,
        steps: u64::try_from(steps).unwrap_or(0),
        tracker_state: None,
        tracker_step: None,
        last_ts_ms,
    };
    if version < 2 {
        // Version-1 logs have no tracker state.
        return Ok(Some(state));
    }
    let columns = STEPS.columns(version).join(", ");
    let sql = format!(
        "SELECT id, seq, prev_hash, row_hash, {columns} FROM steps
         WHERE session_id = ?1 AND tracker_state IS NOT NULL ORDER BY seq DESC LIMIT 1"
    );
    let n = STEPS.columns(version).len();
    let row: Option<(Vec<Value>, String, String)> = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row([session_id], |r| {
                let mut fields = vec![r.get::<_, Value>(0)?, r.get::<_, Value>(1)?];
                for i in 0..n {
                    fields.push(r.get::<_, Value>(4 + i)?);
                }
                Ok((fields, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .optional()
        })
        .ctx(path, ctx)?;
    let Some((mut fields, prev_hash, stored_hash)) = row else {
        return Ok(Some(state));
    };
    let step_index = match fields.get(3) {
        Some(Value::Integer(i)) => step_u64(path, *i)?,
        _ => {
            return Err(AuditError::Corrupt {
                path: path.to_path_buf(),
                detail: "steps.step_index is not an integer".into(),
            })
        }
    };
    let json = match fields.last() {
        Some(Value::Text(json)) => json.clone(),
        _ => {
            return Err(AuditError::Corrupt {
                path: path.to_path_buf(),
                detail: "steps.tracker_state is not text".into(),
            })
        }
    };
    STEPS.trim_for_hash(&mut fields);
    if row_hash(&prev_hash, STEPS.name, &fields) != stored_hash {
        return Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the step row holding session `{session_id}`'s tracker state (step \
                 {step_index}) does not match its hash: it was edited"
            ),
        });
    }
    let value = serde_json::from_str(&json).map_err(|e| AuditError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("tracker state of session `{session_id}` is not JSON: {e}"),
    })?;
    state.tracker_state = Some(value);
    state.tracker_step = Some(step_index);
    Ok(Some(state))
}
