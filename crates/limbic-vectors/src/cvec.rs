//! llama.cpp control-vector files.
//!
//! A control vector is a GGUF file with `general.architecture = "controlvector"`,
//! `controlvector.model_hint` (the target model's architecture, e.g. "llama"),
//! `controlvector.layer_count`, and one 1-D F32 tensor `direction.N` per layer.
//!
//! # Layer numbering (matches llama.cpp exactly)
//!
//! **limbic layer `L` — the 0-based transformer block index whose output llama.cpp
//! names `l_out-L` — is stored as `direction.L`, with no offset.** `L = 0` cannot be
//! stored: llama.cpp rejects `direction.0` and never steers block 0's output.
//!
//! How llama.cpp gets there: `common_control_vector_load_one` (common/common.cpp)
//! parses `direction.N`, rejects `N == 0`, and stores the tensor at
//! `data[(N - 1) * n_embd]`; `llama_adapter_cvec::apply` (src/llama-adapter.cpp)
//! copies `data[(il - 1) * n_embd]` into `tensors[il]` for `il` in `1..n_layer`; and
//! every model graph calls `build_cvec(cur, il)` → `apply_to(cur, il)` (adds
//! `tensors[il]`) right before naming the block output `cb(cur, "l_out", il)`. So
//! `direction.N` is added to the output of block `N`, exactly where limbic taps
//! `l_out-N`: a vector measured at a tap steers at that same point. Valid layers are
//! `1..=n_layer - 1`; llama.cpp ignores `direction.N` for `N >= n_layer`.
//!
//! Note: llama.cpp's own `cvector-generator` derives `direction.{i+1}` from the
//! activations of `l_out-i`, i.e. its files steer one block later than where they
//! were measured. limbic does not copy that shift.
//!
//! llama.cpp accepts only F32 direction tensors; limbic writes F32 and also reads
//! F16/BF16 files for convenience.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use limbic_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};

/// `general.architecture` of every control-vector file.
pub const ARCHITECTURE: &str = "controlvector";
pub const MODEL_HINT_KEY: &str = "controlvector.model_hint";
pub const LAYER_COUNT_KEY: &str = "controlvector.layer_count";
const TENSOR_PREFIX: &str = "direction.";

#[derive(Debug, thiserror::Error)]
pub enum CvecError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The file parsed as GGUF but is not an acceptable control vector (or the
    /// in-memory vector cannot be written as one).
    #[error("{}: {problem}", .path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// One control vector: a direction per layer, all of length `n_embd`.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlVector {
    /// Architecture of the model the vector was made for (`controlvector.model_hint`).
    pub model_hint: String,
    pub n_embd: u32,
    /// Layer as in the file (`direction.<layer>`), which is the 0-based block index
    /// of the `l_out` tap; see the module docs. Never 0.
    pub directions: BTreeMap<u32, Vec<f32>>,
}

impl ControlVector {
    pub fn new(model_hint: impl Into<String>, n_embd: u32) -> Self {
        Self {
            model_hint: model_hint.into(),
            n_embd,
            directions: BTreeMap::new(),
        }
    }

    pub fn direction(&self, layer: u32) -> Option<&[f32]> {
        self.directions.get(&layer).map(Vec::as_slice)
    }

