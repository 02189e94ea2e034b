//! Error type shared by the reader and the writer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing a GGUF file.
///
/// Every variant names the file it is about (for in-memory data the "path" is the
/// label the caller gave), so a message can be shown to a user as is.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The operating system refused an open/read/write/rename.
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        /// What was being attempted, e.g. "cannot open" or "cannot rename temp file into place".
        action: &'static str,
        #[source]
        source: io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("{}: not a GGUF file (bad magic {found:02x?}, expected \"GGUF\")", .path.display())]
    BadMagic { path: PathBuf, found: [u8; 4] },

    /// A GGUF version this crate does not read (only 2 and 3 are supported).
    #[error("{}: unsupported GGUF version {version}{hint} (supported: 2, 3)", .path.display())]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        /// Extra explanation, e.g. that the file looks big-endian; may be empty.
        hint: &'static str,
    },

    /// The file ends before the data it announces: `need` bytes would be required, it has `have`.
    #[error("{}: truncated: need at least {need} bytes, file has {have}", .path.display())]
    Truncated { path: PathBuf, need: u64, have: u64 },

    /// A structural problem: a limit exceeded, an unknown value type, a misaligned offset...
    #[error("{}: {problem}", .path.display())]
    Malformed { path: PathBuf, problem: String },

    /// A metadata key is missing or holds the wrong kind of value.
    #[error("{}: metadata key '{key}': {problem}", .path.display())]
    Metadata {
        path: PathBuf,
        key: String,
        problem: String,
    },

    /// No tensor with this name.
    #[error("{}: no tensor named '{name}'", .path.display())]
    TensorNotFound { path: PathBuf, name: String },

    /// The tensor exists but its type cannot be converted to f32 by this crate.
    #[error(
        "{}: tensor '{name}' has type {ggml_type}; only F32, F16 and BF16 can be read as f32",
        .path.display()
    )]
    UnsupportedTensorType {
        path: PathBuf,
        name: String,
        ggml_type: String,
    },

    /// The writer was given something it cannot encode (the path is the destination).
    #[error("{}: cannot write: {problem}", .path.display())]
    InvalidInput { path: PathBuf, problem: String },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
