//! `limbic demo`: replays the example transcripts through the guard and shows each
//! decision, its stress signature and reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use limbic_guard::{StepAnswer, StepRequest};
use limbic_policy::DecisionKind;

use crate::args::GuardArgs;

#[derive(Args)]
pub struct DemoArgs {
    /// Transcript folder (JSON Lines files, replayed in name order).
    #[arg(long, default_value = "examples/transcripts")]
    transcripts: PathBuf,
    #[command(flatten)]
    guard: GuardArgs,
}

pub fn run(mut args: DemoArgs) -> Result<ExitCode> {
    if args.guard.audit.is_none() {
        args.guard.audit = Some(limbic_guard::home::limbic_home()?.join("demo-audit.db"));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.transcripts)
        .with_context(|| format!("reading {}", args.transcripts.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    eprintln!("loading the guard (the default model is fetched on first use)...");
    let mut guard = args.guard.config()?.build(false)?;
    if let Some(reason) = guard.scorer_error() {
        anyhow::bail!("the demo needs the model and its vector pack: {reason}");
    }
    if let Some(s) = guard.scorer() {
        let info = s.model().info();
        println!(
            "limbic demo — model {} ({} layers), probes: {}\n",
            info.name.as_deref().unwrap_or(&info.arch),
            info.n_layer,
            s.emotions().join(", ")
        );
    }
    let mut totals: BTreeMap<DecisionKind, usize> = BTreeMap::new();
    for file in &files {
        println!("== {} ==", file.display());
        let text = std::fs::read_to_string(file)?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let input: StepRequest = serde_json::from_str(line)
                .with_context(|| format!("{}:{}", file.display(), i + 1))?;
            let outcome = guard.check(&input)?;
            print_outcome(&input, &outcome);
            *totals.entry(outcome.decision).or_default() += 1;
        }
        println!();
    }
    let db = args.guard.audit_path()?;
    println!(
        "decisions: {}",
        totals
            .iter()
            .map(|(k, v)| format!("{v} {}", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("audit log: {}", db.display());
    println!(
        "  verify the hash chain:  limbic audit verify --audit {}",
        db.display()
    );
    println!(
        "  read the decisions:     limbic audit show --audit {}",
        db.display()
    );
    println!(
        "  or with SQL:            sqlite3 {} \"SELECT s.session_id, s.step_index, d.decision, d.rule_id, d.reason FROM decisions d JOIN steps s ON s.id = d.step_id\"",
        db.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(input: &StepRequest, o: &StepAnswer) {
    let words: String = input.text.chars().take(70).collect();
    let ellipsis = if input.text.chars().count() > 70 {
        "…"
    } else {
        ""
    };
    let top = o
        .scores
        .iter()
        .filter(|(k, _)| k.as_str() != "calm")
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(k, v)| format!("{k} {v:+.1}"))
        .unwrap_or_default();
    println!(
        "step {:>2}  {:<8} stress {:+5.2}{}  [{}]  \"{words}{ellipsis}\"",
        o.step,
        o.decision.as_str().to_uppercase(),
        o.stress,
        if o.spike { " SPIKE" } else { "      " },
        top
    );
    if o.decision != DecisionKind::Allow {
        println!(
            "          {}: {} ({})",
            o.rule,
            o.reason,
            input.action.text()
        );
    }
}
