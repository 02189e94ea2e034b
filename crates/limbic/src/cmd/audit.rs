//! `limbic audit`: verify the hash chain and read the log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use limbic_audit::AuditLog;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain; exits non-zero naming the first bad row.
    Verify {
        /// Audit database (default: $LIMBIC_HOME/audit.db).
        #[arg(long, env = "LIMBIC_AUDIT")]
        audit: Option<PathBuf>,
    },
    /// Print recent decisions (newest first) or one session's.
    Show {
        #[arg(long, env = "LIMBIC_AUDIT")]
        audit: Option<PathBuf>,
        /// Only this session, in step order.
        #[arg(long)]
        session: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

fn audit_path(p: Option<PathBuf>) -> Result<PathBuf> {
    match p {
        Some(p) => Ok(p),
        None => limbic_guard::home::default_audit_path(),
    }
}

pub fn run(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Verify { audit } => verify(&audit_path(audit)?),
        AuditCmd::Show {
            audit,
            session,
            limit,
            json,
        } => {
            let log = AuditLog::open_read_only(audit_path(audit)?)?;
            let rows = match &session {
                Some(s) => log.session_decisions(s)?,
                None => log.recent_decisions(limit)?,
            };
            for r in rows {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "{} step {:>3}  {:<8} stress {:>6}  {:<10} {}  [{}]",
                        r.session_id,
                        r.step_index,
                        r.decision,
                        r.stress_signature
                            .map(|s| format!("{s:+.2}"))
                            .unwrap_or_else(|| "-".into()),
                        r.tool,
                        r.reason,
                        r.rule_id
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(path: &Path) -> Result<ExitCode> {
    let report = limbic_audit::verify(path)?;
    if report.ok {
        println!(
            "ok: {} rows verified in {}; head seq {} hash {}",
            report.rows_checked,
            path.display(),
            report.verified_head.seq,
            report.verified_head.hash
        );
        Ok(ExitCode::SUCCESS)
    } else {
        match &report.first_bad {
            Some(bad) => eprintln!("TAMPERED: {} — first bad row: {bad}", path.display()),
            None => eprintln!("TAMPERED: {}", path.display()),
        }
        Ok(ExitCode::from(3))
    }
}
