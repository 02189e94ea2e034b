use std::path::{Path, PathBuf};

/// Everything that can go wrong opening, writing or reading an audit log.
/// Every variant names the database file so that messages make sense when
/// several logs are in play.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: file does not exist", .path.display())]
    Missing { path: PathBuf },

    #[error("audit log {}: not an SQLite database (wrong file, or it is corrupted)", .path.display())]
    NotADatabase { path: PathBuf },

    #[error("audit log {}: not a limbic audit log: {detail}", .path.display())]
    NotAnAuditLog { path: PathBuf, detail: String },

    #[error(
        "audit log {}: schema version {found} is newer than this build supports \
         (up to {supported}); use a newer limbic to read or write it",
        .path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("audit log {}: {detail}; run `verify` on it", .path.display())]
    Corrupt { path: PathBuf, detail: String },

    #[error("audit log {}: opened read-only, cannot {action}", .path.display())]
    ReadOnly { path: PathBuf, action: &'static str },

    #[error("audit log {}: field `{field}`: {problem}", .path.display())]
    InvalidField {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },

    /// The step number does not fit the log's signed 64-bit column. Never
    /// clamped or wrapped: the step is refused.
    #[error(
        "audit log {}: session `{session}`: step {step} is larger than the largest step \
         number the log stores ({max})",
        .path.display(), max = i64::MAX
    )]
    StepIndexTooLarge {
        path: PathBuf,
        session: String,
        step: u64,
    },

    /// The step number repeats or goes back within its session (a replayed
    /// or injected step). Nothing was written.
    #[error(
        "audit log {}: session `{session}`: step {step} is not after the last recorded \
         step {last} (a duplicate or going backwards); nothing was recorded",
        .path.display()
    )]
    StepNotAfterLast {
        path: PathBuf,
        session: String,
        step: u64,
        last: u64,
    },

    /// A signing-key file that can't be used (unreadable, malformed, or
    /// readable by other users).
    #[error("anchor key {}: {detail}", .path.display())]
    Key { path: PathBuf, detail: String },

    /// An anchor that can't be trusted: malformed, signed by another key than
    /// the trusted one, or with a signature that does not verify.
    #[error("anchor{}: {detail}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Anchor {
        path: Option<PathBuf>,
        detail: String,
    },

    #[error("{}: {context}: {source}", .path.display())]
    Io {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("audit log {}: {context}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

impl AuditError {
    /// `true` when the step itself was at fault (its number is too large,
    /// repeats or goes backwards): the caller should answer the client with
    /// a 4xx / flagged answer rather than treat the log as broken.
    pub fn is_step_number_error(&self) -> bool {
        matches!(
            self,
            AuditError::StepIndexTooLarge { .. } | AuditError::StepNotAfterLast { .. }
        )
    }
}

pub(crate) fn io_error(path: &Path, context: &'static str, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_path_buf(),
        context,
        source,
    }
}

/// Maps a rusqlite error to an `AuditError`, recognising the "not a database"
/// case so the user is told plainly that they pointed at the wrong file.
pub(crate) fn sqlite_error(
    path: &Path,
    context: &'static str,
    source: rusqlite::Error,
) -> AuditError {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        AuditError::NotADatabase {
            path: path.to_path_buf(),
        }
    } else {
        AuditError::Sqlite {
            path: path.to_path_buf(),
            context,
            source,
        }
    }
}

/// Extension to attach path + context to rusqlite results tersely.
pub(crate) trait SqlContext<T> {
    fn ctx(self, path: &Path, context: &'static str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, path: &Path, context: &'static str) -> Result<T> {
        self.map_err(|e| sqlite_error(path, context, e))
    }
}
