//! `limbic audit replay`: what another policy would have decided on the recorded steps.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use limbic_guard::replay::{kind_label, replay_log};
use limbic_policy::Policy;

use super::text::{clean, stress};
use super::{audit_path, create_private, snapshot};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// The policy to replay under (TOML), or a built-in name (`default`, `workstation`,
    /// `edge-robot`).
    #[arg(long)]
    policy: String,
    /// Write every replayed step (recorded and new decision, why, limits) as JSON Lines.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Only this session.
    #[arg(long)]
    session: Option<String>,
    /// Print every step, not only the changed ones.
    #[arg(long)]
    all: bool,
    /// Re-score the steps whose text was stored with this model (GGUF path or known name)
    /// before re-deciding; without --model/--pack the recorded readings are used.
    #[arg(long)]
    model: Option<String>,
    /// Vector pack for re-scoring (default: the model's committed pack).
    #[arg(long)]
    pack: Option<PathBuf>,
}

fn load_policy(spec: &str) -> Result<Policy> {
    let path = PathBuf::from(spec);
    if path.exists() {
        return Policy::load(&path).with_context(|| format!("policy {}", path.display()));
    }
    Policy::builtin(spec)
        .with_context(|| format!("policy {spec}: no such file, and not a built-in policy name"))
}

pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    let policy = load_policy(&args.policy)?;
    let path = audit_path(args.audit)?;
    let snap = snapshot(&path)?;
    let mut out = match &args.output {
        Some(p) => Some(BufWriter::new(
            create_private(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut scorer = if args.model.is_some() || args.pack.is_some() {
        let config = limbic_guard::GuardConfig {
            model: args.model.clone(),
            pack: args.pack.clone(),
            ..Default::default()
        };
        Some(
            config
                .build_scorer()
                .context("loading the model and pack to re-score")?,
        )
    } else {
        None
    };
    let mut noted_limits = std::collections::BTreeSet::new();
    let summary = replay_log(
        &snap,
        &policy,
        args.session.as_deref(),
        scorer.as_mut(),
        |r| {
            if let Some(out) = out.as_mut() {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
            if r.changed || args.all {
                println!(
                    "{} step {:>3}  {:<10} stress {:>6}  {:<18} -> {:<18} {}",
                    clean(&r.session),
                    r.step,
                    clean(&r.tool),
                    stress(r.stress),
                    kind_label(&r.recorded),
                    kind_label(&r.replayed),
                    if r.changed { clean(&r.why) } else { "".into() }
                );
            }
            noted_limits.extend(r.limits.iter().cloned());
            Ok(())
        },
    )?;
    if let Some(mut out) = out {
        out.flush().context("writing the replay output")?;
    }
    println!(
        "replayed {} steps of {} under policy {} ({}): {} decisions change",
        summary.steps,
        path.display(),
        policy.name(),
        policy.origin(),
        summary.changed
    );
    for (t, n) in &summary.transitions {
        println!("  {n:>5}  {t}");
    }
    if scorer.is_some() {
        println!(
            "re-scored {} of {} steps with the given model and pack",
            summary.rescored, summary.steps
        );
    }
    if summary.without_text + summary.redacted_text + summary.unscored > 0 {
        println!(
            "cannot re-score exactly: {} steps without text, {} with redacted text, {} unscored",
            summary.without_text, summary.redacted_text, summary.unscored
        );
        for l in &noted_limits {
            println!("  - {l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
