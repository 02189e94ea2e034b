//! GGUF v3 writer: metadata plus tensors, written atomically.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::reader::{
    align_up, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS,
    MAX_METADATA_ENTRIES, MAX_STRING_LEN, MAX_TENSORS, MAX_TENSOR_NAME_LEN,
};
use crate::types::{GgmlType, Value};

/// The version this writer emits.
pub const WRITE_VERSION: u32 = 3;

#[derive(Clone, Debug)]
enum Payload {
    F32(Vec<f32>),
    Raw { ggml_type: GgmlType, bytes: Vec<u8> },
}

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    payload: Payload,
}

impl PendingTensor {
    fn ggml_type(&self) -> GgmlType {
        match &self.payload {
            Payload::F32(_) => GgmlType::F32,
            Payload::Raw { ggml_type, .. } => *ggml_type,
        }
    }

    fn byte_len(&self) -> u64 {
        match &self.payload {
            Payload::F32(data) => data.len() as u64 * 4,
            Payload::Raw { bytes, .. } => bytes.len() as u64,
        }
    }
}

/// Builds a GGUF file in memory, then writes it.
///
/// Nothing is validated until [`GgufWriter::write`] / [`GgufWriter::to_bytes`], so
/// every error can name the destination file.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a metadata entry; a key set twice keeps its first position and the last value.
    /// `general.alignment` must be a [`Value::U32`] power of two (ggml reads it as u32).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        let key = key.into();
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Add an F32 tensor; `dims` are in ggml order (`dims[0]` contiguous) and their
    /// product must equal `data.len()`.
    pub fn add_tensor_f32(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        data: Vec<f32>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            payload: Payload::F32(data),
        });
        self
    }

    /// Add a tensor of any known ggml type from its already-encoded little-endian bytes.
    pub fn add_tensor_raw(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        bytes: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            payload: Payload::Raw { ggml_type, bytes },
        });
        self
    }

    /// Encode to a byte vector (errors are labelled `<in-memory GGUF>`).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let label = Path::new("<in-memory GGUF>");
        let alignment = self.validate(label)?;
        let mut out = Vec::new();
        self.encode(&mut out, alignment)
            .map_err(|e| io_error(label, "cannot encode", e))?;
        Ok(out)
    }

    /// Write the file atomically: encode into a temporary file in the destination's
    /// directory, flush and sync it, then rename it over `path`. A crash leaves either
    /// the old file or the new one, never a partial file that a reader would reject.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let alignment = self.validate(path)?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".limbic-gguf-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| io_error(path, "cannot create a temporary file next to it", e))?;
        {
            let mut out = BufWriter::new(temp.as_file());
            self.encode(&mut out, alignment)
                .and_then(|()| out.flush())
                .map_err(|e| io_error(path, "cannot write temporary file", e))?;
        }
        temp.as_file()
            .sync_all()
            .map_err(|e| io_error(path, "cannot sync temporary file", e))?;
        // tempfile creates files readable only by the owner; a written GGUF is data
        // other tools (and users) are expected to read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
                .map_err(|e| io_error(path, "cannot set permissions on temporary file", e))?;
        }
        temp.persist(path)
            .map_err(|e| io_error(path, "cannot rename temporary file into place", e.error))?;
        // Make the rename itself durable; failure here loses nothing already visible.
        #[cfg(unix)]
        if let Ok(dir_handle) = std::fs::File::open(dir) {
            let _ = dir_handle.sync_all();
        }
        Ok(())
    }

    /// Check everything the reader (and ggml) would reject; returns the alignment.
    fn validate(&self, path: &Path) -> Result<u64> {
        let invalid = |problem: String| GgufError::InvalidInput {
            path: path.to_path_buf(),
            problem,
        };
        if self.metadata.len() as u64 > MAX_METADATA_ENTRIES {
            return Err(invalid(format!(
                "{} metadata entries exceed the limit of {MAX_METADATA_ENTRIES}",
                self.metadata.len()
            )));
        }
        for (key, value) in &self.metadata {
            if key.is_empty() {
                return Err(invalid("metadata key is empty".to_owned()));
            }
            if key.len() as u64 > MAX_STRING_LEN {
                return Err(invalid(format!(
                    "metadata key of {} bytes exceeds the limit of {MAX_STRING_LEN}",
                    key.len()
                )));
            }
            check_value(value, 0)
                .map_err(|problem| invalid(format!("metadata '{key}': {problem}")))?;
        }

        let alignment = match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, other)) => {
                return Err(invalid(format!(
                    "'{ALIGNMENT_KEY}' must be a u32 power of two, got {other:?}"
                )))
            }
        };

        if self.tensors.len() as u64 > MAX_TENSORS {
            return Err(invalid(format!(
                "{} tensors exceed the limit of {MAX_TENSORS}",
                self.tensors.len()
            )));
        }
        let mut names = HashSet::new();
        for tensor in &self.tensors {
            let name = &tensor.name;
            if name.is_empty() || name.len() > MAX_TENSOR_NAME_LEN {
                return Err(invalid(format!(
                    "tensor name '{name}' must be 1 to {MAX_TENSOR_NAME_LEN} bytes (ggml's limit)"
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(invalid(format!("duplicate tensor name '{name}'")));
            }
            let n_dims = tensor.dims.len();
            if n_dims == 0 || n_dims > MAX_DIMS as usize {
                return Err(invalid(format!(
                    "tensor '{name}' has {n_dims} dimensions; ggml allows 1 to {MAX_DIMS}"
                )));
            }
            let n_elements = tensor
                .dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| i64::try_from(n).is_ok())
                .ok_or_else(|| invalid(format!("tensor '{name}' element count overflows int64")))?;
            let ggml_type = tensor.ggml_type();
            let layout = ggml_type.layout().ok_or_else(|| {
                invalid(format!(
                    "tensor '{name}' has {ggml_type}, whose size is unknown"
                ))
            })?;
            if tensor.dims[0] % layout.block_elements != 0 {
                return Err(invalid(format!(
                    "tensor '{name}': first dimension {} is not a multiple of the {ggml_type} block size {}",
                    tensor.dims[0], layout.block_elements
                )));
            }
            let expected_bytes = (n_elements / layout.block_elements)
                .checked_mul(layout.block_bytes)
                .ok_or_else(|| invalid(format!("tensor '{name}' byte size overflows u64")))?;
            if tensor.byte_len() != expected_bytes {
                return Err(invalid(format!(
                    "tensor '{name}' has dims {:?} ({ggml_type}) which need {expected_bytes} bytes, but {} were given",
                    tensor.dims,
                    tensor.byte_len()
                )));
            }
        }
        Ok(alignment)
    }

    fn encode<W: Write>(&self, out: W, alignment: u64) -> io::Result<()> {
        let mut out = CountingWriter {
            inner: out,
            written: 0,
        };
        out.write_all(&MAGIC)?;
        out.write_all(&WRITE_VERSION.to_le_bytes())?;
        out.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        out.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_string(&mut out, key)?;
            out.write_all(&value.value_type().id().to_le_bytes())?;
            write_value(&mut out, value)?;
        }

        let mut offset = 0u64;
        for tensor in &self.tensors {
            write_string(&mut out, &tensor.name)?;
            out.write_all(&(tensor.dims.len() as u32).to_le_bytes())?;
            for dim in &tensor.dims {
                out.write_all(&dim.to_le_bytes())?;
            }
            out.write_all(&tensor.ggml_type().0.to_le_bytes())?;
            out.write_all(&offset.to_le_bytes())?;
            offset = padded(tensor.byte_len(), alignment)?
                .checked_add(offset)
                .ok_or_else(overflow)?;
        }

        if !self.tensors.is_empty() {
            pad_to(&mut out, alignment)?;
        }
        for tensor in &self.tensors {
            match &tensor.payload {
                Payload::F32(data) => {
                    for value in data {
                        out.write_all(&value.to_le_bytes())?;
                    }
                }
                Payload::Raw { bytes, .. } => out.write_all(bytes)?,
            }
            // Pad after every tensor, the last one included: ggml's loader reads the
            // padded size of each tensor.
            pad_to(&mut out, alignment)?;
        }
        out.flush()
    }
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> GgufError {
    GgufError::Io {
        path: PathBuf::from(path),
        action,
        source,
    }
}

