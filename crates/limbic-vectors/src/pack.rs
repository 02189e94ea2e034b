//! Vector packs: a directory with `pack.toml` and one control-vector file per emotion.
//!
//! ```toml
//! limbic_version = "0.1.0"
//! prompts_hash = "sha256:…"            # hash of the prompt set the vectors came from
//!
//! [model]
//! name = "SmolLM2-135M-Instruct"
//! sha256 = "…64 hex digits…"           # of the model GGUF file
//! arch = "llama"
//! n_embd = 576
//! n_layer = 30
//!
//! [emotions.desperation]
//! file = "desperation.gguf"
//! layers = [14, 18]                    # chosen taps: 0-based block index = l_out-<L>
//! pooling = "mean"
//! sign = 1                             # +1: higher projection = more of the emotion
//! method = "diff_of_means"             # or "pca"
//! calibration = [{ layer = 14, mean = 0.12, std = 0.8 }, { layer = 18, mean = -0.3, std = 1.1 }]
//! selection = [{ layer = 14, cv_auroc = 0.93, perm_auroc = 0.51 }, …]   # evidence, any layers
//!
//! [signature.weights]                  # optional: combined stress signature
//! desperation = 1.0
//! calm = -0.5
//! ```
//!
//! The direction for emotion `E` at layer `L` is `direction.L` in `E`'s file (see
//! [`crate::cvec`] for why the numbers coincide with llama.cpp's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cvec::{ControlVector, CvecError};
use crate::select::{LayerReport, Method};

/// File name of the manifest inside a pack directory.
pub const MANIFEST_FILE: &str = "pack.toml";
/// Version of this crate, for [`PackManifest::limbic_version`].
pub const LIMBIC_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The model a pack was built for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    /// Lower-case hex SHA-256 of the model file.
    pub sha256: String,
    /// `general.architecture` of the model, e.g. "llama".
    pub arch: String,
    pub n_embd: u32,
    pub n_layer: u32,
}

/// How token activations of a step are pooled into one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Mean,
}

/// Projection statistics of one layer's direction on the neutral corpus, used to
/// turn raw projections into z-scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub layer: u32,
    // f64 so the manifest shows short decimals rather than widened-f32 noise.
    pub mean: f64,
    pub std: f64,
}

impl Calibration {
    /// `(projection - mean) / std`.
    pub fn z_score(&self, projection: f32) -> f32 {
        ((f64::from(projection) - self.mean) / self.std) as f32
    }
}

/// One emotion's entry in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmotionEntry {
    /// Control-vector file name inside the pack directory (no directories).
    pub file: String,
    /// Chosen tap layers (0-based block index, `l_out-<L>`), each >= 1.
    pub layers: Vec<u32>,
    pub pooling: Pooling,
    /// +1 if a higher projection means more of the emotion, -1 if less.
    pub sign: i8,
    pub method: Method,
    /// One entry per chosen layer.
    pub calibration: Vec<Calibration>,
    /// Layer-selection evidence (may cover more layers than were chosen).
    #[serde(default)]
    pub selection: Vec<LayerReport>,
}

impl EmotionEntry {
    pub fn calibration_for(&self, layer: u32) -> Option<&Calibration> {
        self.calibration.iter().find(|c| c.layer == layer)
    }
}

/// Weights of the combined stress signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Emotion name → weight; calm-like emotions get negative weights.
    pub weights: BTreeMap<String, f64>,
}

/// Contents of `pack.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    pub limbic_version: String,
    pub prompts_hash: String,
    pub model: ModelInfo,
    pub emotions: BTreeMap<String, EmotionEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid TOML: {message}", .path.display())]
    Toml { path: PathBuf, message: String },
    #[error(transparent)]
    Cvec(#[from] CvecError),
    /// The manifest or a vector file is inconsistent.
    #[error("{}: {problem}", .path.display())]
    Invalid { path: PathBuf, problem: String },
    /// The pack was built for a different model than the one loaded.
    #[error(
        "vector pack {} belongs to model '{pack_model}' (sha256 {pack_sha256_prefix}…, n_embd {pack_n_embd}), \
         but the loaded model has sha256 {given_sha256_prefix}…, n_embd {given_n_embd}; \
         use a pack built for this model or rebuild the vectors",
        .pack_dir.display()
    )]
    ModelMismatch {
        pack_dir: PathBuf,
        pack_model: String,
        pack_sha256_prefix: String,
        pack_n_embd: u32,
        given_sha256_prefix: String,
        given_n_embd: u32,
    },
}

/// A loaded, validated pack.
#[derive(Clone, Debug, PartialEq)]
pub struct Pack {
    dir: PathBuf,
    manifest: PackManifest,
    vectors: BTreeMap<String, ControlVector>,
}

