//! Tamper-evident SQLite audit log for limbic.
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
//!   returns.
//! * Concurrency: threads and processes may append to one file; the write
//!   lock taken by `BEGIN IMMEDIATE` makes "read head, insert, update head"
//!   atomic, so the chain stays linear.
//! * Tamper evidence: [`verify`] detects edited, deleted, inserted, reordered
//!   and truncated-tail rows.
//!
//! # Limits
//! Without a secret or an external anchor, someone with write access who
//! rewrites the whole chain consistently (recomputing every hash after their
//! edit and the head) cannot be detected from the file alone. Export
//! [`AuditLog::head`] periodically to storage the agent host can't rewrite
//! and check with [`verify_against_anchor`]. Schema changes bump
//! `PRAGMA user_version`; a build refuses files newer than it knows.
//!
//! With `store_text = false` only the sha256 of a step's text is kept. Short
//! texts can be confirmed by guessing, so the hash is an integrity check,
//! not anonymisation.

pub mod canonical;
mod error;
mod log;
mod query;
mod schema;
mod verify;

pub use canonical::{sha256_hex, GENESIS_HASH};
pub use error::{AuditError, Result};
pub use log::{
    AuditLog, AuditOptions, ChainHead, ConfigRecord, DecisionRecord, StepReceipt, StepRecord,
};
pub use query::{DecisionView, SessionSummary};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use verify::{verify, verify_against_anchor, BadRow, Problem, VerifyReport};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970), the
/// unit of every timestamp in the log.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
