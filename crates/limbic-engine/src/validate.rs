//! Checks a model file before llama.cpp sees it: llama.cpp aborts the process on some
//! malformed files, so the header, the tensor extents, the architecture and the shape
//! hyperparameters are verified here.

use std::path::Path;

use limbic_gguf::{GgufFile, Value};

use crate::error::EngineError;

/// Architectures whose llama.cpp graphs name each block's output `l_out-<L>` (what the taps read).
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "gemma3", "gemma2", "gemma", "qwen2", "qwen3", "phi3", "granite", "olmo2", "smollm3",
    "mistral3",
];

/// llama.cpp's `LLAMA_MAX_LAYERS`: more blocks than this trips an assertion (abort) in model load.
pub const MAX_BLOCKS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
const MAX_EXPERTS: u64 = 1024;
/// Widths far beyond any released model: such a header is corrupt or hostile, and llama.cpp
/// would size buffers from it before checking tensors.
const MAX_WIDTH: u64 = 1 << 16;
const MAX_FF: u32 = 1 << 20;
const MAX_VOCAB: u64 = 1 << 24;

/// Facts read from the header.
#[derive(Debug, Clone)]
pub struct HeaderFacts {
    pub arch: String,
    pub name: Option<String>,
    pub file_size: u64,
    /// `<arch>.block_count` (validated: 1..=512).
    pub n_layer: u32,
    /// `<arch>.embedding_length` (validated: 1..=65536).
    pub n_embd: u32,
    /// `general.file_type` (llama.cpp's `llama_ftype`: how most weights are stored).
    pub file_type: Option<u32>,
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
    let gguf = GgufFile::open(path).map_err(|e| invalid(e.to_string()))?;
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
    let (n_layer, n_embd) = check_hparams(&gguf, &arch).map_err(invalid)?;
    Ok(HeaderFacts {
        arch,
        name: gguf.get_str("general.name").map(str::to_string),
        file_size: meta.len(),
        n_layer,
        n_embd,
        file_type: gguf.get_u32("general.file_type"),
    })
}

/// The shape hyperparameters llama.cpp asserts on (or divides by) while loading; returns
/// (block count, embedding width).
fn check_hparams(gguf: &GgufFile, arch: &str) -> Result<(u32, u32), String> {
    let key = |name: &str| format!("{arch}.{name}");
    let n_layer = scalar(gguf, &key("block_count"), 1, MAX_BLOCKS)?;
    let n_embd = scalar(gguf, &key("embedding_length"), 1, MAX_WIDTH)?;
    scalar(gguf, &key("context_length"), 1, u64::from(u32::MAX))?;
    let heads = per_layer(gguf, &key("attention.head_count"), n_layer, 1, n_embd)?
        .ok_or_else(|| format!("{} is missing", key("attention.head_count")))?;
    // Without explicit head sizes llama.cpp derives them as width / heads.
    if gguf.metadata(&key("attention.key_length")).is_none() {
        if let Some(&h) = heads.iter().find(|&&h| n_embd % h != 0) {
            return Err(format!(
                "{} = {n_embd} is not divisible by {} = {h}",
                key("embedding_length"),
                key("attention.head_count")
            ));
        }
    }
    if let Some(kv_heads) = per_layer(gguf, &key("attention.head_count_kv"), n_layer, 1, n_embd)? {
        for (layer, (&h, &kv)) in heads.iter().zip(&kv_heads).enumerate() {
            if kv > h || h % kv != 0 {
                return Err(format!(
                    "{}: layer {layer} has {kv} KV heads for {h} heads (must divide it)",
                    key("attention.head_count_kv")
                ));
            }
        }
    }
    per_layer(gguf, &key("feed_forward_length"), n_layer, 1, MAX_FF)?;
    let experts = match gguf.metadata(&key("expert_count")) {
        Some(_) => scalar(gguf, &key("expert_count"), 0, MAX_EXPERTS)?,
        None => 0,
    };
    if let Some(used) = per_layer(gguf, &key("expert_used_count"), n_layer, 0, experts)? {
        if experts > 0 && used.iter().all(|&u| u == 0) {
            return Err(format!(
                "{} is 0 with {experts} experts",
                key("expert_used_count")
            ));
        }
    }
    match gguf.metadata("tokenizer.ggml.tokens") {
        Some(Value::Array(_, tokens)) if !tokens.is_empty() && tokens.len() as u64 <= MAX_VOCAB => {
        }
        Some(Value::Array(_, tokens)) => {
            return Err(format!(
                "tokenizer.ggml.tokens holds {} tokens (expected 1..={MAX_VOCAB})",
                tokens.len()
            ))
        }
        Some(_) => return Err("tokenizer.ggml.tokens is not an array".into()),
        None => return Err("tokenizer.ggml.tokens is missing".into()),
    }
    Ok((n_layer, n_embd))
}

/// A required integer in `lo..=hi`.
fn scalar(gguf: &GgufFile, key: &str, lo: u64, hi: u64) -> Result<u32, String> {
    let value = gguf
        .metadata(key)
        .ok_or_else(|| format!("{key} is missing"))?;
    in_range(key, value, lo, hi)
}

/// An optional per-layer integer: one value for all layers, or an array of `n_layer` values.
fn per_layer(
    gguf: &GgufFile,
    key: &str,
    n_layer: u32,
    lo: u32,
    hi: u32,
) -> Result<Option<Vec<u32>>, String> {
    let Some(value) = gguf.metadata(key) else {
        return Ok(None);
    };
    let (lo, hi) = (u64::from(lo), u64::from(hi));
    let values = match value {
        Value::Array(_, items) => {
            if items.len() != n_layer as usize {
                return Err(format!(
                    "{key} has {} values for {n_layer} blocks",
                    items.len()
                ));
            }
            items
                .iter()
                .map(|v| in_range(key, v, lo, hi))
                .collect::<Result<Vec<_>, _>>()?
        }
        v => vec![in_range(key, v, lo, hi)?; n_layer as usize],
    };
    Ok(Some(values))
}

fn in_range(key: &str, value: &Value, lo: u64, hi: u64) -> Result<u32, String> {
    match value.as_u64() {
        Some(v) if (lo..=hi).contains(&v) => {
            u32::try_from(v).map_err(|_| format!("{key} = {v} is too large"))
        }
        Some(v) => Err(format!(
            "{key} = {v} is out of range (expected {lo}..={hi})"
        )),
        None => Err(format!("{key} is not a non-negative integer")),
    }
}
