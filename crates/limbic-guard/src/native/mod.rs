//! Native mode: limbic serves the agent's own model OpenAI-style, reads its activations
//! while it writes, and withholds or steers and regenerates a risky tool call.

pub mod grammar;
pub mod prompt;
pub mod turn;
pub mod wire;

pub use turn::{ChatError, Progress};
pub use wire::{ChatAnswer, ChatRequest, LimbicReport, OpenAiError};
