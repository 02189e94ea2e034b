//! Probes (emotion directions with calibration) and projection of residual rows.

use crate::{ProbeError, MAX_EMOTIONS, MAX_PROBES, UNIT_NORM_TOLERANCE};

/// One emotion direction read at one layer, with the calibration statistics
/// of its projection on neutral text (so that `z = (proj - mean) / std` is
/// ~N(0, 1) when nothing emotional is going on).
///
/// The direction is borrowed: the caller owns the `f32` data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe<'a> {
    /// Index into the caller's emotion list (`0..n_emotions`).
    pub emotion: usize,
    /// Layer whose residual stream this probe reads.
    pub layer: u32,
    /// Unit-norm direction with `n_embd` components.
    pub direction: &'a [f32],
    /// Calibration mean of `dot(row, direction)`.
    pub mean: f32,
    /// Calibration standard deviation of `dot(row, direction)`; must be > 0.
    pub std: f32,
}

/// One probe's reading of one residual row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeReading {
    /// Index of the probe in its [`ProbeSet`].
    pub probe: usize,
    /// The probe's emotion index.
    pub emotion: usize,
    /// Raw projection `dot(row, direction)`.
    pub projection: f32,
    /// Calibrated score `(projection - mean) / std`.
    pub z: f32,
}

/// Readings of every probe on one layer.
pub type LayerReadings = heapless::Vec<ProbeReading, MAX_PROBES>;

/// A validated, borrowed set of at most [`MAX_PROBES`] probes over
/// `n_emotions` emotions and residual rows of `n_embd` floats.
#[derive(Clone, Debug)]
pub struct ProbeSet<'a> {
    n_embd: usize,
    n_emotions: usize,
    probes: heapless::Vec<Probe<'a>, MAX_PROBES>,
}

impl<'a> ProbeSet<'a> {
    /// An empty set for rows of `n_embd` floats and emotions `0..n_emotions`.
    pub fn new(n_embd: usize, n_emotions: usize) -> Result<Self, ProbeError> {
        if n_embd == 0 {
            return Err(ProbeError::ZeroEmbeddingWidth);
        }
        if n_emotions == 0 || n_emotions > MAX_EMOTIONS {
            return Err(ProbeError::EmotionCount {
                count: n_emotions,
                max: MAX_EMOTIONS,
            });
        }
        Ok(Self {
            n_embd,
            n_emotions,
            probes: heapless::Vec::new(),
        })
    }

