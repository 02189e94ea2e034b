//! The writable audit log handle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{
    params_from_iter, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::{Deserialize, Serialize};

use crate::canonical::{row_hash, sha256_hex, stored_real};
use crate::error::{io_error, AuditError, Result, SqlContext};
use crate::private;
use crate::schema::{self, ChainedTable, CONFIG, DECISIONS, SESSIONS, STEPS};

/// How an audit log is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// `true` stores each step's text verbatim; `false` stores NULL and keeps
    /// only its sha256 (the agent's words may contain secrets or personal
    /// data). The hash is always stored.
    pub store_text: bool,
    /// How long a writer or reader waits for another process's lock before
    /// giving up with "database is locked".
    pub busy_timeout: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            store_text: false,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The configuration in force while steps are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub policy_hash: String,
    pub pack_hash: String,
    pub model_sha256: String,
    pub model_name: String,
    pub limbic_version: String,
    /// Effective settings (thresholds, tap layers, fail mode...).
    pub settings: serde_json::Value,
    pub started_at_ms: i64,
}

/// One agent step as scored by the probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub session_id: String,
    /// Step number within the session. Stored as a signed 64-bit integer:
    /// values above `i64::MAX` are refused ([`AuditError::StepIndexTooLarge`]),
    /// and each step must be greater than the session's last one
    /// ([`AuditError::StepNotAfterLast`]).
    pub step_index: u64,
    pub ts_start_ms: i64,
    pub ts_end_ms: i64,
    pub tool: String,
    pub args: serde_json::Value,
    /// The agent's own words for this step; stored only with `store_text`.
    pub text: String,
    /// Mean calibrated z per emotion over the step.
    pub scores: BTreeMap<String, f32>,
    /// Peak calibrated z per emotion over the step.
    pub peak: BTreeMap<String, f32>,
    pub stress_signature: f32,
    pub spike: bool,
    pub latency_ms: f64,
    /// The guard's per-session tracker state after this step, opaque to the
    /// log (at most [`MAX_TRACKER_STATE_BYTES`] as JSON). Written in the same
    /// transaction as the step and covered by its hash, so a restarted guard
    /// can restore it with [`AuditLog::session_state`].
    #[serde(default)]
    pub tracker_state: Option<serde_json::Value>,
}

/// Largest tracker state, as JSON text, that [`AuditLog::append_step`] stores.
pub const MAX_TRACKER_STATE_BYTES: usize = 64 * 1024;

/// Whether the recorded decision is what the agent was actually told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The answer was sent in time (stored as NULL, as in every row written
    /// before this field existed).
    #[default]
    Delivered,
    /// The answer was ready only after the client's deadline: the agent went
    /// by its own timeout behaviour (say what in `delivery_note`).
    Late,
    /// The answer was never sent (client gone, daemon shutting down).
    Undelivered,
    /// Native mode: this try was rerouted, rolled back and generated again; the
    /// agent never saw it (a later row of the same turn holds what it was told).
    Regenerated,
}

impl Delivery {
    /// The stored value: NULL for `Delivered`, else `late` / `undelivered` / `regenerated`.
    pub fn as_stored(self) -> Option<&'static str> {
        match self {
            Delivery::Delivered => None,
            Delivery::Late => Some("late"),
            Delivery::Undelivered => Some("undelivered"),
            Delivery::Regenerated => Some("regenerated"),
        }
    }

    /// `delivered`, `late`, `undelivered` or `regenerated`.
    pub fn as_str(self) -> &'static str {
        self.as_stored().unwrap_or("delivered")
    }

    /// Inverse of [`Delivery::as_stored`]; `None` for an unknown value.
    pub fn from_stored(value: Option<&str>) -> Option<Delivery> {
        match value {
            None => Some(Delivery::Delivered),
            Some("late") => Some(Delivery::Late),
            Some("undelivered") => Some(Delivery::Undelivered),
            Some("regenerated") => Some(Delivery::Regenerated),
            Some(_) => None,
        }
    }
}