fn overflow() -> io::Error {
    io::Error::other("tensor data offsets overflow u64")
}

fn padded(len: u64, alignment: u64) -> io::Result<u64> {
    align_up(len, alignment).ok_or_else(overflow)
}

fn check_value(value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::String(s) if s.len() as u64 > MAX_STRING_LEN => Err(format!(
            "string of {} bytes exceeds the limit of {MAX_STRING_LEN}",
            s.len()
        )),
        Value::Array(elem_type, items) => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
            }
            if items.len() as u64 > MAX_ARRAY_LEN {
                return Err(format!(
                    "array of {} elements exceeds the limit of {MAX_ARRAY_LEN}",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                if item.value_type() != *elem_type {
                    return Err(format!(
                        "array of {elem_type} has a {} at index {i}",
                        item.value_type()
                    ));
                }
                check_value(item, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn write_string<W: Write>(out: &mut W, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_value<W: Write>(out: &mut W, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => out.write_all(&v.to_le_bytes()),
        Value::I8(v) => out.write_all(&v.to_le_bytes()),
        Value::U16(v) => out.write_all(&v.to_le_bytes()),
        Value::I16(v) => out.write_all(&v.to_le_bytes()),
        Value::U32(v) => out.write_all(&v.to_le_bytes()),
        Value::I32(v) => out.write_all(&v.to_le_bytes()),
        Value::U64(v) => out.write_all(&v.to_le_bytes()),
        Value::I64(v) => out.write_all(&v.to_le_bytes()),
        Value::F32(v) => out.write_all(&v.to_le_bytes()),
        Value::F64(v) => out.write_all(&v.to_le_bytes()),
        Value::Bool(v) => out.write_all(&[u8::from(*v)]),
        Value::String(s) => write_string(out, s),
        Value::Array(elem_type, items) => {
            out.write_all(&elem_type.id().to_le_bytes())?;
            out.write_all(&(items.len() as u64).to_le_bytes())?;
            // A nested array element is encoded like a top-level array value
            // (its own element type and count), which is what write_value emits.
            for item in items {
                write_value(out, item)?;
            }
            Ok(())
        }
    }
}

fn pad_to<W: Write>(out: &mut CountingWriter<W>, alignment: u64) -> io::Result<()> {
    let target = padded(out.written, alignment)?;
    const ZEROS: [u8; 64] = [0; 64];
    let mut missing = target - out.written;
    while missing > 0 {
        let chunk = missing.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..chunk])?;
        missing -= chunk as u64;
    }
    Ok(())
}

/// Tracks how many bytes went out, for alignment padding.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
