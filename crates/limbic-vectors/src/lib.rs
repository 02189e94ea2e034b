//! Emotion control vectors for limbic.
//!
//! * [`cvec`] — llama.cpp control-vector GGUF files ([`ControlVector`]), including the
//!   exact layer-numbering convention shared with llama.cpp.
//! * [`pack`] — vector packs: `pack.toml` plus one control vector per emotion, tied
//!   to one model by its SHA-256 ([`Pack`]).
//! * [`math`] — direction math (difference of means, principal components,
//!   projecting out a basis) and rank statistics (AUROC, bootstrap CI, permutation).
//! * [`select`] — cross-validated layer selection with a label-permutation control.
//! * [`eval`] — AUROC tables and PNG plots.

#![forbid(unsafe_code)]

pub mod cvec;
pub mod eval;
pub mod math;
pub mod pack;
pub mod select;

pub use cvec::{ControlVector, CvecError};
pub use eval::{
    auroc_table, plot_auroc_png, AurocCell, AurocTable, EvalConfig, EvalError, StepScores,
};
pub use pack::{
    Calibration, EmotionEntry, ModelInfo, Pack, PackError, PackManifest, Pooling, Signature,
};
pub use select::{
    choose_layers, cross_validate, cross_validate_layer, fit_direction, CvConfig, LayerData,
    LayerReport, Method, SelectError,
};
