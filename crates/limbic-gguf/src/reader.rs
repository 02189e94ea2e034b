//! Strict GGUF reader: header, metadata and tensor infos are parsed through a
//! buffered reader; tensor data is only read on request.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::half::{bf16_to_f32, f16_to_f32};
use crate::types::{GgmlType, Value, ValueType};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Longest string (key, value or tensor name) accepted; real chat templates are < 1 MiB.
pub const MAX_STRING_LEN: u64 = 16 << 20;
/// Most elements in one metadata array (vocabularies are a few hundred thousand).
pub const MAX_ARRAY_LEN: u64 = 1 << 26;
/// Deepest nesting of arrays inside arrays (bounds recursion on hostile input).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most tensors in one file.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata entries in one file.
pub const MAX_METADATA_ENTRIES: u64 = 1 << 20;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// ggml's GGML_MAX_NAME is 64 including the NUL terminator.
pub const MAX_TENSOR_NAME_LEN: usize = 63;

// Smallest possible encodings, used to reject counts the rest of the file cannot hold.
const MIN_METADATA_ENTRY_BYTES: u64 = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;
// Vec capacity reserved up front from an untrusted count; larger collections grow as read.
const MAX_PREALLOCATED_ITEMS: u64 = 4096;

/// One tensor's entry in the tensor-info table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    n_elements: u64,
}

impl TensorInfo {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions in ggml order: `dims()[0]` is the contiguous (fastest) one.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the data relative to the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Size of the data in bytes (unpadded), or `None` when the type's layout is unknown.
    pub fn byte_size(&self) -> Option<u64> {
        let layout = self.ggml_type.layout()?;
        // Cannot overflow for parsed tensors: checked against the file length at open.
        (self.n_elements / layout.block_elements).checked_mul(layout.block_bytes)
    }
}

#[derive(Debug)]
enum Source {
    File,
    Memory(Vec<u8>),
}

/// A parsed GGUF file: header, metadata and tensor infos; tensor data stays on disk.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: u64,
    file_len: u64,
    source: Source,
}

