//! `limbic check` (batch JSON Lines), `limbic demo` (replayed transcripts) and
//! `limbic audit` (verify and read the log).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use limbic_audit::AuditLog;
use serde_json::json;

use crate::guard::{Guard, GuardArgs, StepInput, StepOutcome};

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
fn check_line(guard: &mut Guard, line_no: usize, line: &str) -> serde_json::Value {
    let input: StepInput = match serde_json::from_str(line) {
        Ok(i) => i,
        Err(e) => return json!({"line": line_no, "error": format!("malformed step: {e}")}),
    };
    match guard.check(&input) {
        Ok(outcome) => serde_json::to_value(&outcome)
            .unwrap_or_else(|e| json!({"line": line_no, "error": e.to_string()})),
        Err(e) => json!({
            "line": line_no, "session": input.session, "step": input.step,
            "error": format!("{e:#}"),
        }),
    }
}

pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let mut guard = args.guard.build(false)?;
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
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = check_line(&mut guard, i + 1, &line);
        let key = value
            .get("decision")
            .and_then(|d| d.as_str())
            .unwrap_or("error")
            .to_string();
        *counts.entry(key).or_default() += 1;
        writeln!(out, "{value}")?;
    }
    out.flush()?;
    eprintln!(
        "checked: {}; audit log: {}",
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.guard.audit_path()?.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DemoArgs {
    /// Transcript folder (JSON Lines files, replayed in name order).
    #[arg(long, default_value = "examples/transcripts")]
    transcripts: PathBuf,
    #[command(flatten)]
    guard: GuardArgs,
}

pub fn demo(mut args: DemoArgs) -> Result<ExitCode> {
    if args.guard.audit.is_none() {
        args.guard.audit = Some(crate::models::limbic_home()?.join("demo-audit.db"));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.transcripts)
        .with_context(|| format!("reading {}", args.transcripts.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    eprintln!("loading the guard (the default model is fetched on first use)...");
    let mut guard = args.guard.build(false)?;
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
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        println!("== {} ==", file.display());
        let text = std::fs::read_to_string(file)?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let input: StepInput = serde_json::from_str(line)
                .with_context(|| format!("{}:{}", file.display(), i + 1))?;
            let outcome = guard.check(&input)?;
            print_outcome(&input, &outcome);
            *totals.entry(outcome.decision.clone()).or_default() += 1;
        }
        println!();
    }
    let db = args.guard.audit_path()?;
    println!(
        "decisions: {}",
        totals
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
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

fn print_outcome(input: &StepInput, o: &StepOutcome) {
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
        o.decision.to_uppercase(),
        o.stress,
        if o.spike { " SPIKE" } else { "      " },
        top
    );
    if o.decision != "allow" {
        println!(
            "          {}: {} ({})",
            o.rule,
            o.reason,
            input.action_text()
        );
    }
}

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
        None => crate::guard::default_audit_path(),
    }
}

pub fn audit(cmd: AuditCmd) -> Result<ExitCode> {
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
