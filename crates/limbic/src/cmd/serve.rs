//! `limbic serve`: the guard as a local HTTP daemon (`limbic_server`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use limbic_guard::api::DEFAULT_ADDR;
use limbic_server::ServerConfig;

use crate::args::GuardArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// TCP address to listen on (loopback by default).
    #[arg(long, env = "LIMBIC_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Also listen on this Unix socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Reload the policy file when it changes (a broken edit keeps the last good policy).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch_policy: bool,
    #[command(flatten)]
    guard: GuardArgs,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    limbic_server::serve(ServerConfig {
        addr: args.addr,
        socket: args.socket,
        watch_policy: args.watch_policy,
        guard: args.guard.config()?,
    })?;
    Ok(ExitCode::SUCCESS)
}
