//! `limbic check`: a file of agent steps (JSON Lines) through the guard, one decision
//! line per input line, in order.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use limbic_guard::{Guard, StepAnswer, StepRequest};
use limbic_policy::DecisionKind;
use serde_json::json;

use crate::args::GuardArgs;

#[derive(Args)]
pub struct CheckArgs {
    /// Steps to check, JSON Lines: {"session","step","text","action":{"tool","args"}}.
    #[arg(long)]
    input: PathBuf,
    /// Where to write one decision per input line (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Runs one input line through the guard; an unusable line becomes an error line.
fn check_line(
    guard: &mut Guard,
    line_no: usize,
    line: &str,
) -> std::result::Result<StepAnswer, serde_json::Value> {
    let input: StepRequest = serde_json::from_str(line)
        .map_err(|e| json!({"line": line_no, "error": format!("malformed step: {e}")}))?;
    guard.check(&input).map_err(|e| {
        json!({
            "line": line_no, "session": input.session, "step": input.step,
            "error": format!("{e:#}"),
        })
    })
}

/// Exit status when some lines could not be decided (the others were).
const EXIT_SOME_LINES_FAILED: u8 = 4;

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let mut guard = args.guard.config().build(false)?;
    if let Some(reason) = guard.scorer_error() {
        eprintln!(
            "warning: probes unavailable, deciding by fail mode ({}): {reason}",
            guard.policy().fail_mode().as_str()
        );
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut counts: BTreeMap<DecisionKind, usize> = BTreeMap::new();
    let mut failed = 0usize;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match check_line(&mut guard, i + 1, &line) {
            Ok(answer) => {
                *counts.entry(answer.decision).or_default() += 1;
                writeln!(out, "{}", serde_json::to_string(&answer)?)?;
            }
            Err(error) => {
                failed += 1;
                writeln!(out, "{error}")?;
            }
        }
    }
    out.flush()?;
    let mut summary: Vec<String> = counts
        .iter()
        .map(|(k, v)| format!("{v} {}", k.as_str()))
        .collect();
    if failed > 0 {
        summary.push(format!("{failed} failed"));
    }
    eprintln!(
        "checked: {}; audit log: {}",
        summary.join(", "),
        args.guard.audit_path()?.display()
    );
    Ok(if failed > 0 {
        ExitCode::from(EXIT_SOME_LINES_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
