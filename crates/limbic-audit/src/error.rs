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

    #[error("audit log {}: {context}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

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
