//! `limbic audit export`: one row per step, in a format other tools read.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;

use super::{audit_path, create_private, snapshot};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One JSON object per step.
    Jsonl,
    /// RFC 4180 CSV with a header; per-emotion `score.<e>` / `peak.<e>` columns.
    Csv,
    /// Apache Parquet (flat columns; DuckDB, Spark, pandas read it as it is).
    Parquet,
    /// OpenTelemetry traces, OTLP/JSON: an `execute_tool` span per step with a guardrail child
    /// span and a security-finding event (guardrail names are experimental upstream).
    OtlpJson,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    #[arg(long, value_enum)]
    format: Format,
    /// Output file (`-` for standard output, except Parquet).
    #[arg(long)]
    out: PathBuf,
    /// Only this session.
    #[arg(long)]
    session: Option<String>,
}

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let path = audit_path(args.audit)?;
    let snap = snapshot(&path)?;
    let session = args.session.as_deref();
    let to_stdout = args.out == Path::new("-");
    let n = if to_stdout {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match args.format {
            Format::Jsonl => snap.export_jsonl(&mut out, session)?,
            Format::Csv => snap.export_csv(&mut out, session)?,
            Format::OtlpJson => snap.export_otlp_json(&mut out, session)?,
            Format::Parquet => anyhow::bail!("Parquet is binary: pass --out FILE"),
        }
    } else {
        let file = create_private(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let mut out = BufWriter::new(file);
        let n = match args.format {
            Format::Jsonl => snap.export_jsonl(&mut out, session)?,
            Format::Csv => snap.export_csv(&mut out, session)?,
            Format::OtlpJson => snap.export_otlp_json(&mut out, session)?,
            Format::Parquet => snap.export_parquet(&mut out, session)?,
        };
        out.flush()
            .and_then(|()| out.get_ref().sync_all())
            .with_context(|| format!("writing {}", args.out.display()))?;
        n
    };
    if !to_stdout {
        eprintln!(
            "exported {n} steps from {} to {} ({:?})",
            path.display(),
            args.out.display(),
            args.format
        );
    }
    Ok(ExitCode::SUCCESS)
}
