//! `limbic audit stats`: whole-log counts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::text::{clean, stress};
use super::{audit_path, snapshot};

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, n)| format!("{}={n}", clean(k)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(args: StatsArgs) -> Result<ExitCode> {
    let path = audit_path(args.audit)?;
    let snap = snapshot(&path)?;
    let s = snap.stats()?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("log            {}", path.display());
    println!("schema         v{}", s.schema_version);
    println!(
        "head           seq {} hash {} (not verified: see `audit verify`)",
        s.head.seq, s.head.hash
    );
    println!("configs        {}", s.configs);
    println!("sessions       {}", s.sessions);
    println!(
        "steps          {} ({} spikes, {} unscored, {} without decision)",
        s.steps, s.spikes, s.unscored, s.steps_without_decision
    );
    println!("decisions      {}", counts(&s.decisions));
    println!("delivery       {}", counts(&s.delivery));
    println!(
        "stress         peak {}  mean {}",
        stress(s.max_stress),
        stress(s.mean_stress)
    );
    println!(
        "latency        mean {}",
        s.mean_latency_ms
            .map(|l| format!("{l:.1} ms"))
            .unwrap_or_else(|| "-".into())
    );
    if let (Some(a), Some(b)) = (s.first_ts_ms, s.last_ts_ms) {
        println!("time           {a} .. {b} (ms since the Unix epoch)");
    }
    Ok(ExitCode::SUCCESS)
}
