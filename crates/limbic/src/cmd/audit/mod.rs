//! `limbic audit`: verify, anchor and read the audit log offline. One file per subcommand.
//!
//! Every command here except `anchor` (which writes only its key and anchor files) reads a
//! private copy of the log ([`limbic_audit::AuditSnapshot`]): opening a WAL database in place,
//! even read-only, may touch its `-shm` index, and an auditor's reading must not change a
//! byte of what they audit.

mod anchor;
mod export;
mod plot;
mod replay;
mod report;
mod sessions;
mod show;
mod stats;
mod text;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use limbic_audit::AuditSnapshot;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain; exits non-zero naming the first bad row. With --anchor, also
    /// fails when the log no longer extends the anchored (signed) head.
    Verify(verify::VerifyArgs),
    /// Verify the log and write its head, signed with an ed25519 key (created 0600 beside the
    /// log if missing), to an anchor file. Keep anchors off the agent's host.
    Anchor(anchor::AnchorArgs),
    /// Print recent decisions (newest first) or one session's.
    Show(show::ShowArgs),
    /// One line per session: steps, decisions by kind, peak stress, first veto.
    Sessions(sessions::SessionsArgs),
    /// Whole-log counts: sessions, steps, decisions by kind, delivery, stress, latency.
    Stats(stats::StatsArgs),
    /// Export one row per step (decision, rule, reason, stress, per-emotion scores, hashes)
    /// as JSON Lines, CSV, Parquet or OTLP JSON traces.
    Export(export::ExportArgs),
    /// Re-decide every recorded step under another policy (from the stored scores, stress,
    /// spike and action) and print which decisions change and why.
    Replay(replay::ReplayArgs),
    /// Draw one session's timeline (emotion scores, stress signature, policy thresholds,
    /// decisions) as SVG or PNG.
    Plot(plot::PlotArgs),
    /// Write DIR/index.html: one self-contained page with every session's timeline,
    /// decisions and reasons, filterable by decision and session.
    Report(report::ReportArgs),
}

/// The log named on the command line, else `$LIMBIC_HOME/audit.db`.
pub(crate) fn audit_path(p: Option<PathBuf>) -> Result<PathBuf> {
    match p {
        Some(p) => Ok(p),
        None => limbic_guard::home::default_audit_path(),
    }
}

/// A private copy of the log to read (the original is never opened).
pub(crate) fn snapshot(path: &Path) -> Result<AuditSnapshot> {
    AuditSnapshot::open(path).with_context(|| format!("reading audit log {}", path.display()))
}

pub fn run(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Verify(a) => verify::run(a),
        AuditCmd::Anchor(a) => anchor::run(a),
        AuditCmd::Show(a) => show::run(a),
        AuditCmd::Sessions(a) => sessions::run(a),
        AuditCmd::Stats(a) => stats::run(a),
        AuditCmd::Export(a) => export::run(a),
        AuditCmd::Replay(a) => replay::run(a),
        AuditCmd::Plot(a) => plot::run(a),
        AuditCmd::Report(a) => report::run(a),
    }
}

/// Files written from the log hold what the log holds (the agent's words and arguments):
/// owner-only, as the log itself.
pub(crate) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
