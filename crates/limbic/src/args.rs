//! Command-line options shared by the commands that build a guard, mapped onto the
//! library's plain [`GuardConfig`]. A device profile (`--profile`) supplies the sizing; an
//! explicit flag overrides the profile's value.

use std::path::PathBuf;

use anyhow::{Context, Result};
use limbic_guard::{GuardConfig, Profile, StoreText};

/// Options shared by every command that builds a guard.
#[derive(clap::Args, Debug, Clone)]
pub struct GuardArgs {
    /// A GGUF path or a known model name (default: the default model, fetched if missing).
    #[arg(long, env = "LIMBIC_MODEL")]
    pub model: Option<String>,
    /// Vector pack directory (default: the committed pack for the model, under vectors/).
    #[arg(long, env = "LIMBIC_PACK")]
    pub pack: Option<PathBuf>,
    /// Policy file (TOML); default: the profile's policy, else the built-in default policy.
    #[arg(long, env = "LIMBIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// Audit database (SQLite); default: $LIMBIC_HOME/audit.db.
    #[arg(long, env = "LIMBIC_AUDIT")]
    pub audit: Option<PathBuf>,
    /// Device profile: a shipped name (cpu-2core, workstation-cuda, jetson-orin-nano,
    /// raspberry-pi-5, apple-silicon) or a TOML file (firmware-configs/profiles/). A model
    /// that does not fit its memory budget is refused at start.
    #[arg(long, env = "LIMBIC_PROFILE")]
    pub profile: Option<String>,
    /// How step text is written to the audit log: full, hash (sha256 only) or redacted
    /// (tokens, keys and passwords removed by pattern before anything is written).
    #[arg(long, value_parser = ["full", "hash", "redacted"], conflicts_with = "hash_text")]
    pub store_text: Option<String>,
    /// Same as --store-text hash.
    #[arg(long)]
    pub hash_text: bool,
    /// KV-cache size in tokens shared by the resident sessions (default 8192, or the
    /// profile's).
    #[arg(long)]
    pub n_ctx: Option<u32>,
    /// Sessions that keep their KV cache resident at once (default 8, or the profile's).
    #[arg(long)]
    pub max_sessions: Option<u32>,
    /// Tokens per decode call (default 512, or the profile's).
    #[arg(long)]
    pub n_batch: Option<u32>,
    /// CPU threads (default: all cores, or the profile's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Layers offloaded to the GPU (default: all in a GPU build, or the profile's).
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Host memory in MiB for the saved KV state of sessions beyond --max-sessions: those
    /// are restored on their next step instead of re-decoded (default 2048, or the
    /// profile's: its state_budget_mb, else a quarter of its memory budget). 0 re-decodes.
    #[arg(long)]
    pub state_budget_mb: Option<u64>,
}

impl GuardArgs {
    pub fn config(&self) -> Result<GuardConfig> {
        let profile = self
            .profile
            .as_deref()
            .map(Profile::load)
            .transpose()
            .context("--profile")?;
        let d = GuardConfig::default();
        let store_text = match (&self.store_text, self.hash_text, &profile) {
            (Some(s), _, _) => s.parse()?,
            (None, true, _) => StoreText::Hash,
            (None, false, Some(p)) => p.store_text,
            (None, false, None) => d.store_text,
        };
        let pick = |flag: Option<u32>, from_profile: Option<u32>, default: u32| {
            flag.or(from_profile).unwrap_or(default)
        };
        let p = profile.as_ref();
        Ok(GuardConfig {
            model: self.model.clone(),
            pack: self.pack.clone(),
            policy: self.policy.clone(),
            audit: self.audit.clone(),
            store_text,
            n_ctx: pick(self.n_ctx, p.map(|p| p.n_ctx), d.n_ctx),
            max_sessions: pick(self.max_sessions, p.map(|p| p.max_sessions), d.max_sessions),
            n_batch: pick(self.n_batch, p.map(|p| p.n_batch), d.n_batch),
            threads: self.threads.or(p.map(|p| p.threads)),
            gpu_layers: self.gpu_layers.or(p.map(|p| p.gpu_layers)),
            state_budget_mb: self
                .state_budget_mb
                .or(p.map(|p| p.state_budget_mb()))
                .unwrap_or(d.state_budget_mb),
            profile,
        })
    }

    pub fn audit_path(&self) -> Result<PathBuf> {
        self.config()?.audit_path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        guard: GuardArgs,
    }

    fn config(args: &[&str]) -> GuardConfig {
        let argv = std::iter::once("limbic").chain(args.iter().copied());
        Cli::parse_from(argv).guard.config().unwrap()
    }

    #[test]
    fn the_saved_session_budget_comes_from_the_flag_then_the_profile_then_the_default() {
        assert_eq!(
            config(&[]).state_budget_mb,
            limbic_guard::DEFAULT_STATE_BUDGET_MB
        );
        let profile = Profile::load("cpu-2core").unwrap();
        assert_eq!(
            config(&["--profile", "cpu-2core"]).state_budget_mb,
            profile.state_budget_mb()
        );
        assert_eq!(
            config(&["--profile", "cpu-2core", "--state-budget-mb", "0"]).state_budget_mb,
            0
        );
        assert_eq!(config(&["--state-budget-mb", "512"]).state_budget_mb, 512);
    }
}
