//! Offline reading without touching the log: the database file and its
//! `-wal` are copied to a private temporary directory and the copy is
//! opened. Opening a WAL-mode database in place, even read-only, may create
//! or write its `-shm` index, and a writable open may checkpoint; a copy
//! leaves every byte of the original as it was.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use crate::error::{io_error, AuditError, Result, SqlContext};
use crate::log::{sidecar, AuditLog, AuditOptions};
use crate::schema;
use crate::verify::{verify, VerifyReport};

/// A private, read-only copy of an audit log, deleted when dropped. Derefs to
/// [`AuditLog`] for the queries; writes are refused.
#[derive(Debug)]
pub struct AuditSnapshot {
    log: AuditLog,
    source: PathBuf,
    // Dropped after `log` (field order), so the connection closes first.
    _dir: tempfile::TempDir,
}

/// Attempts at a consistent copy while another process keeps writing.
const COPY_ATTEMPTS: usize = 20;

type FileStamp = Option<(u64, Option<SystemTime>)>;

fn stamp(path: &Path) -> FileStamp {
    fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

impl AuditSnapshot {
    /// Copies the log at `path` (and its `-wal`, which holds the newest
    /// commits until a checkpoint) and opens the copy. If a writer changes
    /// the files during the copy, the copy is retried; a log that never
    /// holds still long enough is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditSnapshot> {
        let source = path.as_ref().to_path_buf();
        if !source.is_file() {
            return Err(AuditError::Missing { path: source });
        }
        let dir = tempfile::Builder::new()
            .prefix("limbic-audit-snapshot-")
            .tempdir()
            .map_err(|e| io_error(&source, "creating a temporary directory for the copy", e))?;
        let copy = dir.path().join("audit.db");
        let wal = sidecar(&source, "-wal");
        let copy_wal = sidecar(&copy, "-wal");
        let mut consistent = false;
        for attempt in 0..COPY_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
            let before = (stamp(&source), stamp(&wal));
            fs::copy(&source, &copy).map_err(|e| io_error(&source, "copying the log", e))?;
            let _ = fs::remove_file(&copy_wal);
            if before.1.is_some() {
                match fs::copy(&wal, &copy_wal) {
                    Ok(_) => {}
                    // Checkpointed and removed meanwhile: try again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&wal, "copying the log's WAL", e)),
                }
            }
            if (stamp(&source), stamp(&wal)) == before {
                consistent = true;
                break;
            }
        }
        if !consistent {
            return Err(AuditError::Corrupt {
                path: source,
                detail: format!(
                    "the log kept changing during {COPY_ATTEMPTS} attempts to copy it; \
                     try again when the daemon is idle"
                ),
            });
        }
        // Opened read-write: it is our copy, and SQLite needs to write the
        // `-shm` index to read the copied WAL. Never migrated.
        let conn = Connection::open(&copy).ctx(&copy, "opening the copy")?;
        let version = schema::check_readable(&conn, &source)?;
        let log = AuditLog::from_connection(copy, AuditOptions::default(), true, version, conn);
        Ok(AuditSnapshot {
            log,
            source,
            _dir: dir,
        })
    }

    /// The log that was copied.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// [`crate::verify`] on the copy.
    pub fn verify(&self) -> Result<VerifyReport> {
        verify(self.log.path())
    }
}

impl Deref for AuditSnapshot {
    type Target = AuditLog;
    fn deref(&self) -> &AuditLog {
        &self.log
    }
}
