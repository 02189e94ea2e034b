//! Schema definition, creation and version checks.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::canonical::GENESIS_HASH;
use crate::error::{AuditError, Result, SqlContext};

/// Schema version stored in `PRAGMA user_version`. Bump on any change to the
/// tables or to the canonical encoding, and add a migration in `ensure`.
///
/// * 1: the first release.
/// * 2: `steps.tracker_state`, `decisions.delivery`, `decisions.delivery_note`
///   (added nullable columns; trailing NULLs among them are left out of a
///   row's hash, so rows written by version 1 hash exactly as before).
pub const SCHEMA_VERSION: i64 = 2;

/// Oldest schema version this build reads (and migrates when opened for
/// writing).
pub const OLDEST_SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` marking a file as a limbic audit log ("LMBA").
pub const APPLICATION_ID: i64 = 0x4C4D_4241;

/// A table that takes part in the global hash chain.
pub(crate) struct ChainedTable {
    pub name: &'static str,
    /// Data columns in hash order; `id` and `seq` are hashed before them.
    pub data_columns: &'static [&'static str],
    /// Nullable columns added by schema version 2, hashed after
    /// `data_columns`. Trailing NULLs among them are left out of the hash,
    /// so a row written before the migration (all NULL) hashes exactly as it
    /// did under version 1, and the encoding stays unambiguous (the field
    /// count is part of it and a left-out field can only be NULL).
    pub added_columns: &'static [&'static str],
}

pub(crate) const CONFIG: ChainedTable = ChainedTable {
    name: "config",
    data_columns: &[
        "policy_hash",
        "pack_hash",
        "model_sha256",
        "model_name",
        "limbic_version",
        "settings_json",
        "started_at_ms",
    ],
    added_columns: &[],
};

pub(crate) const SESSIONS: ChainedTable = ChainedTable {
    name: "sessions",
    data_columns: &["session_id", "first_seen_ms", "config_id"],
    added_columns: &[],
};

pub(crate) const STEPS: ChainedTable = ChainedTable {
    name: "steps",
    data_columns: &[
        "session_id",
        "step_index",
        "ts_start_ms",
        "ts_end_ms",
        "tool",
        "args_json",
        "text",
        "text_sha256",
        "scores_json",
        "peak_json",
        "stress_signature",
        "spike",
        "latency_ms",
    ],
    added_columns: &["tracker_state"],
};

pub(crate) const DECISIONS: ChainedTable = ChainedTable {
    name: "decisions",
    data_columns: &[
        "step_id",
        "decision",
        "reroute",
        "rule_id",
        "reason",
        "classes_json",
    ],
    added_columns: &["delivery", "delivery_note"],
};

pub(crate) const CHAINED_TABLES: [&ChainedTable; 4] = [&CONFIG, &SESSIONS, &STEPS, &DECISIONS];

impl ChainedTable {
    /// Insert statement for the current schema: `id, seq`, the data columns,
    /// the added columns, then `prev_hash, row_hash`.
    pub fn insert_sql(&self) -> String {
        let columns = self.columns(SCHEMA_VERSION).join(", ");
        let placeholders = vec!["?"; self.columns(SCHEMA_VERSION).len() + 4].join(", ");
        format!(
            "INSERT INTO {} (id, seq, {columns}, prev_hash, row_hash) VALUES ({placeholders})",
            self.name
        )
    }

    /// Hashed columns (after `id, seq`) present in a file of `version`.
    pub fn columns(&self, version: i64) -> Vec<&'static str> {
        let mut columns = self.data_columns.to_vec();
        if version >= 2 {
            columns.extend_from_slice(self.added_columns);
        }
        columns
    }

    /// Drops trailing NULLs among the added columns from `fields`
    /// (`id, seq, data..., added...`), giving the list that is hashed.
    pub fn trim_for_hash(&self, fields: &mut Vec<rusqlite::types::Value>) {
        let fixed = 2 + self.data_columns.len();
        while fields.len() > fixed && matches!(fields.last(), Some(rusqlite::types::Value::Null)) {
            fields.pop();
        }
    }
}

// STRICT tables so a value can't silently change type between insert and the
// re-hash in `verify`. NaN floats are stored as NULL (SQLite does that anyway),
// hence the nullable REAL columns.
const CREATE_V1: &str = "
CREATE TABLE config (
    id             INTEGER PRIMARY KEY,
    seq            INTEGER NOT NULL UNIQUE,
    prev_hash      TEXT NOT NULL,
    row_hash       TEXT NOT NULL,
    policy_hash    TEXT NOT NULL,
    pack_hash      TEXT NOT NULL,
    model_sha256   TEXT NOT NULL,
    model_name     TEXT NOT NULL,
    limbic_version TEXT NOT NULL,
    settings_json  TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    seq           INTEGER NOT NULL UNIQUE,
    prev_hash     TEXT NOT NULL,
    row_hash      TEXT NOT NULL,
    session_id    TEXT NOT NULL UNIQUE,
    first_seen_ms INTEGER NOT NULL,
    config_id     INTEGER REFERENCES config(id)
) STRICT;

CREATE TABLE steps (
    id               INTEGER PRIMARY KEY,
    seq              INTEGER NOT NULL UNIQUE,
    prev_hash        TEXT NOT NULL,
    row_hash         TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES sessions(session_id),
    step_index       INTEGER NOT NULL,
    ts_start_ms      INTEGER NOT NULL,
    ts_end_ms        INTEGER NOT NULL,
    tool             TEXT NOT NULL,
    args_json        TEXT NOT NULL,
    text             TEXT,
    text_sha256      TEXT NOT NULL,
    scores_json      TEXT NOT NULL,
    peak_json        TEXT NOT NULL,
    stress_signature REAL,
    spike            INTEGER NOT NULL,
    latency_ms       REAL
) STRICT;
CREATE INDEX steps_by_session ON steps(session_id, step_index);

CREATE TABLE decisions (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    prev_hash    TEXT NOT NULL,
    row_hash     TEXT NOT NULL,
    step_id      INTEGER NOT NULL UNIQUE REFERENCES steps(id),
    decision     TEXT NOT NULL,
    reroute      TEXT,
    rule_id      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    classes_json TEXT NOT NULL
) STRICT;

-- Anchor for the tail of the chain: updated in the same transaction as every
-- append, so deleting trailing rows without also editing this is detected.
CREATE TABLE chain_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  INTEGER NOT NULL,
    last_hash TEXT NOT NULL
) STRICT;
";

// Version 1 -> 2. Added columns are nullable (old rows read NULL and hash as
// before). The second index serves "latest row of a session" lookups.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE steps ADD COLUMN tracker_state TEXT;
ALTER TABLE decisions ADD COLUMN delivery TEXT;
ALTER TABLE decisions ADD COLUMN delivery_note TEXT;
CREATE INDEX steps_by_session_seq ON steps(session_id, seq);
";

fn read_pragma_i64(conn: &Connection, path: &Path, pragma: &'static str) -> Result<i64> {
    conn.pragma_query_value(None, pragma, |row| row.get(0))
        .ctx(path, "reading schema version")
}

/// Checks that an existing file is a limbic audit log this build can handle.
/// Returns the schema version (0 for an empty, uninitialised database).
pub(crate) fn check_version(conn: &Connection, path: &Path) -> Result<i64> {
    let version = read_pragma_i64(conn, path, "user_version")?;
    let app_id = read_pragma_i64(conn, path, "application_id")?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(AuditError::NotAnAuditLog {
            path: path.to_path_buf(),
            detail: format!("application_id is {app_id:#x}, expected {APPLICATION_ID:#x}"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(AuditError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version > 0 && app_id != APPLICATION_ID {
        return Err(AuditError::NotAnAuditLog {
            path: path.to_path_buf(),
            detail: format!("user_version is {version} but application_id is not set"),
        });
    }
    if version < 0 {
        return Err(AuditError::NotAnAuditLog {
            path: path.to_path_buf(),
            detail: format!("negative user_version {version}"),
        });
    }
    Ok(version)
}

/// Creates the schema on an empty database, migrates an older limbic schema
/// to the current one, or checks an up-to-date one.
pub(crate) fn ensure(conn: &mut Connection, path: &Path) -> Result<()> {
    if check_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Another process may be initialising or migrating the same file right
    // now: take the write lock, then look again before changing anything.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(path, "locking database to create or migrate the schema")?;
    let version = check_version(&tx, path)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version == 0 {
        // Refuse to sprinkle our tables into somebody else's database.
        let foreign_table: Option<String> = tx
            .query_row(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .ctx(path, "inspecting existing tables")?;
        if let Some(table) = foreign_table {
            return Err(AuditError::NotAnAuditLog {
                path: path.to_path_buf(),
                detail: format!(
                    "database already holds other tables (e.g. `{table}`) and no limbic schema version"
                ),
            });
        }
        tx.execute_batch(CREATE_V1)
            .ctx(path, "creating audit log schema")?;
        tx.execute(
            "INSERT INTO chain_head (id, last_seq, last_hash) VALUES (1, 0, ?1)",
            [GENESIS_HASH],
        )
        .ctx(path, "initialising chain head")?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .ctx(path, "setting application_id")?;
    }
    // version is 0 (just created as 1) or 1 here: check_version rejected the rest.
    tx.execute_batch(MIGRATE_1_TO_2)
        .ctx(path, "migrating audit log schema from version 1 to 2")?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .ctx(path, "setting schema version")?;
    tx.commit().ctx(path, "committing schema change")
}

/// Checks that an existing file holds a limbic schema this build reads
/// (without migrating it) and returns its version.
pub(crate) fn check_readable(conn: &Connection, path: &Path) -> Result<i64> {
    let version = check_version(conn, path)?;
    if version < OLDEST_SCHEMA_VERSION {
        return Err(AuditError::NotAnAuditLog {
            path: path.to_path_buf(),
            detail: "database has no limbic schema".into(),
        });
    }
    Ok(version)
}

/// Names of the tables a complete log must have.
pub(crate) fn required_tables() -> impl Iterator<Item = &'static str> {
    CHAINED_TABLES
        .iter()
        .map(|t| t.name)
        .chain(std::iter::once("chain_head"))
}
