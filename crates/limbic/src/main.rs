//! limbic: an on-device safety guard for local AI agents. This binary is the command line:
//! clap types and dispatch here, one module per subcommand in `cmd/`, the agent hooks in
//! `hook/`. The product lives in the libraries (`limbic-guard` and below).

#![forbid(unsafe_code)]

mod args;
mod cmd;
mod hook;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::args::GuardArgs;

#[derive(Parser)]
#[command(
    name = "limbic",
    version,
    about = "On-device safety guard for local AI agents: reads a local model's residual stream, \
             scores each agent step on emotion-vector probes, and vetoes or re-routes actions \
             when stress spikes.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install, list and inspect models (GGUF).
    #[command(subcommand)]
    Model(cmd::model::ModelCmd),
    /// Show what the residual-stream taps see, per layer, for one agent step.
    Taps(cmd::taps::TapsArgs),
    /// Benchmarks, reported as ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Replay the example transcripts through the guard and show each decision (the demo).
    Demo(cmd::demo::DemoArgs),
    /// Check a file of agent steps (JSON Lines); one decision per line, in order. Exits 4
    /// when some lines could not be decided (each has an error line).
    Check(cmd::check::CheckArgs),
    /// Run the guard as a local HTTP daemon (POST /v1/steps, GET /health, GET /metrics).
    Serve(cmd::serve::ServeArgs),
    /// Build, inspect and evaluate emotion vector packs.
    #[command(subcommand)]
    Vectors(VectorsCmd),
    /// Verify and read the audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Answer a coding agent's pre-tool hook (event JSON on stdin) by asking the daemon.
    /// Settings for each agent are in examples/hooks/.
    Hook(hook::HookArgs),
}

#[derive(Subcommand)]
enum VectorsCmd {
    /// Build a vector pack for a model from the contrastive prompt sets.
    Build(cmd::vectors::BuildArgs),
    /// Show what a control-vector GGUF holds (limbic's, llama.cpp's or repeng's).
    Inspect {
        /// A control-vector .gguf file, or a pack directory.
        path: PathBuf,
    },
    /// Measure a pack on labelled steps: AUROC per emotion and layer, the combined stress
    /// signature, a permutation control and a keyword baseline; table + PNG plot.
    Eval(cmd::eval::EvalArgs),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Prompt processing (512 tokens) and decode (128 tokens) throughput with taps off,
    /// 1 layer and 4 layers tapped.
    Engine {
        /// A GGUF path or a known model name (default: the default model, fetched if needed).
        #[arg(long)]
        model: Option<String>,
        /// Repetitions per configuration (the median is reported).
        #[arg(long, default_value_t = 5)]
        repetitions: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Guard step latency (p50/p95, steps/s) for sessions of 10, 100 and 1000 steps, and its
    /// ratio to plain prompt processing of the same tokens.
    Guard {
        #[command(flatten)]
        guard: GuardArgs,
        /// Session lengths to run.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10usize, 100, 1000])]
        lengths: Vec<usize>,
        /// Steps to replay (JSON Lines), cycled.
        #[arg(long, default_value = "tests/data/dev_trajectories.jsonl")]
        steps: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Throughput and latency (p50/p95/p99, queue wait included) with concurrent sessions,
    /// each sending its next step as soon as the last is answered, against one session alone
    /// in the same run.
    Load {
        #[command(flatten)]
        guard: GuardArgs,
        /// Concurrent session counts to run.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8, 32, 128])]
        sessions: Vec<usize>,
        /// Steps per session.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Steps to replay (JSON Lines), cycled.
        #[arg(long, default_value = "tests/data/dev_trajectories.jsonl")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Native mode: decode tokens/s and time to first token of a chat answer through the
    /// guard (probes on the model's own activations, policy, audit) against a plain greedy
    /// decode of the same prompt with taps off, on the same context, in the same run.
    Native {
        #[command(flatten)]
        guard: GuardArgs,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        repetitions: usize,
        /// Tokens to generate per answer.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; llama.cpp's own log stays off unless RUST_LOG asks for `llama_cpp`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,llama_cpp=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Model(c) => cmd::model::run(c),
        Command::Taps(args) => cmd::taps::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Vectors(VectorsCmd::Build(args)) => cmd::vectors::build(args),
        Command::Vectors(VectorsCmd::Inspect { path }) => cmd::vectors::inspect(&path),
        Command::Vectors(VectorsCmd::Eval(args)) => cmd::eval::run(args),
        Command::Audit(c) => cmd::audit::run(c),
        Command::Hook(args) => Ok(hook::run(args)),
        Command::Bench(BenchCmd::Engine {
            model,
            repetitions,
            json,
        }) => cmd::bench::engine(model.as_deref(), repetitions, json),
        Command::Bench(BenchCmd::Guard {
            guard,
            lengths,
            steps,
            json,
        }) => cmd::bench::guard(&guard.config()?, &steps, &lengths, json),
        Command::Bench(BenchCmd::Load {
            guard,
            sessions,
            steps,
            data,
            json,
        }) => cmd::bench::load(&guard.config()?, &data, &sessions, steps, json),
        Command::Bench(BenchCmd::Native {
            guard,
            repetitions,
            max_tokens,
            json,
        }) => cmd::bench::native::run(&guard.config()?, repetitions, max_tokens, json),
    }
}
