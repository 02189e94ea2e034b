//! Where limbic keeps things: its home directory (`$LIMBIC_HOME`, else the platform cache
//! directory's `limbic` folder), the models cache, the default audit log, and the lookup of
//! a model's committed vector pack.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use limbic_engine::Model;

use crate::models::KNOWN_MODELS;

/// `$LIMBIC_HOME`, else the platform cache directory's `limbic` folder.
pub fn limbic_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("LIMBIC_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    dirs::cache_dir()
        .map(|d| d.join("limbic"))
        .ok_or_else(|| anyhow!("no cache directory on this platform: set LIMBIC_HOME"))
}

/// Where fetched models live.
pub fn models_dir() -> Result<PathBuf> {
    Ok(limbic_home()?.join("models"))
}

/// The audit log used when none is given: `$LIMBIC_HOME/audit.db`.
pub fn default_audit_path() -> Result<PathBuf> {
    Ok(limbic_home()?.join("audit.db"))
}

/// The folder name of a model's pack: its known name, else its file stem.
pub fn model_dir_name(model: &Model) -> String {
    let info = model.info();
    KNOWN_MODELS
        .iter()
        .find(|m| m.sha256 == info.sha256)
        .map(|m| m.name.to_string())
        .unwrap_or_else(|| {
            info.path
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "model".into())
        })
}

/// The committed pack for a known model: `vectors/<known-name>/`, looked up under
/// `$LIMBIC_VECTORS`, the working directory, and the source tree this binary was built from.
pub fn default_pack_dir(model: &Model) -> Result<PathBuf> {
    let info = model.info();
    let name = KNOWN_MODELS
        .iter()
        .find(|m| m.sha256 == info.sha256)
        .map(|m| m.name)
        .ok_or_else(|| {
            anyhow!(
                "no committed vector pack for {} (sha256 {}): build one with \
                 `limbic vectors build --model {}` and pass --pack",
                info.path.display(),
                info.sha256.get(..12).unwrap_or(&info.sha256),
                info.path.display()
            )
        })?;
    let candidates = [
        std::env::var_os("LIMBIC_VECTORS").map(PathBuf::from),
        Some(PathBuf::from("vectors")),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vectors")),
    ];
    for base in candidates.into_iter().flatten() {
        let dir = base.join(name);
        if dir.join(limbic_vectors::pack::MANIFEST_FILE).exists() {
            return Ok(dir);
        }
    }
    bail!(
        "no vector pack found for {name}: expected vectors/{name}/pack.toml \
         (or set LIMBIC_VECTORS / --pack)"
    )
}
