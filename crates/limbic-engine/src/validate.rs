//! Checks a model file before llama.cpp sees it: llama.cpp aborts the process on some
//! malformed files, so the header, the tensor extents and the architecture are verified here.

use std::path::Path;

use crate::error::EngineError;

/// Architectures whose llama.cpp graphs name each block's output `l_out-<L>` (what the taps read).
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "gemma3", "gemma2", "gemma", "qwen2", "qwen3", "phi3", "granite", "olmo2", "smollm3",
    "mistral3",
];

/// Facts read from the header.
#[derive(Debug, Clone)]
pub struct HeaderFacts {
    pub arch: String,
    pub name: Option<String>,
    pub file_size: u64,
}

pub fn check_model_file(path: &Path) -> Result<HeaderFacts, EngineError> {
    let invalid = |reason: String| EngineError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let gguf = limbic_gguf::GgufFile::open(path).map_err(|e| invalid(e.to_string()))?;
    let arch = gguf
        .architecture()
        .ok_or_else(|| invalid("no general.architecture in the GGUF metadata".into()))?
        .to_string();
    if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
        return Err(invalid(format!(
            "unsupported architecture {arch:?} (limbic taps: {})",
            SUPPORTED_ARCHS.join(", ")
        )));
    }
    Ok(HeaderFacts {
        arch,
        name: gguf.get_str("general.name").map(str::to_string),
        file_size: meta.len(),
    })
}
