//! Offline verification of the hash chain.
//!
//! What is detected: an edited row (its hash no longer matches), a deleted
//! row (gap in `seq` and a `prev_hash` that no longer links), reordered or
//! renumbered rows, a duplicated `seq`, a dropped table, and deleted trailing
//! rows (the `chain_head` row no longer matches the end of the chain).
//!
//! What is NOT detected from the file alone: an attacker who rewrites the
//! chain consistently — e.g. deletes the last rows and sets `chain_head` to
//! the new end (one `UPDATE`), or edits a row and recomputes every later
//! hash — because the hash function is public and there is no secret. To
//! catch that, anchor the head regularly: [`crate::AnchorKey`] signs it into
//! a [`crate::SignedAnchor`] kept where the agent host can't write, and
//! [`crate::verify_with_anchor`] (or [`verify_against_anchor`] with an
//! unsigned [`ChainHead`]) then protects every row up to the anchored seq;
//! rows appended after the last anchor still are not.

use std::fmt;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::canonical::{row_hash, GENESIS_HASH};
use crate::error::{Result, SqlContext};
use crate::log::{open_existing_read_only, ChainHead};
use crate::schema::{self, CHAINED_TABLES};

/// Outcome of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Rows that verified correctly before the first problem (all rows when
    /// `ok`).
    pub rows_checked: u64,
    pub ok: bool,
    pub first_bad: Option<BadRow>,
    /// Last position of the chain that verified (genesis seq 0 if none).
    /// When `ok` it equals the log's chain head: a value worth exporting.
    pub verified_head: ChainHead,
}

/// The first row at which the chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    /// Table holding the offending row (`chain_head` for head problems).
    pub table: String,
    /// The row's `seq` as stored, if it has one.
    pub seq: Option<i64>,
    /// The row's id (rowid) in its table, if there is a row.
    pub rowid: Option<i64>,
    pub problem: Problem,
}