    /// Read and validate a control-vector file.
    ///
    /// Rejects: a missing or different `general.architecture`, tensors not named
    /// `direction.<N>` with `N >= 1`, two tensors for the same layer, non-float
    /// tensors, tensors that are not 1-D, tensors of different lengths, non-finite
    /// values, and files without any direction.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, CvecError> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        let invalid = |problem: String| CvecError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        match file.architecture() {
            Some(ARCHITECTURE) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "general.architecture is '{other}', not '{ARCHITECTURE}': this is not a control vector"
                )))
            }
            None => {
                return Err(invalid(format!(
                    "missing general.architecture (a control vector has '{ARCHITECTURE}')"
                )))
            }
        }
        // llama.cpp ignores the hint; files from other tools may lack it.
        let model_hint = match file.metadata(MODEL_HINT_KEY) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(invalid(format!(
                    "{MODEL_HINT_KEY} must be a string, found {}",
                    other.value_type()
                )))
            }
        };

        let mut directions = BTreeMap::new();
        let mut n_embd: Option<(u64, String)> = None;
        for info in file.tensors() {
            let name = info.name();
            let layer = parse_layer(name).ok_or_else(|| {
                invalid(format!(
                    "tensor '{name}' is not named direction.<layer> with layer >= 1 \
                     (llama.cpp never steers layer 0)"
                ))
            })?;
            if !matches!(
                info.ggml_type(),
                GgmlType::F32 | GgmlType::F16 | GgmlType::BF16
            ) {
                return Err(invalid(format!(
                    "tensor '{name}' has type {}; directions must be F32 (or F16/BF16)",
                    info.ggml_type()
                )));
            }
            if info.dims().iter().skip(1).any(|&d| d != 1) {
                return Err(invalid(format!(
                    "tensor '{name}' has shape {:?}; a direction is 1-D",
                    info.dims()
                )));
            }
            let len = info.dims()[0];
            match &n_embd {
                None => n_embd = Some((len, name.to_owned())),
                Some((expected, first)) if *expected != len => {
                    return Err(invalid(format!(
                        "tensor '{name}' has {len} values but '{first}' has {expected}; \
                         all directions must have the model's n_embd"
                    )))
                }
                Some(_) => {}
            }
            let values = file.read_tensor_f32(name)?;
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(invalid(format!(
                    "tensor '{name}' has a non-finite value at index {i}"
                )));
            }
            if directions.insert(layer, values).is_some() {
                return Err(invalid(format!(
                    "two tensors target layer {layer} (llama.cpp would silently add them)"
                )));
            }
        }
        let Some((n_embd, _)) = n_embd else {
            return Err(invalid("contains no direction tensors".to_owned()));
        };
        let n_embd = u32::try_from(n_embd)
            .map_err(|_| invalid(format!("direction length {n_embd} does not fit in u32")))?;
        if n_embd == 0 {
            return Err(invalid("directions are empty (n_embd 0)".to_owned()));
        }
        Ok(Self {
            model_hint,
            n_embd,
            directions,
        })
    }

    /// Check the vector can be written as a file llama.cpp accepts.
    pub fn validate(&self, path: &Path) -> Result<(), CvecError> {
        let invalid = |problem: String| CvecError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if self.n_embd == 0 {
            return Err(invalid("n_embd is 0".to_owned()));
        }
        if self.directions.is_empty() {
            return Err(invalid("control vector has no directions".to_owned()));
        }
        for (&layer, values) in &self.directions {
            if layer == 0 {
                return Err(invalid(
                    "layer 0 cannot be stored: llama.cpp rejects direction.0 and never steers block 0"
                        .to_owned(),
                ));
            }
            if values.len() != self.n_embd as usize {
                return Err(invalid(format!(
                    "layer {layer} has {} values, expected n_embd {}",
                    values.len(),
                    self.n_embd
                )));
            }
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(invalid(format!(
                    "layer {layer} has a non-finite value at index {i}"
                )));
            }
        }
        Ok(())
    }

    /// Write the vector (F32 tensors, atomically) after [`ControlVector::validate`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), CvecError> {
        let path = path.as_ref();
        self.validate(path)?;
        let mut writer = GgufWriter::new();
        writer
            .set("general.architecture", ARCHITECTURE)
            .set(MODEL_HINT_KEY, self.model_hint.as_str())
            // The count of direction tensors, as other control-vector writers store it.
            .set(LAYER_COUNT_KEY, Value::U32(self.directions.len() as u32));
        for (layer, values) in &self.directions {
            writer.add_tensor_f32(
                format!("{TENSOR_PREFIX}{layer}"),
                &[u64::from(self.n_embd)],
                values.clone(),
            );
        }
        writer.write(path)?;
        Ok(())
    }
}

/// `direction.<N>` with N a plain decimal >= 1 (no sign, no trailing text).
fn parse_layer(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(TENSOR_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().filter(|&layer| layer >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_parse_strictly() {
        assert_eq!(parse_layer("direction.1"), Some(1));
        assert_eq!(parse_layer("direction.29"), Some(29));
        assert_eq!(parse_layer("direction.01"), Some(1));
        assert_eq!(parse_layer("direction.0"), None);
        assert_eq!(parse_layer("direction."), None);
        assert_eq!(parse_layer("direction.-1"), None);
        assert_eq!(parse_layer("direction.+1"), None);
        assert_eq!(parse_layer("direction.1a"), None);
        assert_eq!(parse_layer("directions.1"), None);
        assert_eq!(parse_layer("direction.99999999999"), None);
    }
}
