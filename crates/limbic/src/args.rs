//! Command-line options shared by the commands that build a guard, mapped onto the
//! library's plain [`GuardConfig`].

use std::path::PathBuf;

use anyhow::Result;
use limbic_guard::GuardConfig;

/// Options shared by every command that builds a guard.
#[derive(clap::Args, Debug, Clone)]
pub struct GuardArgs {
    /// A GGUF path or a known model name (default: the default model, fetched if missing).
    #[arg(long, env = "LIMBIC_MODEL")]
    pub model: Option<String>,
    /// Vector pack directory (default: the committed pack for the model, under vectors/).
    #[arg(long, env = "LIMBIC_PACK")]
    pub pack: Option<PathBuf>,
    /// Policy file (TOML); default: the built-in default policy.
    #[arg(long, env = "LIMBIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// Audit database (SQLite); default: $LIMBIC_HOME/audit.db.
    #[arg(long, env = "LIMBIC_AUDIT")]
    pub audit: Option<PathBuf>,
    /// Store only the sha256 of each step's text in the audit log, not the text.
    #[arg(long)]
    pub hash_text: bool,
    /// KV-cache size in tokens shared by the resident sessions.
    #[arg(long, default_value_t = GuardConfig::default().n_ctx)]
    pub n_ctx: u32,
    /// Sessions that keep their KV cache resident at once.
    #[arg(long, default_value_t = GuardConfig::default().max_sessions)]
    pub max_sessions: u32,
}

impl GuardArgs {
    pub fn config(&self) -> GuardConfig {
        GuardConfig {
            model: self.model.clone(),
            pack: self.pack.clone(),
            policy: self.policy.clone(),
            audit: self.audit.clone(),
            hash_text: self.hash_text,
            n_ctx: self.n_ctx,
            max_sessions: self.max_sessions,
        }
    }

    pub fn audit_path(&self) -> Result<PathBuf> {
        self.config().audit_path()
    }
}