/// The guard's decision about a step (strings, so this crate does not depend
/// on the policy crate's types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// "allow" | "warn" | "veto" | "reroute".
    pub decision: String,
    /// "confirm" | "substitute" | "pause" when `decision` is "reroute".
    pub reroute: Option<String>,
    pub rule_id: String,
    pub reason: String,
    pub classes: Vec<String>,
    /// Whether the agent got this answer; hashed with the row.
    #[serde(default)]
    pub delivery: Delivery,
    /// What happened instead, e.g. "hook deadline 4000 ms passed at 5230 ms;
    /// the agent's hook denied". Hashed with the row.
    #[serde(default)]
    pub delivery_note: Option<String>,
}

/// Proof that a step and its decision are durably committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReceipt {
    pub session_row: i64,
    pub step_row: i64,
    pub decision_row: i64,
    /// Chain position of the decision row (the new head).
    pub seq: i64,
    /// Hash of the decision row, i.e. the new chain head hash.
    pub row_hash: String,
    /// Chain position and hash of the step row.
    pub step_seq: i64,
    pub step_hash: String,
}

/// Last position of the hash chain. Export it (print it, send it to another
/// machine, write it on paper) to use as an anchor for
/// [`crate::verify_against_anchor`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// Outcome of [`AuditLog::checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReport {
    /// Another connection kept the checkpoint from completing.
    pub busy: bool,
    /// Size of the `-wal` file before and after (0 after a complete
    /// checkpoint; SQLite's own frame counts read 0 after a TRUNCATE, so the
    /// file size is what tells how much was moved).
    pub wal_bytes_before: u64,
    pub wal_bytes_after: u64,
}

/// A hash-chained, append-only SQLite audit log.
///
/// The handle is `Send + Sync`: threads may share one handle (appends are
/// serialised by an internal mutex) or open their own; several processes may
/// append to the same file. Every append is its own `BEGIN IMMEDIATE`
/// transaction, committed with `synchronous=FULL` before the call returns.
pub struct AuditLog {
    path: PathBuf,
    options: AuditOptions,
    read_only: bool,
    /// Schema version of the file (always current for writable handles,
    /// which migrate on open).
    version: i64,
    inner: Mutex<Inner>,
}

