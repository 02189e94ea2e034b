//! A small, strict reader and writer for GGUF, the file format of llama.cpp models
//! and control vectors.
//!
//! * [`GgufFile::open`] parses the header, all metadata and the tensor-info table
//!   through a buffered reader and never loads tensor data. Every length and count
//!   read from the file is bounded (see the `MAX_*` constants) and checked against
//!   the bytes actually left in the file before anything is allocated, so garbage or
//!   truncated input produces a [`GgufError`], never a huge allocation or a panic.
//!   Each tensor of a known ggml type must lie, with its alignment padding, inside the
//!   file ([`GgufError::Truncated`] otherwise).
//! * [`GgufFile::read_tensor_f32`] reads one F32/F16/BF16 tensor on demand.
//! * [`GgufWriter`] builds metadata and tensors and writes a GGUF v3 file atomically.
//!
//! Only little-endian GGUF v2 and v3 are supported (v1 used 32-bit counts).

#![forbid(unsafe_code)]

mod error;
mod half;
mod reader;
mod types;
mod writer;

pub use error::{GgufError, Result};
pub use half::{bf16_to_f32, f16_to_f32};
pub use reader::{
    GgufFile, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN,
    MAX_DIMS, MAX_METADATA_ENTRIES, MAX_STRING_LEN, MAX_TENSORS, MAX_TENSOR_NAME_LEN,
};
pub use types::{BlockLayout, GgmlType, Value, ValueType};
pub use writer::{GgufWriter, WRITE_VERSION};
