//! What lands on disk: owner-only modes, and a WAL checkpoint after which
//! the database file alone holds every row.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{decision_for, populated, step};
use limbic_audit::{verify, AuditError, AuditLog, AuditOptions};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn rows_in_copy_of_db_alone(path: &Path, name: &str) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(name);
    std::fs::copy(path, &copy).unwrap();
    assert!(!dir.path().join(format!("{name}-wal")).exists());
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('steps', 'decisions')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if tables < 2 {
        // Even the schema is still only in the WAL.
        return 0;
    }
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM steps) + (SELECT COUNT(*) FROM decisions)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn new_log_and_its_directories_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("home/limbic/audit.db");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    log.append_step(&step("s", 1), &decision_for(1)).unwrap();
    assert_eq!(mode(&path), 0o600);
    for sidecar in ["audit.db-wal", "audit.db-shm"] {
        let p = path.with_file_name(sidecar);
        assert!(p.exists(), "{sidecar} exists while the log is open");
        assert_eq!(mode(&p), 0o600, "{sidecar}");
    }
    assert_eq!(mode(&dir.path().join("home/limbic")), 0o700);
    assert_eq!(mode(&dir.path().join("home")), 0o700);
    // An existing directory is not ours to change.
    assert_eq!(mode(dir.path()), 0o755);
}

#[test]
fn world_readable_log_from_an_older_build_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 2, false);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert_eq!(mode(&path), 0o600);
    drop(log);

    // Someone else's database is refused and left exactly as it was.
    let foreign = dir.path().join("app.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT);")
        .unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(AuditLog::open(&foreign, AuditOptions::default()).is_err());
    assert_eq!(mode(&foreign), 0o644);
}

#[test]
fn copy_of_the_db_file_alone_holds_every_row_after_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    for i in 0..20 {
        log.append_step(&step("s", i), &decision_for(i)).unwrap();
    }
    // The attack on backups: while the daemon runs, the newest commits are
    // only in audit.db-wal, so a copy of audit.db alone lacks them.
    let wal = path.with_file_name("audit.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    assert!(rows_in_copy_of_db_alone(&path, "before.db") < 40);

    let report = log.checkpoint().unwrap();
    assert!(!report.busy, "{report:?}");
    assert!(report.wal_bytes_before > 0, "{report:?}");
    assert_eq!(report.wal_bytes_after, 0, "{report:?}");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "WAL truncated");
    assert_eq!(rows_in_copy_of_db_alone(&path, "after.db"), 40);

    // The copy is a complete, verifying log.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("audit.db");
    std::fs::copy(&path, &copy).unwrap();
    let report = verify(&copy).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.verified_head, log.head().unwrap());

    // Appending after a checkpoint works as before.
    log.append_step(&step("s", 20), &decision_for(20)).unwrap();
    assert!(verify(&path).unwrap().ok);
}

#[test]
fn checkpoint_on_a_read_only_handle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 2, false);
    let ro = AuditLog::open_read_only(&path).unwrap();
    assert!(matches!(ro.checkpoint(), Err(AuditError::ReadOnly { .. })));
}
