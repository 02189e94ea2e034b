//! The single error type of the crate.
//!
//! Every variant carries the indices/values needed to locate the problem,
//! because the crate cannot allocate a formatted message itself.

use core::fmt;

/// Everything that can go wrong in `limbic-probe`. No function of this crate
/// panics on bad input; it returns one of these instead.
// Variant fields are named for what they hold (probe index, layer, ...) and
// explained by the variant's doc; documenting each one would only repeat it.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProbeError {
    /// `n_embd` given to [`crate::ProbeSet::new`] was zero.
    ZeroEmbeddingWidth,
    /// The number of emotions is 0 or above [`crate::MAX_EMOTIONS`].
    EmotionCount { count: usize, max: usize },
    /// A probe refers to an emotion index outside `0..n_emotions`.
    EmotionIndexOutOfRange {
        probe: usize,
        emotion: usize,
        n_emotions: usize,
    },
    /// More probes than [`crate::MAX_PROBES`] were supplied.
    TooManyProbes { max: usize },
    /// Two probes share the same (emotion, layer) pair; one would be counted twice.
    DuplicateProbe {
        probe: usize,
        emotion: usize,
        layer: u32,
    },
    /// A probe direction does not have `n_embd` components.
    DirectionLength {
        probe: usize,
        expected: usize,
        actual: usize,
    },
    /// A probe direction contains NaN or an infinity.
    NonFiniteDirection { probe: usize },
    /// A probe direction is not unit-norm (within [`crate::UNIT_NORM_TOLERANCE`]).
    DirectionNotUnitNorm { probe: usize, norm_squared: f32 },
    /// A probe's calibration mean is NaN or infinite.
    NonFiniteCalibrationMean { probe: usize },
    /// A probe's calibration std is not a finite value > 0.
    NonPositiveStd { probe: usize, std: f32 },
    /// A residual row does not have `n_embd` components.
    RowLength {
        layer: u32,
        expected: usize,
        actual: usize,
    },
    /// A residual row projected to NaN/inf (it contains NaN/inf, or overflowed).
    /// The row — and, in the accumulator, the whole token — is discarded.
    NonFiniteRow { layer: u32 },
    /// The same layer was fed twice for one token.
    DuplicateLayer { layer: u32 },
    /// A [`crate::StepAccumulator`] was used with a different probe set than
    /// the one it was built for.
    ProbeSetMismatch,
    /// A weight or score value is NaN or infinite.
    NonFiniteValue { field: &'static str, index: usize },
    /// A slice of per-emotion values is empty or longer than [`crate::MAX_EMOTIONS`].
    TooManyValues {
        field: &'static str,
        count: usize,
        max: usize,
    },
    /// A signature handed to the tracker is NaN or infinite; the step is ignored.
    NonFiniteSignature,
    /// A [`crate::TrackerConfig`] field is out of range.
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroEmbeddingWidth => write!(f, "probe set: n_embd must be > 0"),
            Self::EmotionCount { count, max } => {
                write!(f, "probe set: emotion count {count} must be in 1..={max}")
            }
            Self::EmotionIndexOutOfRange {
                probe,
                emotion,
                n_emotions,
            } => write!(
                f,
                "probe {probe}: emotion index {emotion} out of range (set has {n_emotions} emotions)"
            ),
            Self::TooManyProbes { max } => write!(f, "probe set: more than {max} probes"),
            Self::DuplicateProbe {
                probe,
                emotion,
                layer,
            } => write!(
                f,
                "probe {probe}: emotion {emotion} already has a probe on layer {layer}"
            ),
            Self::DirectionLength {
                probe,
                expected,
                actual,
            } => write!(
                f,
                "probe {probe}: direction has {actual} components, expected n_embd = {expected}"
            ),
            Self::NonFiniteDirection { probe } => {
                write!(f, "probe {probe}: direction contains NaN or infinity")
            }
            Self::DirectionNotUnitNorm {
                probe,
                norm_squared,
            } => write!(
                f,
                "probe {probe}: direction is not unit-norm (squared norm {norm_squared})"
            ),
            Self::NonFiniteCalibrationMean { probe } => {
                write!(f, "probe {probe}: calibration mean is NaN or infinite")
            }
            Self::NonPositiveStd { probe, std } => write!(
                f,
                "probe {probe}: calibration std must be finite and > 0, got {std}"
            ),
            Self::RowLength {
                layer,
                expected,
                actual,
            } => write!(
                f,
                "layer {layer}: residual row has {actual} values, expected n_embd = {expected}"
            ),
            Self::NonFiniteRow { layer } => write!(
                f,
                "layer {layer}: residual row contains NaN/infinity or overflowed; token discarded"
            ),
            Self::DuplicateLayer { layer } => {
                write!(f, "layer {layer} fed twice for the same token")
            }
            Self::ProbeSetMismatch => write!(
                f,
                "step accumulator used with a different probe set than it was built for"
            ),
            Self::NonFiniteValue { field, index } => {
                write!(f, "{field}[{index}] is NaN or infinite")
            }
            Self::TooManyValues { field, count, max } => {
                write!(f, "{field}: {count} values, expected 1..={max}")
            }
            Self::NonFiniteSignature => {
                write!(f, "stress signature is NaN or infinite; step ignored")
            }
            Self::InvalidConfig { field, reason } => {
                write!(f, "tracker config field `{field}`: {reason}")
            }
        }
    }
}

impl core::error::Error for ProbeError {}
