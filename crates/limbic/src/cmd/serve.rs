//! `limbic serve`: the guard as a local HTTP daemon (`limbic_server`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use limbic_guard::api::DEFAULT_ADDR;
use limbic_server::ServerConfig;

use crate::args::GuardArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// Where to listen: host[:port], http://host[:port] or unix:/path (loopback by default).
    #[arg(long, env = "LIMBIC_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Also listen on this Unix socket (a file there that is not a stale socket is refused).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Reload the policy file, the vector pack directory and the profile file when they
    /// change, between steps: a broken or wrong-model file keeps the last good one (error on
    /// /health); each reload is a config row in the audit log. Profile settings that size
    /// the engine (threads, GPU layers, context, batch, sessions) need a restart (/health
    /// says which).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch_policy: bool,
    /// The token clients must send (`Authorization: Bearer`); created at first start.
    /// Default: $LIMBIC_HOME/token.
    #[arg(long, env = "LIMBIC_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Open connections above this are closed at once.
    #[arg(long, default_value_t = limbic_server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Milliseconds a client has to send its request headers (twice that for the body).
    #[arg(long, default_value_t = limbic_server::DEFAULT_HEADER_TIMEOUT.as_millis() as u64)]
    header_timeout_ms: u64,
    /// Seconds between checkpoints of the audit log's WAL into the database file.
    #[arg(long, default_value_t = limbic_server::DEFAULT_CHECKPOINT_EVERY.as_secs())]
    checkpoint_secs: u64,
    /// After every checkpoint and at shutdown, sign the verified chain head and write it
    /// here (`limbic audit verify --anchor FILE` checks a log against it). Keep copies
    /// elsewhere: an anchor proves the log was not cut or rewritten after it.
    #[arg(long, env = "LIMBIC_ANCHOR_OUT")]
    anchor_out: Option<PathBuf>,
    /// ed25519 key for the anchors (default `<audit>.key`, created mode 0600 if missing).
    #[arg(long, requires = "anchor_out")]
    anchor_key: Option<PathBuf>,
    /// Stream every decision, after its audit commit, as OTLP/HTTP JSON traces (GenAI
    /// `execute_tool` + guardrail spans, as `audit export --format otlp-json`) to this
    /// OpenTelemetry collector: http://host[:port][/path], `/v1/traces` appended (plain
    /// http only; use a local collector to forward over TLS). Queued in memory, retried
    /// with backoff, oldest dropped when full; counted in /metrics. Needs a build with
    /// `--features otlp`; without it this flag is refused at start.
    #[arg(long, env = "LIMBIC_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Decisions queued for the collector before the oldest is dropped.
    #[arg(long, default_value_t = limbic_server::DEFAULT_OTLP_QUEUE)]
    otlp_queue: usize,
    #[command(flatten)]
    guard: GuardArgs,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let mut config = ServerConfig::new(args.addr, args.socket, args.guard.config()?);
    config.watch_policy = args.watch_policy;
    config.token_file = args.token_file;
    config.max_connections = args.max_connections;
    config.header_timeout = Duration::from_millis(args.header_timeout_ms.max(1));
    config.checkpoint_every = Duration::from_secs(args.checkpoint_secs.max(1));
    config.anchor_out = args.anchor_out;
    config.anchor_key = args.anchor_key;
    config.otlp_endpoint = args.otlp_endpoint;
    config.otlp_queue = args.otlp_queue.max(1);
    limbic_server::serve(config)?;
    Ok(ExitCode::SUCCESS)
}
