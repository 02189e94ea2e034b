use std::path::PathBuf;

/// Everything the engine can refuse or fail at, each naming what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("model file {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("context: {0}")]
    Context(String),
    #[error("{what} is too large: {got} (limit {limit})")]
    InputTooLarge {
        what: &'static str,
        limit: usize,
        got: usize,
    },
    #[error("empty text: there is nothing to decode")]
    EmptyText,
    #[error("tokenize: {0}")]
    Tokenize(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error("taps: {0}")]
    Taps(String),
    #[error("grammar: {0}")]
    Grammar(String),
    #[error("steering: {0}")]
    Steering(String),
    #[error("session {0:?} does not exist")]
    UnknownSession(String),
}
