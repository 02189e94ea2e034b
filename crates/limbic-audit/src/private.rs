//! Owner-only files and directories. The log holds the agent's words and
//! arguments, and the key file holds a signing secret: neither is for other
//! local users.

use std::fs;
use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700 (on Unix; umask can
/// only remove bits). Existing directories are left as they are.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty file with mode 0600 unless something already exists at
/// `path`. SQLite accepts an empty file as a new database and gives its
/// `-wal` and `-shm` files the database file's mode, so all three end up
/// owner-only.
pub(crate) fn create_private_file_if_missing(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes group and other permission bits from an existing file (a log
/// created by an older limbic was world-readable). Best effort: a file owned
/// by someone else keeps the mode its owner chose.
pub(crate) fn tighten_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if meta.is_file() && mode & 0o077 != 0 {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The permission bits of `path` that let others than the owner in, if any
/// (Unix only; elsewhere always `None`).
pub(crate) fn loose_mode(meta: &fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Writes `bytes` to a new owner-only file at `path`, never replacing an
/// existing file, and never leaving a partial file at `path`: the content is
/// written and synced under a random temporary name (tempfile creates it
/// 0600), then moved into place only if `path` does not exist.
pub(crate) fn write_new_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map(|_| ()).map_err(|e| e.error)
}