struct Inner {
    conn: Connection,
    /// Config row recorded through this handle; new sessions point at it.
    config_row: Option<i64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating if needed) the audit log at `path`.
    ///
    /// A new file is created with mode 0600 (SQLite gives its `-wal` and
    /// `-shm` files the same mode) and missing parent directories with mode
    /// 0700; an existing file readable by others is tightened to owner-only
    /// where we own it. A version-1 log is migrated to the current schema
    /// (older limbic builds then refuse it with a "schema too new" error).
    ///
    /// Fails if the file is not SQLite, is some other application's database,
    /// or has a newer schema than this build understands.
    pub fn open(path: impl AsRef<Path>, options: AuditOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            private::create_private_dir_all(dir)
                .map_err(|e| io_error(dir, "creating the audit log's directory", e))?;
        }
        private::create_private_file_if_missing(&path)
            .map_err(|e| io_error(&path, "creating the audit log file", e))?;
        let mut conn = Connection::open(&path).ctx(&path, "opening database")?;
        configure(&conn, &path, &options)?;
        schema::ensure(&mut conn, &path)?;
        // Only now is it known to be our log: tighten one an older limbic
        // left world-readable.
        for suffix in ["", "-wal", "-shm"] {
            private::tighten_file(&sidecar(&path, suffix));
        }
        conn.pragma_update(None, "foreign_keys", true)
            .ctx(&path, "enabling foreign keys")?;
        Ok(Self::from_connection(
            path,
            options,
            false,
            schema::SCHEMA_VERSION,
            conn,
        ))
    }

    /// Opens an existing log for queries only; never creates or migrates it
    /// (reads version-1 logs as they are). SQLite may still create or update
    /// the `-shm` index next to a WAL-mode file; to leave every byte of a log
    /// alone, use [`crate::AuditSnapshot`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let options = AuditOptions::default();
        let conn = open_existing_read_only(&path, options.busy_timeout)?;
        let version = schema::check_readable(&conn, &path)?;
        Ok(Self::from_connection(path, options, true, version, conn))
    }

    pub(crate) fn from_connection(
        path: PathBuf,
        options: AuditOptions,
        read_only: bool,
        version: i64,
        conn: Connection,
    ) -> Self {
        Self {
            path,
            options,
            read_only,
            version,
            inner: Mutex::new(Inner {
                conn,
                config_row: None,
            }),
        }
    }

    /// Schema version of the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    /// `true` for handles from [`AuditLog::open_read_only`] and snapshots.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &AuditOptions {
        &self.options
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock can't leave a half-written chain:
        // the open transaction is rolled back when it is dropped. So a
        // poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ensure_writable(&self, action: &'static str) -> Result<()> {
        if self.read_only {
            return Err(AuditError::ReadOnly {
                path: self.path.clone(),
                action,
            });
        }
        Ok(())
    }

    /// Records the configuration in force and makes it the config of
    /// sessions first seen through this handle. Returns its row id.
    ///
    /// If the most recent config row has the same hashes, model and settings,
    /// that row is reused (a guard restarted per agent step would otherwise
    /// log one config row per step); its `started_at_ms` stays the original.
    pub fn record_config(&self, config: &ConfigRecord) -> Result<i64> {
        self.ensure_writable("record a config")?;
        let path = self.path.as_path();
        let settings_json = to_json(path, "settings", &config.settings)?;
        let mut inner = self.lock();
        let tx = begin_immediate(&mut inner.conn, path)?;
        let latest: Option<(i64, [String; 6])> = tx
            .query_row(
                "SELECT id, policy_hash, pack_hash, model_sha256, model_name, limbic_version, settings_json
                 FROM config ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?])),
            )
            .optional()
            .ctx(path, "reading latest config")?;
        let wanted = [
            &config.policy_hash,
            &config.pack_hash,
            &config.model_sha256,
            &config.model_name,
            &config.limbic_version,
            &settings_json,
        ];
        let reusable = latest.and_then(|(id, existing)| {
            existing
                .iter()
                .zip(wanted)
                .all(|(a, b)| a == b)
                .then_some(id)
        });
        let config_row = match reusable {
            Some(id) => {
                // Nothing written; end the transaction without touching the chain.
                tx.rollback().ctx(path, "ending read transaction")?;
                id
            }
            None => {
                let mut head = read_head(&tx, path)?;
                let (id, _) = insert_chained(
                    &tx,
                    path,
                    &mut head,
                    &CONFIG,
                    vec![
                        Value::Text(config.policy_hash.clone()),
                        Value::Text(config.pack_hash.clone()),
                        Value::Text(config.model_sha256.clone()),
                        Value::Text(config.model_name.clone()),
                        Value::Text(config.limbic_version.clone()),
                        Value::Text(settings_json),
                        Value::Integer(config.started_at_ms),
                    ],
                )?;
                write_head(&tx, path, &head)?;
                tx.commit().ctx(path, "committing config row")?;
                id
            }
        };
        inner.config_row = Some(config_row);
        Ok(config_row)
    }

    /// Appends a step and its decision (and the session row the first time a
    /// session id is seen) in one transaction, committed before returning.
    pub fn append_step(&self, step: &StepRecord, decision: &DecisionRecord) -> Result<StepReceipt> {
        self.ensure_writable("append a step")?;
        let path = self.path.as_path();
        // Serialise outside the lock and the write transaction: keep the
        // time other processes wait on us short.
        let args_json = to_json(path, "args", &step.args)?;
        let scores_json = to_json(path, "scores", &step.scores)?;
        let peak_json = to_json(path, "peak", &step.peak)?;
        let classes_json = to_json(path, "classes", &decision.classes)?;
        let step_index =
            i64::try_from(step.step_index).map_err(|_| AuditError::StepIndexTooLarge {
                path: path.to_path_buf(),
                session: step.session_id.clone(),
                step: step.step_index,
            })?;
        let tracker_state = match &step.tracker_state {
            None => Value::Null,
            Some(state) => {
                let json = to_json(path, "tracker_state", state)?;
                if json.len() > MAX_TRACKER_STATE_BYTES {
                    return Err(AuditError::InvalidField {
                        path: path.to_path_buf(),
                        field: "tracker_state",
                        problem: format!(
                            "{} bytes as JSON, more than the {MAX_TRACKER_STATE_BYTES} stored",
                            json.len()
                        ),
                    });
                }
                Value::Text(json)
            }
        };
        let text_sha256 = sha256_hex(step.text.as_bytes());
        let text = if self.options.store_text {
            Value::Text(step.text.clone())
        } else {
            Value::Null
        };

        let mut inner = self.lock();
        let config_row = inner.config_row;
        let tx = begin_immediate(&mut inner.conn, path)?;
        let mut head = read_head(&tx, path)?;

        let existing_session: Option<i64> = tx
            .prepare_cached("SELECT id FROM sessions WHERE session_id = ?1")
            .and_then(|mut stmt| stmt.query_row([&step.session_id], |r| r.get(0)).optional())
            .ctx(path, "looking up session")?;
        let session_row = match existing_session {
            Some(id) => {
                // Checked under the write lock, so two writers can't both
                // record the same step number.
                if let Some(last) = last_step_index(&tx, path, &step.session_id)? {
                    if step_index <= last {
                        return Err(AuditError::StepNotAfterLast {
                            path: path.to_path_buf(),
                            session: step.session_id.clone(),
                            step: step.step_index,
                            last: u64::try_from(last).unwrap_or(0),
                        });
                    }
                }
                id
            }
            None => {
                let config = config_row.map_or(Value::Null, Value::Integer);
                insert_chained(
                    &tx,
                    path,
                    &mut head,
                    &SESSIONS,
                    vec![
                        Value::Text(step.session_id.clone()),
                        Value::Integer(step.ts_start_ms),
                        config,
                    ],
                )?
                .0
            }
        };

        let (step_row, step_hash) = insert_chained(
            &tx,
            path,
            &mut head,
            &STEPS,
            vec![
                Value::Text(step.session_id.clone()),
                Value::Integer(step_index),
                Value::Integer(step.ts_start_ms),
                Value::Integer(step.ts_end_ms),
                Value::Text(step.tool.clone()),
                Value::Text(args_json),
                text,
                Value::Text(text_sha256),
                Value::Text(scores_json),
                Value::Text(peak_json),
                stored_real(f64::from(step.stress_signature)),
                Value::Integer(i64::from(step.spike)),
                stored_real(step.latency_ms),
                tracker_state,
            ],
        )?;
        let step_seq = head.seq;

        let (decision_row, decision_hash) = insert_chained(
            &tx,
            path,
            &mut head,
            &DECISIONS,
            vec![
                Value::Integer(step_row),
                Value::Text(decision.decision.clone()),
                decision.reroute.clone().map_or(Value::Null, Value::Text),
                Value::Text(decision.rule_id.clone()),
                Value::Text(decision.reason.clone()),
                Value::Text(classes_json),
                decision
                    .delivery
                    .as_stored()
                    .map_or(Value::Null, |d| Value::Text(d.to_string())),
                decision
                    .delivery_note
                    .clone()
                    .map_or(Value::Null, Value::Text),
            ],
        )?;
        write_head(&tx, path, &head)?;
        tx.commit().ctx(path, "committing step and decision")?;

        Ok(StepReceipt {
            session_row,
            step_row,
            decision_row,
            seq: head.seq,
            row_hash: decision_hash,
            step_seq,
            step_hash,
        })
    }

    /// The current chain head (last seq and hash) as recorded in the log.
    /// Store it outside the log to detect a wholesale rewrite later.
    pub fn head(&self) -> Result<ChainHead> {
        let inner = self.lock();
        read_head(&inner.conn, &self.path)
    }

    /// Copies every committed WAL frame into the database file and truncates
    /// the `-wal` file (`PRAGMA wal_checkpoint(TRUNCATE)`), so that a copy of
    /// the database file alone holds every row. Call it periodically and on
    /// shutdown. `busy` in the result means readers or writers of other
    /// connections kept it from finishing (it waits up to the busy timeout);
    /// committed rows are safe either way, they are just still in the WAL.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        self.ensure_writable("checkpoint")?;
        let wal = sidecar(&self.path, "-wal");
        let wal_bytes = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let inner = self.lock();
        let wal_bytes_before = wal_bytes();
        let busy: i64 = inner
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .ctx(&self.path, "checkpointing the WAL")?;
        Ok(CheckpointReport {
            busy: busy != 0,
            wal_bytes_before,
            wal_bytes_after: wal_bytes(),
        })
    }

    /// Runs `f` with the connection (for the query helpers).
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<T>,
    ) -> Result<T> {
        let inner = self.lock();
        f(&inner.conn, &self.path)
    }
}

