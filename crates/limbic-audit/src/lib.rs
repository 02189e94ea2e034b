//! Hash-chained SQLite audit log for limbic.
//!
//! Every decision limbic makes about an agent step is written to an SQLite
//! file before the decision is acknowledged. Rows of all tables (`config`,
//! `sessions`, `steps`, `decisions`) form ONE hash chain ordered by a global
//! sequence number `seq`:
//!
//! ```text
//! row_hash = sha256(canonical(prev_hash, table name, id, seq, other columns))
//! ```
//!
//! with `prev_hash` of the first row = 64 zeros (see [`canonical`] for the
//! exact, unambiguous encoding). A single-row `chain_head` table holds the
//! last seq and hash, updated in the same transaction as each append.
//!
//! # Guarantees
//! * Durability: each append is its own `BEGIN IMMEDIATE` transaction in WAL
//!   mode with `synchronous=FULL`, committed before [`AuditLog::append_step`]
//!   returns. Until [`AuditLog::checkpoint`] runs (periodically and on
//!   shutdown), the newest rows live in `audit.db-wal`: a backup must copy
//!   both files, or checkpoint first.
//! * Concurrency: threads and processes may append to one file; the write
//!   lock taken by `BEGIN IMMEDIATE` makes "read head, check step number,
//!   insert, update head" atomic, so the chain stays linear.
//! * Step numbers: a step number is a `u64` stored as a signed 64-bit
//!   integer; above `i64::MAX` it is refused, never clamped or wrapped, and a
//!   step number that repeats or goes back within its session is refused
//!   ([`AuditError::is_step_number_error`]).
//! * Privacy: the file is created mode 0600 (its `-wal`/`-shm` inherit it),
//!   missing parent directories 0700.
//!
//! # What verification detects, and what it cannot
//! [`verify`] recomputes every hash and link. From the file alone it detects
//! an edited, deleted, inserted, reordered or renumbered row, a dropped table
//! and trailing rows deleted *without* updating `chain_head`.
//!
//! It can NOT detect a consistent rewrite by someone with write access: the
//! hash is public and unkeyed, so deleting the tail and updating `chain_head`
//! (one SQL statement), or editing a row and recomputing every later hash,
//! yields a log that verifies. That is what signed anchors are for:
//! [`AnchorKey`] (an ed25519 key file the daemon owns) signs the chain head
//! into a [`SignedAnchor`]; [`verify_with_anchor`] fails unless the log still
//! extends the anchored head. Rows appended after the latest anchor have only
//! the plain guarantee, and whoever can read the key file can sign a new
//! anchor: keep anchors, or the trusted public key, off the agent's host.
//!
//! With `store_text = false` only the sha256 of a step's text is kept. Short
//! texts can be confirmed by guessing, so the hash is an integrity check,
//! not anonymisation.
//!
//! # Reading without touching
//! [`AuditSnapshot`] copies the database and its WAL to a private temporary
//! directory and reads the copy, so offline audit never changes a byte of
//! the log. Queries: summaries per session and global [`AuditStats`], full
//! [`StepRow`]s, [`ConfigRow`]s, and JSONL / CSV / Parquet / OTLP-JSON ([`otlp`])
//! exporters.
//!
//! # Schema versions
//! Schema changes bump `PRAGMA user_version`. A build refuses files newer
//! than it knows; opening an older file for writing migrates it (version 2
//! only adds nullable columns, and rows written before hash exactly as they
//! did), opening it read-only leaves it as it is.

#![forbid(unsafe_code)]

mod anchor;
pub mod canonical;
mod error;
mod export;
mod log;
pub mod otlp;
mod parquet_export;
mod private;
mod query;
mod rows;
mod schema;
mod snapshot;
mod state;
mod verify;

pub use anchor::{
    anchor_verified, verify_with_anchor, AnchorKey, AnchorPublicKey, SignedAnchor, ANCHOR_FORMAT,
    KEY_FORMAT,
};
pub use canonical::{sha256_hex, GENESIS_HASH};
pub use error::{AuditError, Result};
pub use export::{csv_field, CSV_COLUMNS};
pub use log::{
    AuditLog, AuditOptions, ChainHead, CheckpointReport, ConfigRecord, DecisionRecord, Delivery,
    StepReceipt, StepRecord, MAX_TRACKER_STATE_BYTES,
};
pub use parquet_export::column_name as parquet_column_name;
pub use private::create_private_dir_all;
pub use query::{DecisionView, SessionSummary};
pub use rows::{AuditStats, ConfigRow, StepRow};
pub use schema::{APPLICATION_ID, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION};
pub use snapshot::AuditSnapshot;
pub use state::SessionState;
pub use verify::{verify, verify_against_anchor, BadRow, Problem, VerifyReport};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970), the
/// unit of every timestamp in the log.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
