use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::EngineError;
use crate::raw::RawModel;
use crate::validate::check_model_file;

/// Identity and shape of a loaded model. `sha256` is what vector packs are checked against.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub arch: String,
    pub name: Option<String>,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub chat_template: Option<String>,
    pub sha256: String,
    pub file_size: u64,
}

/// Options for loading a model.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Layers to offload to a GPU backend (ignored by CPU-only builds).
    pub n_gpu_layers: i32,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            n_gpu_layers: if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
                999
            } else {
                0
            },
        }
    }
}

/// A loaded GGUF model, shareable by several engines (sessions live in an [`crate::Engine`]).
pub struct Model {
    pub(crate) raw: RawModel,
    info: ModelInfo,
}

/// The name of llama.cpp's built-in chat template for an architecture whose GGUF files
/// are often packaged without `tokenizer.chat_template` (the Gemma 3 270M package is).
fn builtin_template(arch: &str) -> Option<&'static str> {
    arch.starts_with("gemma").then_some("gemma")
}

/// One chat turn for [`Model::apply_chat_template`].
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

impl Model {
    /// Validates the file, loads it through llama.cpp and reads its identity.
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Arc<Model>, EngineError> {
        let facts = check_model_file(path)?;
        let sha256 = file_sha256(path)?;
        let raw = RawModel::load(path, options.n_gpu_layers)?;
        let positive = |v: i32| u32::try_from(v).unwrap_or(0);
        let info = ModelInfo {
            path: path.to_path_buf(),
            arch: facts.arch,
            name: facts.name,
            n_layer: positive(raw.n_layer()),
            n_embd: positive(raw.n_embd()),
            n_vocab: positive(raw.n_vocab()),
            n_ctx_train: positive(raw.n_ctx_train()),
            chat_template: raw.chat_template(),
            sha256,
            file_size: facts.file_size,
        };
        if info.n_layer == 0 || info.n_embd == 0 || info.n_vocab == 0 {
            return Err(EngineError::InvalidModel {
                path: path.to_path_buf(),
                reason: "model reports zero layers, width or vocabulary".into(),
            });
        }
        Ok(Arc::new(Model { raw, info }))
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Tokenizes plain text. `add_bos` prepends the model's BOS token where it uses one.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<i32>, EngineError> {
        self.raw.tokenize(text, add_bos, false)
    }

    /// Tokenizes text that contains chat-template control markers (e.g. `<|im_start|>`).
    pub fn tokenize_templated(&self, text: &str, add_bos: bool) -> Result<Vec<i32>, EngineError> {
        self.raw.tokenize(text, add_bos, true)
    }

    pub fn token_piece(&self, token: i32) -> String {
        self.raw.token_piece(token)
    }

    pub fn detokenize(&self, tokens: &[i32]) -> String {
        tokens.iter().map(|&t| self.raw.token_piece(t)).collect()
    }

    pub fn bos_token(&self) -> Option<i32> {
        self.raw.bos()
    }

    pub fn is_end_of_generation(&self, token: i32) -> bool {
        self.raw.is_end_of_generation(token)
    }

    /// Formats messages with the model's own chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, EngineError> {
        let template = match self.info.chat_template.as_deref() {
            Some(t) => t,
            None => builtin_template(&self.info.arch).ok_or_else(|| {
                EngineError::Template(format!(
                    "the model has no chat template and llama.cpp has none built in for arch {:?}",
                    self.info.arch
                ))
            })?,
        };
        let pairs: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect();
        self.raw
            .apply_chat_template(template, &pairs, add_assistant)
    }
}

/// Streams a file through SHA-256 (hex, lowercase).
pub fn file_sha256(path: &Path) -> Result<String, EngineError> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
