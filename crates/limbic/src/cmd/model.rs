//! `limbic model fetch | list | info`: the known models, installing them, and what a GGUF is.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use limbic_engine::Model;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Download a known model into the cache ($LIMBIC_HOME, else ~/.cache/limbic), verify its
    /// sha256 and print its path.
    Fetch {
        /// Known model name (see `limbic model list`).
        #[arg(default_value = limbic_guard::models::DEFAULT_MODEL)]
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

pub fn run(cmd: ModelCmd) -> Result<ExitCode> {
    match cmd {
        ModelCmd::Fetch { name, force } => {
            let model = limbic_guard::models::known(&name).with_context(|| {
                format!(
                    "unknown model {name:?}; known: {}",
                    limbic_guard::models::KNOWN_MODELS
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let path = limbic_guard::models::fetch(model, force)?;
            println!("{}", path.display());
        }
        ModelCmd::List => {
            for m in limbic_guard::models::KNOWN_MODELS {
                let path = limbic_guard::models::cached_path(m)?;
                let state = if path.exists() {
                    format!("installed at {}", path.display())
                } else {
                    "not installed".to_string()
                };
                let default = if m.name == limbic_guard::models::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!("{}{default}: {}\n    {state}", m.name, m.description);
            }
        }
        ModelCmd::Info { model, json } => {
            let path: PathBuf = limbic_guard::models::resolve(Some(&model), false)?;
            let model = Model::load(&path, &limbic_guard::models::model_options(None)?)?;
            let i = model.info();
            if json {
                let v = serde_json::json!({
                    "path": i.path, "arch": i.arch, "name": i.name, "n_layer": i.n_layer,
                    "n_embd": i.n_embd, "n_vocab": i.n_vocab, "n_ctx_train": i.n_ctx_train,
                    "sha256": i.sha256, "file_size": i.file_size,
                    "weights_path": i.weights_path, "weights_bytes": i.weights_bytes,
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
                if i.weights_path != i.path {
                    println!(
                        "runs from:   {} (CPU working copy, {} bytes)",
                        i.weights_path.display(),
                        i.weights_bytes
                    );
                }
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
