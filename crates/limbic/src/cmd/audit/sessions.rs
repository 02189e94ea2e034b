//! `limbic audit sessions`: one line per session.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::text::{clean, stress};
use super::{audit_path, snapshot};

#[derive(clap::Args)]
pub struct SessionsArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// One JSON object per session per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SessionsArgs) -> Result<ExitCode> {
    let snap = snapshot(&audit_path(args.audit)?)?;
    let sessions = snap.all_session_summaries()?;
    let width = sessions
        .iter()
        .map(|s| clean(&s.session_id).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(7, 64);
    if !args.json {
        println!(
            "{:<width$} {:>5}  {:<34} {:>7}  {:>10}",
            "session", "steps", "decisions", "peak", "first veto"
        );
    }
    for s in sessions {
        if args.json {
            println!("{}", serde_json::to_string(&s)?);
            continue;
        }
        let decisions = s
            .decisions
            .iter()
            .map(|(k, n)| format!("{}={n}", clean(k)))
            .collect::<Vec<_>>()
            .join(" ");
        let mut extra = String::new();
        if s.late > 0 {
            extra.push_str(&format!("  late={}", s.late));
        }
        if s.undelivered > 0 {
            extra.push_str(&format!("  undelivered={}", s.undelivered));
        }
        if s.regenerated > 0 {
            extra.push_str(&format!("  regenerated={}", s.regenerated));
        }
        println!(
            "{:<width$} {:>5}  {:<34} {:>7}  {:>10}{extra}",
            clean(&s.session_id),
            s.steps,
            decisions,
            stress(s.max_stress),
            s.first_veto_step
                .map(|v| format!("step {v}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(ExitCode::SUCCESS)
}
