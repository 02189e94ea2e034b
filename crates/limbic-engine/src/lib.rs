//! limbic-engine: a safe API over llama.cpp for reading a model's residual stream.
//!
//! - [`Model`]: a validated, loaded GGUF model and its identity (sha256, arch, shape).
//! - [`Engine`]: a context with sessions (KV sequences that persist between steps),
//!   residual-stream taps (`l_out-<L>` rows per token), control-vector steering and sampling.
//!
//! All `unsafe` code of the project lives in the private `raw` module of this crate.

mod batch;
mod engine;
mod error;
mod model;
mod raw;
mod taps;
mod validate;
mod window;

pub use engine::{
    AppendOutcome, Engine, EngineConfig, EngineStats, GenerateOutcome, GenerateParams, Grammar,
    PerfStats, StopReason, DEFAULT_STATE_BUDGET,
};
pub use error::EngineError;
pub use model::{file_sha256, ChatMessage, CopyFormat, CpuCopy, Model, ModelInfo, ModelOptions};
pub use taps::{TapRows, TokenTap};
pub use validate::{check_model_file, HeaderFacts, MAX_BLOCKS, SUPPORTED_ARCHS};