/// Why a row fails verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Problem {
    /// Recomputed hash differs from the stored `row_hash`: content edited.
    HashMismatch { stored: String, computed: String },
    /// `prev_hash` does not link to the previous row: rows deleted,
    /// inserted or reordered before this one.
    PrevHashMismatch { expected: String, found: String },
    /// `seq` is not the next number: rows deleted or renumbered.
    SeqGap { expected: i64, found: i64 },
    /// Another row in some table already has this `seq`.
    DuplicateSeq,
    /// A column has an impossible type or value.
    Malformed { detail: String },
    /// A table of the schema is gone.
    TableMissing,
    /// The `chain_head` row is gone.
    HeadMissing,
    /// The chain does not end where `chain_head` says it does: trailing rows
    /// deleted (or the head edited).
    HeadMismatch {
        head_seq: i64,
        head_hash: String,
        chain_seq: i64,
        chain_hash: String,
    },
    /// The row at the anchored seq has a different hash than the anchor.
    AnchorMismatch { anchor_hash: String, found: String },
    /// The chain ends before the anchored seq: it was truncated.
    AnchorBeyondEnd { anchor_seq: i64, chain_seq: i64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HashMismatch { stored, computed } => write!(
                f,
                "row content was modified: stored hash {stored} but content hashes to {computed}"
            ),
            Problem::PrevHashMismatch { expected, found } => write!(
                f,
                "prev_hash {found} does not link to the previous row's hash {expected} \
                 (rows deleted, inserted or reordered)"
            ),
            Problem::SeqGap { expected, found } => write!(
                f,
                "expected seq {expected}, found {found} (rows deleted or renumbered)"
            ),
            Problem::DuplicateSeq => write!(f, "seq used by more than one row"),
            Problem::Malformed { detail } => write!(f, "malformed row: {detail}"),
            Problem::TableMissing => write!(f, "table is missing"),
            Problem::HeadMissing => write!(f, "chain_head row is missing"),
            Problem::HeadMismatch {
                head_seq,
                head_hash,
                chain_seq,
                chain_hash,
            } => write!(
                f,
                "chain ends at seq {chain_seq} (hash {chain_hash}) but chain_head records seq \
                 {head_seq} (hash {head_hash}): trailing rows deleted or head edited"
            ),
            Problem::AnchorMismatch { anchor_hash, found } => write!(
                f,
                "row hash {found} differs from the exported anchor {anchor_hash}: \
                 the chain was rewritten"
            ),
            Problem::AnchorBeyondEnd {
                anchor_seq,
                chain_seq,
            } => write!(
                f,
                "chain ends at seq {chain_seq}, before the exported anchor at seq {anchor_seq}: \
                 the log was truncated"
            ),
        }
    }
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        if let Some(rowid) = self.rowid {
            write!(f, " rowid {rowid}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Recomputes every hash of the log at `path` in global `seq` order and
/// checks the chain links and the chain head. Errors only when the file
/// can't be read as a limbic log at all; tampering is reported in the
/// [`VerifyReport`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_impl(path.as_ref(), None)
}

/// Like [`verify`], and additionally checks that the row at `anchor.seq`
/// still has hash `anchor.hash` (an anchor exported earlier with
/// [`crate::AuditLog::head`]). Detects consistent rewrites and truncations
/// of everything up to the anchor.
pub fn verify_against_anchor(path: impl AsRef<Path>, anchor: &ChainHead) -> Result<VerifyReport> {
    verify_impl(path.as_ref(), Some(anchor))
}

fn verify_impl(path: &Path, anchor: Option<&ChainHead>) -> Result<VerifyReport> {
    let mut conn = open_existing_read_only(path, crate::AuditOptions::default().busy_timeout)?;
    // A blank SQLite file is not a tampered log: check_readable says what it is.
    let version = schema::check_readable(&conn, path)?;
    // One read transaction = one snapshot, so appends by other processes
    // while we verify can't make the head look inconsistent.
    let tx = conn.transaction().ctx(path, "starting read transaction")?;
    let report = walk_chain(&tx, path, version, anchor)?;
    tx.finish().ctx(path, "ending read transaction")?;
    Ok(report)
}

struct Walk {
    rows_checked: u64,
    last: ChainHead,
}

impl Walk {
    fn fail(
        self,
        table: &str,
        seq: Option<i64>,
        rowid: Option<i64>,
        problem: Problem,
    ) -> VerifyReport {
        VerifyReport {
            rows_checked: self.rows_checked,
            ok: false,
            first_bad: Some(BadRow {
                table: table.to_string(),
                seq,
                rowid,
                problem,
            }),
            verified_head: self.last,
        }
    }
}

fn walk_chain(
    conn: &Connection,
    path: &Path,
    version: i64,
    anchor: Option<&ChainHead>,
) -> Result<VerifyReport> {
    let mut walk = Walk {
        rows_checked: 0,
        last: ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        },
    };

    for table in schema::required_tables() {
        let present: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
                [table],
                |r| r.get(0),
            )
            .ctx(path, "listing tables")?;
        if !present {
            return Ok(walk.fail(table, None, None, Problem::TableMissing));
        }
    }

    let head: Option<(Value, Value)> = {
        let mut stmt = conn
            .prepare("SELECT last_seq, last_hash FROM chain_head WHERE id = 1")
            .ctx(path, "reading chain head")?;
        let mut rows = stmt.query([]).ctx(path, "reading chain head")?;
        match rows.next().ctx(path, "reading chain head")? {
            Some(r) => Some((
                r.get(0).ctx(path, "reading chain head")?,
                r.get(1).ctx(path, "reading chain head")?,
            )),
            None => None,
        }
    };
    let head = match head {
        Some((Value::Integer(seq), Value::Text(hash))) => ChainHead { seq, hash },
        Some(_) => {
            return Ok(walk.fail(
                "chain_head",
                None,
                Some(1),
                Problem::Malformed {
                    detail: "chain_head columns have the wrong types".into(),
                },
            ))
        }
        None => return Ok(walk.fail("chain_head", None, None, Problem::HeadMissing)),
    };

    let sql = union_sql(version);
    let mut stmt = conn.prepare(&sql).ctx(path, "preparing chain scan")?;
    let mut rows = stmt.query([]).ctx(path, "scanning chain")?;
    while let Some(row) = rows.next().ctx(path, "scanning chain")? {
        let table: String = row.get(0).ctx(path, "scanning chain")?;
        let Some(spec) = CHAINED_TABLES.iter().find(|t| t.name == table) else {
            // Only possible if `union_sql` and CHAINED_TABLES disagree.
            return Ok(walk.fail(
                &table,
                None,
                None,
                Problem::Malformed {
                    detail: "row from an unknown table".into(),
                },
            ));
        };
        let rowid: Value = row.get(1).ctx(path, "scanning chain")?;
        let seq: Value = row.get(2).ctx(path, "scanning chain")?;
        let prev_hash: Value = row.get(3).ctx(path, "scanning chain")?;
        let stored_hash: Value = row.get(4).ctx(path, "scanning chain")?;
        let rowid = match rowid {
            Value::Integer(i) => Some(i),
            _ => None,
        };
        let seq = match seq {
            Value::Integer(s) => s,
            other => {
                return Ok(walk.fail(
                    &table,
                    None,
                    rowid,
                    Problem::Malformed {
                        detail: format!("seq is {other:?}, not an integer"),
                    },
                ))
            }
        };
        let expected_seq = walk.last.seq + 1;
        if seq != expected_seq {
            let problem = if seq == walk.last.seq && walk.rows_checked > 0 {
                Problem::DuplicateSeq
            } else {
                Problem::SeqGap {
                    expected: expected_seq,
                    found: seq,
                }
            };
            return Ok(walk.fail(&table, Some(seq), rowid, problem));
        }
        let (Value::Text(prev_hash), Value::Text(stored_hash)) = (prev_hash, stored_hash) else {
            return Ok(walk.fail(
                &table,
                Some(seq),
                rowid,
                Problem::Malformed {
                    detail: "prev_hash or row_hash is not text".into(),
                },
            ));
        };
        if prev_hash != walk.last.hash {
            let expected = walk.last.hash.clone();
            return Ok(walk.fail(
                &table,
                Some(seq),
                rowid,
                Problem::PrevHashMismatch {
                    expected,
                    found: prev_hash,
                },
            ));
        }
        let n_columns = spec.columns(version).len();
        let mut fields = Vec::with_capacity(n_columns + 2);
        fields.push(row.get::<_, Value>(1).ctx(path, "scanning chain")?);
        fields.push(Value::Integer(seq));
        for i in 0..n_columns {
            fields.push(row.get::<_, Value>(5 + i).ctx(path, "scanning chain")?);
        }
        spec.trim_for_hash(&mut fields);
        let computed = row_hash(&prev_hash, spec.name, &fields);
        if computed != stored_hash {
            return Ok(walk.fail(
                &table,
                Some(seq),
                rowid,
                Problem::HashMismatch {
                    stored: stored_hash,
                    computed,
                },
            ));
        }
        if let Some(anchor) = anchor {
            if anchor.seq == seq && anchor.hash != stored_hash {
                return Ok(walk.fail(
                    &table,
                    Some(seq),
                    rowid,
                    Problem::AnchorMismatch {
                        anchor_hash: anchor.hash.clone(),
                        found: stored_hash,
                    },
                ));
            }
        }
        walk.rows_checked += 1;
        walk.last = ChainHead {
            seq,
            hash: stored_hash,
        };
    }

    if head != walk.last {
        let (chain_seq, chain_hash) = (walk.last.seq, walk.last.hash.clone());
        return Ok(walk.fail(
            "chain_head",
            Some(head.seq),
            Some(1),
            Problem::HeadMismatch {
                head_seq: head.seq,
                head_hash: head.hash,
                chain_seq,
                chain_hash,
            },
        ));
    }
    if let Some(anchor) = anchor {
        if anchor.seq > walk.last.seq {
            let chain_seq = walk.last.seq;
            return Ok(walk.fail(
                "chain_head",
                Some(head.seq),
                Some(1),
                Problem::AnchorBeyondEnd {
                    anchor_seq: anchor.seq,
                    chain_seq,
                },
            ));
        }
        if anchor.seq == 0 && anchor.hash != GENESIS_HASH {
            return Ok(walk.fail(
                "chain_head",
                Some(0),
                None,
                Problem::AnchorMismatch {
                    anchor_hash: anchor.hash.clone(),
                    found: GENESIS_HASH.to_string(),
                },
            ));
        }
    }

    Ok(VerifyReport {
        rows_checked: walk.rows_checked,
        ok: true,
        first_bad: None,
        verified_head: walk.last,
    })
}

/// One query over all chained tables in `seq` order; each SELECT is padded
/// with NULLs to the widest table so the UNION lines up.
fn union_sql(version: i64) -> String {
    let width = CHAINED_TABLES
        .iter()
        .map(|t| t.columns(version).len())
        .max()
        .unwrap_or(0);
    let selects: Vec<String> = CHAINED_TABLES
        .iter()
        .map(|t| {
            let mut columns: Vec<&str> = t.columns(version);
            columns.resize(width, "NULL");
            format!(
                "SELECT '{name}', id, seq, prev_hash, row_hash, {cols} FROM {name}",
                name = t.name,
                cols = columns.join(", ")
            )
        })
        .collect();
    // Secondary keys make the order of duplicate seqs deterministic.
    format!("{} ORDER BY 3, 1, 2", selects.join(" UNION ALL "))
}