impl GgufFile {
    /// Parse the header, metadata and tensor infos of the file at `path` and check
    /// that every tensor's data lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_error = |action, source| GgufError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let file = File::open(path).map_err(|e| io_error("cannot open", e))?;
        let file_len = file
            .metadata()
            .map_err(|e| io_error("cannot stat", e))?
            .len();
        let reader = BufReader::with_capacity(64 * 1024, file);
        Self::parse(reader, file_len, path.to_path_buf(), Source::File)
    }

    /// Parse a GGUF image held in memory; `label` stands in for the path in errors.
    pub fn from_bytes(label: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let len = bytes.len() as u64;
        let parsed = Self::parse(&bytes[..], len, label.into(), Source::File)?;
        Ok(Self {
            source: Source::Memory(bytes),
            ..parsed
        })
    }

    fn parse<R: Read>(reader: R, file_len: u64, path: PathBuf, source: Source) -> Result<Self> {
        let mut cursor = Cursor {
            inner: reader,
            pos: 0,
            len: file_len,
            path: &path,
        };

        let magic: [u8; 4] = cursor.array()?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                path: path.clone(),
                found: magic,
            });
        }
        let version = cursor.u32()?;
        if version != 2 && version != 3 {
            let hint = if version == 1 {
                " (GGUF v1 used 32-bit counts; re-convert the file)"
            } else if matches!(version.swap_bytes(), 2 | 3) {
                " (the file looks big-endian; only little-endian GGUF is supported)"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion {
                path: path.clone(),
                version,
                hint,
            });
        }

        let tensor_count = cursor.u64()?;
        let metadata_count = cursor.u64()?;
        cursor.check_count("tensor", tensor_count, MAX_TENSORS, MIN_TENSOR_INFO_BYTES)?;
        cursor.check_count(
            "metadata entry",
            metadata_count,
            MAX_METADATA_ENTRIES,
            MIN_METADATA_ENTRY_BYTES,
        )?;

        let mut metadata = Vec::with_capacity(preallocation(metadata_count));
        let mut metadata_index = HashMap::with_capacity(preallocation(metadata_count));
        for _ in 0..metadata_count {
            let key = cursor.utf8_string("metadata key")?;
            let type_id = cursor.u32()?;
            let value_type = ValueType::from_id(type_id).ok_or_else(|| {
                cursor.malformed(format!(
                    "metadata key '{key}' has unknown value type {type_id}"
                ))
            })?;
            let value = cursor.value(value_type, 0, &key)?;
            if metadata_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(cursor.malformed(format!("duplicate metadata key '{key}'")));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_index.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(&index) => {
                let value = &metadata[index].1;
                match value.as_u32() {
                    Some(a) if a.is_power_of_two() => u64::from(a),
                    _ => {
                        return Err(GgufError::Metadata {
                            path: path.clone(),
                            key: ALIGNMENT_KEY.to_owned(),
                            problem: format!(
                                "must be a non-zero power of two that fits in u32, got {value:?}"
                            ),
                        })
                    }
                }
            }
        };

        let mut tensors = Vec::with_capacity(preallocation(tensor_count));
        let mut tensor_index = HashMap::with_capacity(preallocation(tensor_count));
        for _ in 0..tensor_count {
            let info = cursor.tensor_info(alignment)?;
            if tensor_index
                .insert(info.name.clone(), tensors.len())
                .is_some()
            {
                return Err(cursor.malformed(format!("duplicate tensor name '{}'", info.name)));
            }
            tensors.push(info);
        }

        let data_start = align_up(cursor.pos, alignment)
            .ok_or_else(|| cursor.malformed("data section offset overflows u64".to_owned()))?;

        for info in &tensors {
            let start = data_start.checked_add(info.offset);
            // The padded size is required: ggml's non-mmap loader (used by llama.cpp for
            // control vectors) reads every tensor including its trailing alignment padding.
            let end = match info.byte_size() {
                Some(size) => start.and_then(|s| align_up(size, alignment)?.checked_add(s)),
                // Unknown type (newer ggml): only the start can be checked.
                None => start,
            };
            match end {
                Some(end) if end <= file_len => {}
                Some(end) => {
                    return Err(GgufError::Truncated {
                        path: path.clone(),
                        need: end,
                        have: file_len,
                    })
                }
                None => {
                    return Err(cursor
                        .malformed(format!("tensor '{}' data range overflows u64", info.name)))
                }
            }
        }

        Ok(Self {
            path,
            version,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            alignment,
            data_start,
            file_len,
            source,
        })
    }

    /// The path given to [`GgufFile::open`] (or the label given to [`GgufFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where tensor data begins.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The value stored under `key`.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All metadata entries in file order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `key` as a string; `None` if absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata(key).and_then(Value::as_str)
    }

    /// `key` as a u32, accepting any integer width whose value fits.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.metadata(key).and_then(Value::as_u32)
    }

    /// `key` as a u64, accepting any non-negative integer.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.metadata(key).and_then(Value::as_u64)
    }

    /// Like [`GgufFile::get_str`] but says why the value is unusable.
    pub fn require_str(&self, key: &str) -> Result<&str> {
        let value = self.require(key)?;
        value
            .as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", value))
    }

    /// Like [`GgufFile::get_u32`] but says why the value is unusable.
    pub fn require_u32(&self, key: &str) -> Result<u32> {
        let value = self.require(key)?;
        value
            .as_u32()
            .ok_or_else(|| self.wrong_type(key, "an integer in u32 range", value))
    }

    /// Like [`GgufFile::get_u64`] but says why the value is unusable.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        let value = self.require(key)?;
        value
            .as_u64()
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", value))
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.metadata(key).ok_or_else(|| GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_owned(),
            problem: "missing".to_owned(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> GgufError {
        let shown = match got {
            // Arrays can be huge; the type is enough.
            Value::Array(elem, items) => format!("array of {} {elem}", items.len()),
            other => format!("{other:?}"),
        };
        GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_owned(),
            problem: format!("expected {expected}, found {shown}"),
        }
    }

    /// `general.architecture`, e.g. "llama" or "controlvector".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Read a tensor's data converted to f32 (F32, F16 and BF16 tensors).
    pub fn read_tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name).ok_or_else(|| GgufError::TensorNotFound {
            path: self.path.clone(),
            name: name.to_owned(),
        })?;
        let element_bytes: u64 = match info.ggml_type {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            other => {
                return Err(GgufError::UnsupportedTensorType {
                    path: self.path.clone(),
                    name: name.to_owned(),
                    ggml_type: other.to_string(),
                })
            }
        };
        // Both are bounded by the file length, checked at open.
        let start = self.data_start + info.offset;
        let byte_len = info.n_elements * element_bytes;
        let bytes = self.read_range(start, byte_len)?;
        Ok(match info.ggml_type {
            GgmlType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            GgmlType::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        })
    }

    fn read_range(&self, start: u64, len: u64) -> Result<Vec<u8>> {
        let end = start.saturating_add(len);
        let truncated = |have| GgufError::Truncated {
            path: self.path.clone(),
            need: end,
            have,
        };
        match &self.source {
            Source::Memory(bytes) => {
                let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
                range
                    .and_then(|(s, e)| bytes.get(s..e))
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| truncated(bytes.len() as u64))
            }
            Source::File => {
                let io_error = |action, source| GgufError::Io {
                    path: self.path.clone(),
                    action,
                    source,
                };
                let mut file = File::open(&self.path).map_err(|e| io_error("cannot open", e))?;
                // The file may have changed since it was parsed.
                let have = file
                    .metadata()
                    .map_err(|e| io_error("cannot stat", e))?
                    .len();
                if end > have {
                    return Err(truncated(have));
                }
                let len = usize::try_from(len).map_err(|_| GgufError::Malformed {
                    path: self.path.clone(),
                    problem: format!("tensor of {len} bytes does not fit in memory"),
                })?;
                file.seek(SeekFrom::Start(start))
                    .map_err(|e| io_error("cannot seek", e))?;
                let mut buf = vec![0u8; len];
                file.read_exact(&mut buf).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        truncated(have)
                    } else {
                        io_error("cannot read", e)
                    }
                })?;
                Ok(buf)
            }
        }
    }
}

