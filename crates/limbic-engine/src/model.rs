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
    /// The file llama.cpp loaded: `path`, or its CPU working copy (see
    /// [`ModelOptions::cpu_copy`]). Identity (`sha256`) is always `path`'s.
    pub weights_path: PathBuf,
    /// Size of `weights_path` (what the weights take in memory).
    pub weights_bytes: u64,
}

/// Options for loading a model.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Layers to offload to a GPU backend (ignored by CPU-only builds).
    pub n_gpu_layers: i32,
    /// Run a CPU-only model whose weights are in a format without a fast CPU matrix
    /// kernel (Q4_1, Q5_1) from a copy in another format, kept in a directory and made
    /// once by llama.cpp's quantizer. `None` loads the file as it is.
    pub cpu_copy: Option<CpuCopy>,
}

/// Where and in which format a CPU working copy of a model is kept (see
/// [`ModelOptions::cpu_copy`]). ggml multiplies Q4_1 matrices row by row, while Q8_0 and
/// F16 go through its tiled GEMM. Measured on 2 cores, SmolLM2-135M (prompt reading /
/// one-token decode, tokens/s): Q4_1 243-301 / 79-86; Q8_0 322-427 / 71-87; F16 525-552 /
/// 57-58 (decode is memory-bound, and F16 weights are 2.8x the bytes).
#[derive(Debug, Clone)]
pub struct CpuCopy {
    pub dir: PathBuf,
    pub format: CopyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Every Q4_1 weight to within F16 rounding; fastest prompt reading, slower decode.
    F16,
    /// Q4_1 weights re-rounded to 8 bits (error a fraction of Q4_1's own step); faster
    /// prompt reading, decode as fast as Q4_1.
    Q8_0,
}

impl CopyFormat {
    pub fn name(self) -> &'static str {
        match self {
            CopyFormat::F16 => "F16",
            CopyFormat::Q8_0 => "Q8_0",
        }
    }
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            n_gpu_layers: if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
                999
            } else {
                0
            },
            cpu_copy: None,
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
        let copy = match &options.cpu_copy {
            Some(cpu) if options.n_gpu_layers == 0 && slow_on_cpu(facts.file_type) => {
                match working_copy(path, &sha256, cpu) {
                    Ok(copy) => Some(copy),
                    Err(e) => {
                        tracing::warn!(
                            "no {} copy of {} ({e}); loading it as it is",
                            cpu.format.name(),
                            path.display()
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let original = || -> Result<_, EngineError> {
            Ok((
                RawModel::load(path, options.n_gpu_layers)?,
                path.to_path_buf(),
                facts.file_size,
            ))
        };
        let (raw, weights_path, weights_bytes) = match copy {
            // The copy is validated like any file before llama.cpp (which may abort on a
            // damaged header) sees it.
            Some(copy) => match check_model_file(&copy).and_then(|copy_facts| {
                RawModel::load(&copy, options.n_gpu_layers).map(|raw| (raw, copy_facts))
            }) {
                Ok((raw, copy_facts)) => (raw, copy, copy_facts.file_size),
                Err(e) => {
                    // A damaged copy is made again next time; this time the original serves.
                    tracing::warn!("{e}; removing the copy and loading {}", path.display());
                    let _ = std::fs::remove_file(&copy);
                    original()?
                }
            },
            None => original()?,
        };
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
            weights_path,
            weights_bytes,
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

/// `llama_ftype`s whose matrices ggml's CPU backend multiplies without a tiled kernel
/// (no llamafile GEMM, no repacking): mostly Q4_1 (3) and mostly Q5_1 (9).
fn slow_on_cpu(file_type: Option<u32>) -> bool {
    matches!(file_type, Some(3 | 9))
}

/// The working copy of `path` (whose sha256 is `sha256`) in `cpu.dir`, written first if
/// missing. Named by the source's hash and the format, so a changed source never meets a
/// stale copy; written to a temporary name and renamed, so a crash or a concurrent writer
/// never leaves half a file.
fn working_copy(path: &Path, sha256: &str, cpu: &CpuCopy) -> Result<PathBuf, EngineError> {
    let stem = format!(
        "{}.{}",
        sha256.get(..32).unwrap_or(sha256),
        cpu.format.name().to_ascii_lowercase()
    );
    let copy = cpu.dir.join(format!("{stem}.gguf"));
    if copy.is_file() {
        return Ok(copy);
    }
    let io = |source| EngineError::Io {
        path: cpu.dir.clone(),
        source,
    };
    std::fs::create_dir_all(&cpu.dir).map_err(io)?;
    let tmp = cpu.dir.join(format!(".{stem}.{}.tmp", std::process::id()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as i32);
    tracing::info!(
        "writing a {} copy of {} to {}",
        cpu.format.name(),
        path.display(),
        copy.display()
    );
    let written = RawModel::write_copy(path, &tmp, cpu.format, threads)
        .and_then(|()| std::fs::rename(&tmp, &copy).map_err(io));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| copy)
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