impl Pack {
    /// Build a pack in memory (e.g. after computing vectors), validating it as
    /// [`Pack::load`] would. `vectors` maps emotion name → vector.
    pub fn new(
        manifest: PackManifest,
        vectors: BTreeMap<String, ControlVector>,
    ) -> Result<Self, PackError> {
        let pack = Self {
            dir: PathBuf::new(),
            manifest,
            vectors,
        };
        pack.validate(Path::new(MANIFEST_FILE))?;
        Ok(pack)
    }

    /// Load `dir/pack.toml` and every emotion's vector file, and check that they agree.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, PackError> {
        let dir = dir.as_ref();
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| PackError::Io {
            path: manifest_path.clone(),
            action: "cannot read pack manifest",
            source,
        })?;
        let manifest: PackManifest = toml::from_str(&text).map_err(|e| PackError::Toml {
            path: manifest_path.clone(),
            message: e.to_string(),
        })?;
        // Check file names before touching the file system with them.
        validate_file_names(&manifest, &manifest_path)?;
        let mut vectors = BTreeMap::new();
        for (emotion, entry) in &manifest.emotions {
            let vector = ControlVector::read(dir.join(&entry.file))?;
            vectors.insert(emotion.clone(), vector);
        }
        let pack = Self {
            dir: dir.to_path_buf(),
            manifest,
            vectors,
        };
        pack.validate(&manifest_path)?;
        Ok(pack)
    }

    /// Write every vector file and then `pack.toml` into `dir` (created if missing).
    /// The manifest goes last, so an interrupted save never leaves a manifest that
    /// points at files from a different save.
    pub fn save(&mut self, dir: impl AsRef<Path>) -> Result<(), PackError> {
        let dir = dir.as_ref();
        let manifest_path = dir.join(MANIFEST_FILE);
        self.validate(&manifest_path)?;
        std::fs::create_dir_all(dir).map_err(|source| PackError::Io {
            path: dir.to_path_buf(),
            action: "cannot create pack directory",
            source,
        })?;
        for (emotion, entry) in &self.manifest.emotions {
            // validate() guarantees every emotion has a vector.
            if let Some(vector) = self.vectors.get(emotion) {
                vector.write(dir.join(&entry.file))?;
            }
        }
        let text = toml::to_string_pretty(&self.manifest).map_err(|e| PackError::Toml {
            path: manifest_path.clone(),
            message: e.to_string(),
        })?;
        write_atomically(&manifest_path, text.as_bytes())?;
        self.dir = dir.to_path_buf();
        Ok(())
    }

    /// Refuse to run against a model the pack was not built for.
    pub fn check_model(&self, sha256: &str, n_embd: u32) -> Result<(), PackError> {
        let model = &self.manifest.model;
        let given = sha256.trim().to_ascii_lowercase();
        if given == model.sha256.to_ascii_lowercase() && n_embd == model.n_embd {
            return Ok(());
        }
        Err(PackError::ModelMismatch {
            pack_dir: self.dir.clone(),
            pack_model: model.name.clone(),
            pack_sha256_prefix: prefix(&model.sha256),
            pack_n_embd: model.n_embd,
            given_sha256_prefix: prefix(&given),
            given_n_embd: n_embd,
        })
    }

    /// Directory the pack was loaded from or last saved to (empty for [`Pack::new`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &PackManifest {
        &self.manifest
    }

    pub fn model(&self) -> &ModelInfo {
        &self.manifest.model
    }

    /// Emotion names in sorted order.
    pub fn emotions(&self) -> impl Iterator<Item = &str> {
        self.manifest.emotions.keys().map(String::as_str)
    }

    pub fn emotion(&self, name: &str) -> Option<&EmotionEntry> {
        self.manifest.emotions.get(name)
    }

    pub fn vector(&self, emotion: &str) -> Option<&ControlVector> {
        self.vectors.get(emotion)
    }

    /// The direction of `emotion` at tap `layer`.
    pub fn direction(&self, emotion: &str, layer: u32) -> Option<&[f32]> {
        self.vectors.get(emotion)?.direction(layer)
    }

    pub fn signature(&self) -> Option<&Signature> {
        self.manifest.signature.as_ref()
    }

    fn validate(&self, manifest_path: &Path) -> Result<(), PackError> {
        let manifest = &self.manifest;
        let invalid = |problem: String| PackError::Invalid {
            path: manifest_path.to_path_buf(),
            problem,
        };
        let model = &manifest.model;
        if model.sha256.len() != 64 || !model.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "model.sha256 must be 64 hex digits, got '{}'",
                model.sha256
            )));
        }
        if model.n_embd == 0 || model.n_layer < 2 {
            return Err(invalid(format!(
                "model.n_embd ({}) must be > 0 and model.n_layer ({}) >= 2",
                model.n_embd, model.n_layer
            )));
        }
        if manifest.emotions.is_empty() {
            return Err(invalid("no [emotions.<name>] entries".to_owned()));
        }
        validate_file_names(manifest, manifest_path)?;

        for (emotion, entry) in &manifest.emotions {
            let at = |problem: String| invalid(format!("emotion '{emotion}': {problem}"));
            if entry.sign != 1 && entry.sign != -1 {
                return Err(at(format!("sign must be 1 or -1, got {}", entry.sign)));
            }
            if entry.layers.is_empty() {
                return Err(at("no layers chosen".to_owned()));
            }
            let vector = self
                .vectors
                .get(emotion)
                .ok_or_else(|| at("no control vector loaded".to_owned()))?;
            if vector.n_embd != model.n_embd {
                return Err(at(format!(
                    "{} has n_embd {} but the pack's model has n_embd {}",
                    entry.file, vector.n_embd, model.n_embd
                )));
            }
            if !vector.model_hint.is_empty() && vector.model_hint != model.arch {
                return Err(at(format!(
                    "{} was made for architecture '{}' but the pack's model is '{}'",
                    entry.file, vector.model_hint, model.arch
                )));
            }
            for (i, &layer) in entry.layers.iter().enumerate() {
                if layer == 0 || layer >= model.n_layer {
                    return Err(at(format!(
                        "layer {layer} is outside 1..={} (layer 0 cannot be steered; the model has {} layers)",
                        model.n_layer - 1,
                        model.n_layer
                    )));
                }
                if entry.layers[..i].contains(&layer) {
                    return Err(at(format!("layer {layer} is listed twice")));
                }
                if vector.direction(layer).is_none() {
                    return Err(at(format!(
                        "{} has no direction.{layer} for chosen layer {layer}",
                        entry.file
                    )));
                }
                let calibration = entry
                    .calibration_for(layer)
                    .ok_or_else(|| at(format!("no calibration for chosen layer {layer}")))?;
                let usable = calibration.mean.is_finite()
                    && calibration.std.is_finite()
                    && calibration.std > 0.0;
                if !usable {
                    return Err(at(format!(
                        "calibration for layer {layer} needs a finite mean and a positive std, got mean {} std {}",
                        calibration.mean, calibration.std
                    )));
                }
            }
            for report in &entry.selection {
                let ok = |v: f64| (0.0..=1.0).contains(&v);
                if !ok(report.cv_auroc) || !ok(report.perm_auroc) {
                    return Err(at(format!(
                        "selection evidence for layer {} has AUROCs outside [0, 1]",
                        report.layer
                    )));
                }
            }
        }
        if let Some(signature) = &manifest.signature {
            for (emotion, weight) in &signature.weights {
                if !manifest.emotions.contains_key(emotion) {
                    return Err(invalid(format!(
                        "signature weight for '{emotion}', which is not an emotion of this pack"
                    )));
                }
                if !weight.is_finite() {
                    return Err(invalid(format!(
                        "signature weight for '{emotion}' is not finite"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// File names must be plain names inside the pack directory: a manifest must not
/// be able to point limbic at arbitrary files (`../..`, absolute paths).
fn validate_file_names(manifest: &PackManifest, manifest_path: &Path) -> Result<(), PackError> {
    let mut seen = BTreeMap::new();
    for (emotion, entry) in &manifest.emotions {
        let name = entry.file.as_str();
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\'])
            && name != MANIFEST_FILE;
        if !plain {
            return Err(PackError::Invalid {
                path: manifest_path.to_path_buf(),
                problem: format!(
                    "emotion '{emotion}': file '{name}' must be a plain file name inside the pack directory"
                ),
            });
        }
        if let Some(other) = seen.insert(name, emotion) {
            return Err(PackError::Invalid {
                path: manifest_path.to_path_buf(),
                problem: format!("emotions '{other}' and '{emotion}' both use file '{name}'"),
            });
        }
    }
    Ok(())
}

fn prefix(sha256: &str) -> String {
    sha256.chars().take(12).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PackError> {
    let io = |action, source| PackError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".limbic-pack-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io("cannot create a temporary file next to it", e))?;
    use std::io::Write;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io("cannot write temporary file", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io("cannot set permissions on temporary file", e))?;
    }
    temp.persist(path)
        .map_err(|e| io("cannot rename temporary file into place", e.error))?;
    Ok(())
}
