//! limbic: an on-device safety guard for local AI agents.

mod bench;
mod check_cmd;
mod collect;
mod eval_cmd;
mod guard;
mod hooks;
mod models;
mod render;
mod serve;
mod taps_cmd;
mod vectors_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use limbic_engine::{Model, ModelOptions};

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
    Model(ModelCmd),
    /// Show what the residual-stream taps see, per layer, for one agent step.
    Taps(taps_cmd::TapsArgs),
    /// Benchmarks, reported as ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Replay the example transcripts through the guard and show each decision (the demo).
    Demo(check_cmd::DemoArgs),
    /// Check a file of agent steps (JSON Lines); one decision per line, in order.
    Check(check_cmd::CheckArgs),
    /// Run the guard as a local HTTP daemon (POST /v1/steps, GET /health, GET /metrics).
    Serve(serve::ServeArgs),
    /// Build, inspect and evaluate emotion vector packs.
    #[command(subcommand)]
    Vectors(vectors_cmd::VectorsCmd),
    /// Verify and read the audit log.
    #[command(subcommand)]
    Audit(check_cmd::AuditCmd),
    /// Answer a coding agent's pre-tool hook (event JSON on stdin) by asking the daemon.
    /// Settings for each agent are in examples/hooks/.
    Hook {
        /// Which agent's hook protocol to speak.
        agent: hooks::Agent,
        /// The daemon's address (host:port, http://host:port or unix:/path).
        #[arg(long, env = "LIMBIC_ADDR", default_value = serve::DEFAULT_ADDR)]
        addr: String,
        /// Allow the action when the daemon cannot be reached (default: deny).
        #[arg(long)]
        fail_open: bool,
        /// Take the fail mode from this policy file's `fail_mode` instead.
        #[arg(long, env = "LIMBIC_POLICY")]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Download a known model into the cache ($LIMBIC_HOME, else ~/.cache/limbic), verify its
    /// sha256 and print its path.
    Fetch {
        /// Known model name (see `limbic model list`).
        #[arg(default_value = models::DEFAULT_MODEL)]
        name: String,
        /// Download again even if a verified copy exists.
        #[arg(long)]
        force: bool,
    },
    /// List the known models and whether they are installed.
    List,
    /// Load a GGUF model and print its identity (arch, layers, width, sha256, template).
    Info {
        /// A GGUF path or a known model name.
        model: String,
        #[arg(long)]
        json: bool,
    },
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
        guard: guard::GuardArgs,
        /// Session lengths to run.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10usize, 100, 1000])]
        lengths: Vec<usize>,
        /// Steps to replay (JSON Lines), cycled.
        #[arg(long, default_value = "tests/data/dev_trajectories.jsonl")]
        steps: PathBuf,
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

pub fn load_model(spec: Option<&str>) -> Result<std::sync::Arc<Model>> {
    let path = models::resolve(spec, true)?;
    Model::load(&path, &ModelOptions::default()).with_context(|| "loading the model".to_string())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Model(cmd) => model_cmd(cmd),
        Command::Taps(args) => taps_cmd::run(args),
        Command::Demo(args) => check_cmd::demo(args),
        Command::Check(args) => check_cmd::check(args),
        Command::Serve(args) => serve::run(args),
        Command::Vectors(cmd) => vectors_cmd::run(cmd),
        Command::Audit(cmd) => check_cmd::audit(cmd),
        Command::Hook {
            agent,
            addr,
            fail_open,
            policy,
        } => {
            let policy_open = match &policy {
                Some(p) => {
                    limbic_policy::Policy::load(p)?.fail_mode() == limbic_policy::FailMode::Open
                }
                None => false,
            };
            let code = hooks::run_hook(
                agent,
                &addr,
                fail_open || policy_open,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            Ok(ExitCode::from(code))
        }
        Command::Bench(BenchCmd::Engine {
            model,
            repetitions,
            json,
        }) => {
            let model = load_model(model.as_deref())?;
            let path = model.info().path.clone();
            let result = bench::run_engine_bench(model, repetitions)?;
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                bench::print_engine_bench(&result, &path);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCmd::Guard {
            guard,
            lengths,
            steps,
            json,
        }) => {
            let texts: Vec<guard::StepInput> = collect::read_jsonl(&steps)?;
            let result = bench::run_guard_bench(&guard, &texts, &lengths)?;
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                bench::print_guard_bench(&result);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn model_cmd(cmd: ModelCmd) -> Result<ExitCode> {
    match cmd {
        ModelCmd::Fetch { name, force } => {
            let model = models::known(&name).with_context(|| {
                format!(
                    "unknown model {name:?}; known: {}",
                    models::KNOWN_MODELS
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let path = models::fetch(model, force)?;
            println!("{}", path.display());
        }
        ModelCmd::List => {
            for m in models::KNOWN_MODELS {
                let path = models::cached_path(m)?;
                let state = if path.exists() {
                    format!("installed at {}", path.display())
                } else {
                    "not installed".to_string()
                };
                let default = if m.name == models::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!("{}{default}: {}\n    {state}", m.name, m.description);
            }
        }
        ModelCmd::Info { model, json } => {
            let path: PathBuf = models::resolve(Some(&model), false)?;
            let model = Model::load(&path, &ModelOptions::default())?;
            let i = model.info();
            if json {
                let v = serde_json::json!({
                    "path": i.path, "arch": i.arch, "name": i.name, "n_layer": i.n_layer,
                    "n_embd": i.n_embd, "n_vocab": i.n_vocab, "n_ctx_train": i.n_ctx_train,
                    "sha256": i.sha256, "file_size": i.file_size,
                    "chat_template": i.chat_template,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("path:        {}", i.path.display());
                println!("name:        {}", i.name.as_deref().unwrap_or("-"));
                println!("arch:        {}", i.arch);
                println!("layers:      {}", i.n_layer);
                println!("width:       {}", i.n_embd);
                println!("vocabulary:  {}", i.n_vocab);
                println!("trained ctx: {}", i.n_ctx_train);
                println!("size:        {} bytes", i.file_size);
                println!("sha256:      {}", i.sha256);
                println!(
                    "template:    {}",
                    if i.chat_template.is_some() {
                        "yes"
                    } else {
                        "none"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
