//! `limbic audit show`: recent decisions, or one session's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::text::{clean, stress};
use super::{audit_path, snapshot};

#[derive(clap::Args)]
pub struct ShowArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// Only this session, in step order.
    #[arg(long)]
    session: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per line (strings JSON-escaped, so safe for a terminal too).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ShowArgs) -> Result<ExitCode> {
    let snap = snapshot(&audit_path(args.audit)?)?;
    let rows = match &args.session {
        Some(s) => snap.session_decisions(s)?,
        None => snap.recent_decisions(args.limit)?,
    };
    for r in rows {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{} step {:>3}  {:<8} stress {:>6}  {:<10} {}  [{}]",
                clean(&r.session_id),
                r.step_index,
                clean(&r.decision),
                stress(r.stress_signature),
                clean(&r.tool),
                clean(&r.reason),
                clean(&r.rule_id)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