/// Round `value` up to a multiple of `alignment` (a power of two); `None` on overflow.
pub(crate) fn align_up(value: u64, alignment: u64) -> Option<u64> {
    let mask = alignment - 1;
    value.checked_add(mask).map(|v| v & !mask)
}

fn preallocation(count: u64) -> usize {
    // Bounded by MAX_PREALLOCATED_ITEMS, so the cast cannot truncate.
    count.min(MAX_PREALLOCATED_ITEMS) as usize
}

/// Position-tracking reader that refuses to read past the known file length.
struct Cursor<'p, R> {
    inner: R,
    pos: u64,
    len: u64,
    path: &'p Path,
}

impl<R: Read> Cursor<'_, R> {
    fn malformed(&self, problem: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            problem,
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Fail with `Truncated` unless `n` more bytes exist.
    fn need(&self, n: u64) -> Result<()> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            end => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                need: end.unwrap_or(u64::MAX),
                have: self.len,
            }),
        }
    }

    /// Reject a count above `limit` or one whose smallest encoding cannot fit in the
    /// rest of the file, before anything is allocated for it.
    fn check_count(&self, what: &str, count: u64, limit: u64, min_bytes_each: u64) -> Result<()> {
        if count > limit {
            return Err(
                self.malformed(format!("{what} count {count} exceeds the limit of {limit}"))
            );
        }
        self.need(count.saturating_mul(min_bytes_each))
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        let n = buf.len() as u64;
        self.need(n)?;
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                // The file shrank while being read.
                GgufError::Truncated {
                    path: self.path.to_path_buf(),
                    need: self.pos.saturating_add(n),
                    have: self.len,
                }
            } else {
                GgufError::Io {
                    path: self.path.to_path_buf(),
                    action: "cannot read",
                    source: e,
                }
            }
        })?;
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn string_bytes(&mut self, what: &str) -> Result<Vec<u8>> {
        let len = self.u64()?;
        if len > MAX_STRING_LEN {
            return Err(self.malformed(format!(
                "{what}: string length {len} exceeds the limit of {MAX_STRING_LEN} bytes"
            )));
        }
        self.need(len)?;
        // len <= MAX_STRING_LEN, so the cast cannot truncate.
        let mut buf = vec![0u8; len as usize];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    /// Keys and tensor names must be valid UTF-8: they are looked up by name.
    fn utf8_string(&mut self, what: &str) -> Result<String> {
        let bytes = self.string_bytes(what)?;
        String::from_utf8(bytes).map_err(|e| {
            self.malformed(format!(
                "{what} is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }

    fn value(&mut self, value_type: ValueType, depth: usize, key: &str) -> Result<Value> {
        Ok(match value_type {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Bool => {
                let [byte] = self.array()?;
                match byte {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    other => {
                        return Err(self.malformed(format!(
                            "metadata key '{key}': bool byte is {other}, expected 0 or 1"
                        )))
                    }
                }
            }
            // String values are decoded leniently: some converters store byte-level
            // tokens that are not valid UTF-8, and one odd token should not make a
            // model unreadable.
            ValueType::String => {
                Value::String(String::from_utf8_lossy(&self.string_bytes(key)?).into_owned())
            }
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!(
                        "metadata key '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let type_id = self.u32()?;
                let elem_type = ValueType::from_id(type_id).ok_or_else(|| {
                    self.malformed(format!(
                        "metadata key '{key}': array has unknown element type {type_id}"
                    ))
                })?;
                let count = self.u64()?;
                if count > MAX_ARRAY_LEN {
                    return Err(self.malformed(format!(
                        "metadata key '{key}': array length {count} exceeds the limit of {MAX_ARRAY_LEN}"
                    )));
                }
                self.need(count.saturating_mul(elem_type.min_encoded_size()))?;
                let mut items = Vec::with_capacity(preallocation(count));
                for _ in 0..count {
                    items.push(self.value(elem_type, depth + 1, key)?);
                }
                Value::Array(elem_type, items)
            }
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let name = self.utf8_string("tensor name")?;
        if name.len() > MAX_TENSOR_NAME_LEN {
            return Err(self.malformed(format!(
                "tensor name '{name}' is {} bytes; ggml allows at most {MAX_TENSOR_NAME_LEN}",
                name.len()
            )));
        }
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(self.malformed(format!(
                "tensor '{name}' has {n_dims} dimensions; ggml allows 1 to {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for _ in 0..n_dims {
            let dim = self.u64()?;
            // ggml stores dimensions as int64_t.
            n_elements = n_elements
                .checked_mul(dim)
                .filter(|&n| i64::try_from(n).is_ok())
                .ok_or_else(|| {
                    self.malformed(format!("tensor '{name}' element count overflows int64"))
                })?;
            dims.push(dim);
        }
        let ggml_type = GgmlType(self.u32()?);
        let offset = self.u64()?;
        if offset % alignment != 0 {
            return Err(self.malformed(format!(
                "tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if let Some(layout) = ggml_type.layout() {
            if dims[0] % layout.block_elements != 0 {
                return Err(self.malformed(format!(
                    "tensor '{name}': first dimension {} is not a multiple of the {ggml_type} block size {}",
                    dims[0], layout.block_elements
                )));
            }
        }
        let info = TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
        };
        if ggml_type.layout().is_some() && info.byte_size().is_none() {
            return Err(self.malformed(format!("tensor '{}' byte size overflows u64", info.name)));
        }
        // A tensor this large cannot lie inside the file; say so before the data check.
        if let Some(size) = info.byte_size() {
            if size > self.remaining() {
                return Err(GgufError::Truncated {
                    path: self.path.to_path_buf(),
                    need: self.pos.saturating_add(size),
                    have: self.len,
                });
            }
        }
        Ok(info)
    }
}