/// Connection pragmas shared by writers: WAL so readers never block the
/// writer, FULL sync so a commit is on disk before a decision is
/// acknowledged, and a busy timeout for multi-process use.
fn configure(conn: &Connection, path: &Path, options: &AuditOptions) -> Result<()> {
    // Set first: switching to WAL itself may have to wait for other processes.
    conn.busy_timeout(options.busy_timeout)
        .ctx(path, "setting busy timeout")?;
    // SQLite may answer the switch with SQLITE_BUSY at once, without calling the busy
    // handler, while another connection is creating the same file: retry within the timeout.
    let started = std::time::Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < options.busy_timeout =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => break other.ctx(path, "enabling WAL journal mode")?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("could not enable WAL journal mode (got `{mode}`)"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx(path, "setting synchronous=FULL")
}

pub(crate) fn open_existing_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    if !path.exists() {
        return Err(AuditError::Missing {
            path: path.to_path_buf(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx(path, "opening database read-only")?;
    conn.busy_timeout(busy_timeout)
        .ctx(path, "setting busy timeout")?;
    Ok(conn)
}

fn begin_immediate<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>> {
    // IMMEDIATE takes the write lock up front, so reading the head and
    // appending after it can't interleave with another writer.
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(path, "starting write transaction")
}

pub(crate) fn read_head(conn: &Connection, path: &Path) -> Result<ChainHead> {
    let head: Option<(i64, String)> = conn
        .query_row(
            "SELECT last_seq, last_hash FROM chain_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx(path, "reading chain head")?;
    match head {
        Some((seq, hash)) => Ok(ChainHead { seq, hash }),
        None => Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            detail: "chain_head row is missing".into(),
        }),
    }
}

fn write_head(tx: &Transaction<'_>, path: &Path, head: &ChainHead) -> Result<()> {
    let changed = tx
        .prepare_cached("UPDATE chain_head SET last_seq = ?1, last_hash = ?2 WHERE id = 1")
        .and_then(|mut stmt| stmt.execute((head.seq, &head.hash)))
        .ctx(path, "updating chain head")?;
    if changed != 1 {
        return Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            detail: "chain_head row is missing".into(),
        });
    }
    Ok(())
}

/// Inserts one row at the end of the chain and advances `head`.
/// Returns the new row's id and hash.
fn insert_chained(
    tx: &Transaction<'_>,
    path: &Path,
    head: &mut ChainHead,
    table: &ChainedTable,
    data: Vec<Value>,
) -> Result<(i64, String)> {
    // The id is part of the hash, so choose it before inserting rather than
    // letting SQLite assign it. Safe: we hold the write lock.
    let id: i64 = tx
        .prepare_cached(&format!(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM {}",
            table.name
        ))
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .ctx(path, "allocating row id")?;
    let seq = head.seq.checked_add(1).ok_or_else(|| AuditError::Corrupt {
        path: path.to_path_buf(),
        detail: "chain sequence number overflowed".into(),
    })?;
    let mut fields = Vec::with_capacity(data.len() + 4);
    fields.push(Value::Integer(id));
    fields.push(Value::Integer(seq));
    fields.extend(data);
    let mut hashed = fields.clone();
    table.trim_for_hash(&mut hashed);
    let hash = row_hash(&head.hash, table.name, &hashed);
    fields.push(Value::Text(head.hash.clone()));
    fields.push(Value::Text(hash.clone()));
    tx.prepare_cached(&table.insert_sql())
        .and_then(|mut stmt| stmt.execute(params_from_iter(fields)))
        .ctx(path, "inserting chained row")?;
    *head = ChainHead {
        seq,
        hash: hash.clone(),
    };
    Ok((id, hash))
}

/// `path` with `suffix` appended to its file name (`audit.db` → `audit.db-wal`).
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Largest step number recorded for a session (`None` if it has no steps).
pub(crate) fn last_step_index(
    conn: &Connection,
    path: &Path,
    session: &str,
) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT MAX(step_index) FROM steps WHERE session_id = ?1")
        .and_then(|mut stmt| stmt.query_row([session], |r| r.get(0)))
        .ctx(path, "reading the session's last step")
}

fn to_json<T: Serialize>(path: &Path, field: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| AuditError::InvalidField {
        path: path.to_path_buf(),
        field,
        problem: format!("cannot encode as JSON: {e}"),
    })
}