    /// Builds a set from a slice of probes, validating each (see [`Self::push`]).
    pub fn from_probes(
        n_embd: usize,
        n_emotions: usize,
        probes: &[Probe<'a>],
    ) -> Result<Self, ProbeError> {
        let mut set = Self::new(n_embd, n_emotions)?;
        for probe in probes {
            set.push(*probe)?;
        }
        Ok(set)
    }

    /// Validates and adds a probe; returns its index.
    ///
    /// Rejects: a full set, an emotion index out of range, a second probe for
    /// the same (emotion, layer), a direction of the wrong length, non-finite
    /// or not unit-norm, a non-finite mean, and a std that is not finite and > 0.
    pub fn push(&mut self, probe: Probe<'a>) -> Result<usize, ProbeError> {
        let index = self.probes.len();
        if self.probes.is_full() {
            return Err(ProbeError::TooManyProbes { max: MAX_PROBES });
        }
        if probe.emotion >= self.n_emotions {
            return Err(ProbeError::EmotionIndexOutOfRange {
                probe: index,
                emotion: probe.emotion,
                n_emotions: self.n_emotions,
            });
        }
        if self
            .probes
            .iter()
            .any(|p| p.emotion == probe.emotion && p.layer == probe.layer)
        {
            return Err(ProbeError::DuplicateProbe {
                probe: index,
                emotion: probe.emotion,
                layer: probe.layer,
            });
        }
        if probe.direction.len() != self.n_embd {
            return Err(ProbeError::DirectionLength {
                probe: index,
                expected: self.n_embd,
                actual: probe.direction.len(),
            });
        }
        if probe.direction.iter().any(|v| !v.is_finite()) {
            return Err(ProbeError::NonFiniteDirection { probe: index });
        }
        // Compare the squared norm so no sqrt (and no libm) is needed.
        let norm_squared = dot(probe.direction, probe.direction);
        let tolerance = 2.0 * UNIT_NORM_TOLERANCE;
        if !((1.0 - tolerance)..=(1.0 + tolerance)).contains(&norm_squared) {
            return Err(ProbeError::DirectionNotUnitNorm {
                probe: index,
                norm_squared,
            });
        }
        if !probe.mean.is_finite() {
            return Err(ProbeError::NonFiniteCalibrationMean { probe: index });
        }
        if !(probe.std.is_finite() && probe.std > 0.0) {
            return Err(ProbeError::NonPositiveStd {
                probe: index,
                std: probe.std,
            });
        }
        // Cannot fail: fullness was checked above.
        self.probes
            .push(probe)
            .map_err(|_| ProbeError::TooManyProbes { max: MAX_PROBES })?;
        Ok(index)
    }

    /// Width of the residual rows this set reads.
    pub fn n_embd(&self) -> usize {
        self.n_embd
    }

    /// Number of emotions the probe indices refer to.
    pub fn n_emotions(&self) -> usize {
        self.n_emotions
    }

    /// Number of probes.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether the set has no probes.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The probes, in insertion order (a probe's index is its position here).
    pub fn probes(&self) -> &[Probe<'a>] {
        &self.probes
    }

    /// Whether any probe reads `layer`.
    pub fn has_layer(&self, layer: u32) -> bool {
        self.probes.iter().any(|p| p.layer == layer)
    }

    /// Projects one residual row of `layer` onto every probe of that layer and
    /// calibrates it: `z = (dot(row, direction) - mean) / std`.
    ///
    /// The row length is always checked. A row whose projection is NaN or
    /// infinite for any probe (which any NaN/inf component guarantees) is
    /// **rejected** with [`ProbeError::NonFiniteRow`]; rows of layers without
    /// probes are only length-checked. Returns an empty list for such layers.
    pub fn project(&self, layer: u32, row: &[f32]) -> Result<LayerReadings, ProbeError> {
        if row.len() != self.n_embd {
            return Err(ProbeError::RowLength {
                layer,
                expected: self.n_embd,
                actual: row.len(),
            });
        }
        let mut readings = LayerReadings::new();
        for (index, probe) in self.probes.iter().enumerate() {
            if probe.layer != layer {
                continue;
            }
            let projection = dot(row, probe.direction);
            let z = (projection - probe.mean) / probe.std;
            if !z.is_finite() {
                return Err(ProbeError::NonFiniteRow { layer });
            }
            // Cannot overflow: at most MAX_PROBES probes exist.
            let _ = readings.push(ProbeReading {
                probe: index,
                emotion: probe.emotion,
                projection,
                z,
            });
        }
        Ok(readings)
    }
}

/// Number of independent partial sums in [`dot`]; 8 f32 lanes fill one AVX
/// register, and splitting the sum lets the compiler vectorise it (a single
/// serial f32 sum must keep its order and cannot be vectorised).
const DOT_LANES: usize = 8;

/// Dot product of two equally long slices (extra elements of the longer one
/// are ignored).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let chunks_a = a.chunks_exact(DOT_LANES);
    let chunks_b = b.chunks_exact(DOT_LANES);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f32; DOT_LANES];
    for (chunk_a, chunk_b) in chunks_a.zip(chunks_b) {
        for ((lane, x), y) in lanes.iter_mut().zip(chunk_a).zip(chunk_b) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    const E0: [f32; 4] = [1.0, 0.0, 0.0, 0.0];
    const E1: [f32; 4] = [0.0, 1.0, 0.0, 0.0];
    const DIAG: [f32; 4] = [0.5, 0.5, 0.5, 0.5];

    fn probe(emotion: usize, layer: u32, direction: &[f32], mean: f32, std: f32) -> Probe<'_> {
        Probe {
            emotion,
            layer,
            direction,
            mean,
            std,
        }
    }

    #[test]
    fn dot_matches_hand_computation_including_tail() {
        // 11 elements: one full chunk of 8 plus a tail of 3.
        let a: [f32; 11] = [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11.];
        let b: [f32; 11] = [1.; 11];
        assert_eq!(dot(&a, &b), 66.0);
        assert_eq!(dot(&a, &a), 506.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn project_computes_calibrated_z_for_the_layer_only() {
        let set = ProbeSet::from_probes(
            4,
            2,
            &[
                probe(0, 3, &DIAG, 1.0, 2.0),
                probe(1, 3, &E1, -1.0, 0.5),
                probe(1, 5, &E0, 0.0, 1.0),
            ],
        )
        .unwrap();
        let row = [2.0, 4.0, -1.0, 1.0];
        let readings = set.project(3, &row).unwrap();
        assert_eq!(readings.len(), 2);
        // DIAG: (2 + 4 - 1 + 1) * 0.5 = 3; z = (3 - 1) / 2 = 1.
        assert_eq!(readings[0].probe, 0);
        assert_eq!(readings[0].emotion, 0);
        assert_eq!(readings[0].projection, 3.0);
        assert_eq!(readings[0].z, 1.0);
        // E1: 4; z = (4 + 1) / 0.5 = 10.
        assert_eq!(readings[1].probe, 1);
        assert_eq!(readings[1].projection, 4.0);
        assert_eq!(readings[1].z, 10.0);
        // Layer 5 only has the E0 probe: z = 2.
        let layer5 = set.project(5, &row).unwrap();
        assert_eq!(layer5.len(), 1);
        assert_eq!(layer5[0].z, 2.0);
        // A layer without probes yields nothing.
        assert!(set.project(7, &row).unwrap().is_empty());
    }

    #[test]
    fn project_rejects_bad_rows() {
        let set = ProbeSet::from_probes(4, 1, &[probe(0, 1, &E0, 0.0, 1.0)]).unwrap();
        assert_eq!(
            set.project(1, &[1.0, 2.0]),
            Err(ProbeError::RowLength {
                layer: 1,
                expected: 4,
                actual: 2
            })
        );
        // NaN in a coordinate the direction ignores still poisons the dot (NaN * 0 = NaN).
        assert_eq!(
            set.project(1, &[1.0, f32::NAN, 0.0, 0.0]),
            Err(ProbeError::NonFiniteRow { layer: 1 })
        );
        assert_eq!(
            set.project(1, &[f32::INFINITY, 0.0, 0.0, 0.0]),
            Err(ProbeError::NonFiniteRow { layer: 1 })
        );
        // Finite row whose projection overflows after calibration.
        let tiny_std = ProbeSet::from_probes(4, 1, &[probe(0, 1, &E0, 0.0, 1e-30)]).unwrap();
        assert_eq!(
            tiny_std.project(1, &[1e10, 0.0, 0.0, 0.0]),
            Err(ProbeError::NonFiniteRow { layer: 1 })
        );
        // Rows of layers without probes are only length-checked.
        assert!(set.project(2, &[f32::NAN; 4]).unwrap().is_empty());
    }

    #[test]
    fn push_validates_every_field() {
        let mut set = ProbeSet::new(4, 2).unwrap();
        assert_eq!(set.push(probe(0, 1, &E0, 0.0, 1.0)), Ok(0));
        assert_eq!(
            set.push(probe(2, 1, &E0, 0.0, 1.0)),
            Err(ProbeError::EmotionIndexOutOfRange {
                probe: 1,
                emotion: 2,
                n_emotions: 2
            })
        );
        assert_eq!(
            set.push(probe(0, 1, &E1, 0.0, 1.0)),
            Err(ProbeError::DuplicateProbe {
                probe: 1,
                emotion: 0,
                layer: 1
            })
        );
        assert_eq!(
            set.push(probe(1, 1, &E0[..3], 0.0, 1.0)),
            Err(ProbeError::DirectionLength {
                probe: 1,
                expected: 4,
                actual: 3
            })
        );
        assert_eq!(
            set.push(probe(1, 1, &[f32::NAN, 0.0, 0.0, 0.0], 0.0, 1.0)),
            Err(ProbeError::NonFiniteDirection { probe: 1 })
        );
        assert_eq!(
            set.push(probe(1, 1, &[1.0, 1.0, 0.0, 0.0], 0.0, 1.0)),
            Err(ProbeError::DirectionNotUnitNorm {
                probe: 1,
                norm_squared: 2.0
            })
        );
        assert_eq!(
            set.push(probe(1, 1, &E1, f32::INFINITY, 1.0)),
            Err(ProbeError::NonFiniteCalibrationMean { probe: 1 })
        );
        for bad_std in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let err = set.push(probe(1, 1, &E1, 0.0, bad_std)).unwrap_err();
            assert!(matches!(err, ProbeError::NonPositiveStd { probe: 1, .. }));
        }
        // Nothing invalid was added; a valid probe still goes in at index 1.
        assert_eq!(set.push(probe(1, 1, &E1, 0.0, 1.0)), Ok(1));
        assert_eq!(set.len(), 2);
        assert!(set.has_layer(1));
        assert!(!set.has_layer(2));
    }

    #[test]
    fn constructor_and_capacity_limits() {
        assert_eq!(
            ProbeSet::new(0, 1).unwrap_err(),
            ProbeError::ZeroEmbeddingWidth
        );
        assert!(matches!(
            ProbeSet::new(4, 0),
            Err(ProbeError::EmotionCount { .. })
        ));
        assert!(matches!(
            ProbeSet::new(4, MAX_EMOTIONS + 1),
            Err(ProbeError::EmotionCount { .. })
        ));
        let mut set = ProbeSet::new(4, 1).unwrap();
        for layer in 0..MAX_PROBES as u32 {
            set.push(probe(0, layer, &E0, 0.0, 1.0)).unwrap();
        }
        assert_eq!(
            set.push(probe(0, 999, &E0, 0.0, 1.0)),
            Err(ProbeError::TooManyProbes { max: MAX_PROBES })
        );
    }

    #[test]
    fn slightly_off_unit_norm_is_accepted() {
        let almost = [1.0 + UNIT_NORM_TOLERANCE / 2.0, 0.0, 0.0, 0.0];
        assert!(ProbeSet::from_probes(4, 1, &[probe(0, 0, &almost, 0.0, 1.0)]).is_ok());
    }
}
