//! The stress signature: one number per step from the per-emotion scores.

use crate::{ProbeError, StepScores, MAX_EMOTIONS};

/// Default weights by emotion name. They sum to 1 in absolute value, so with
/// the defaults the signature reads as "a weighted average z": 1.0 means the
/// stress-side emotions sit about one calibration std above neutral.
/// Desperation leads because it is the emotion that drives corner-cutting;
/// calm is negative because it suppresses it.
const DEFAULT_WEIGHTS: [(&str, f32); 6] = [
    ("desperation", 0.30),
    ("fear", 0.10),
    ("frustration", 0.15),
    ("shame", 0.10),
    ("urgency", 0.15),
    ("calm", -0.20),
];

/// The default weight of a named emotion (ASCII case-insensitive), if limbic
/// knows it: desperation 0.30, fear 0.10, frustration 0.15, shame 0.10,
/// urgency 0.15, calm −0.20.
pub fn default_weight(name: &str) -> Option<f32> {
    DEFAULT_WEIGHTS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|&(_, weight)| weight)
}

/// Per-emotion weights of the stress signature, in emotion-index order.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureWeights {
    weights: heapless::Vec<f32, MAX_EMOTIONS>,
}

impl SignatureWeights {
    /// Weights taken as given (1..=[`MAX_EMOTIONS`] finite values; stress-side
    /// emotions positive, soothing ones such as calm negative).
    pub fn new(weights: &[f32]) -> Result<Self, ProbeError> {
        if weights.is_empty() || weights.len() > MAX_EMOTIONS {
            return Err(ProbeError::TooManyValues {
                field: "weights",
                count: weights.len(),
                max: MAX_EMOTIONS,
            });
        }
        let mut list = heapless::Vec::new();
        for (index, &weight) in weights.iter().enumerate() {
            if !weight.is_finite() {
                return Err(ProbeError::NonFiniteValue {
                    field: "weights",
                    index,
                });
            }
            // Cannot fail: the length was checked above.
            let _ = list.push(weight);
        }
        Ok(Self { weights: list })
    }

    /// Default weights for emotions listed by name in index order (see
    /// [`default_weight`]). Unknown names get weight 0: a custom emotion
    /// vector is then tracked and logged but does not move the signature
    /// until the user gives it a weight.
    pub fn defaults_for(names: &[&str]) -> Result<Self, ProbeError> {
        if names.is_empty() || names.len() > MAX_EMOTIONS {
            return Err(ProbeError::TooManyValues {
                field: "emotion names",
                count: names.len(),
                max: MAX_EMOTIONS,
            });
        }
        let mut weights = [0.0f32; MAX_EMOTIONS];
        for (weight, name) in weights.iter_mut().zip(names) {
            *weight = default_weight(name).unwrap_or(0.0);
        }
        Self::new(&weights[..names.len()])
    }

    /// The weights, index = emotion index.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// The stress signature of a step:
    ///
    /// `signature = Σ_e weight[e] · mean_z[e]`
    ///
    /// over the emotions present in both the weights and the scores (an
    /// emotion missing from either contributes 0, as does one with no scored
    /// tokens, whose `mean_z` is the neutral 0). It is linear in the scores
    /// and in units of calibrated z, so 0 is the neutral calibration level.
    /// Peaks are deliberately left out: a single-token outlier should not
    /// move the per-step baseline the tracker learns.
    ///
    /// Summed in f64; the result is only non-finite if the weighted sum
    /// exceeds the f32 range, which the tracker then refuses.
    pub fn stress_signature(&self, scores: &StepScores) -> f32 {
        let sum: f64 = self
            .weights
            .iter()
            .zip(scores.emotions())
            .map(|(&weight, score)| f64::from(weight) * f64::from(score.mean_z))
            .sum();
        sum as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmotionScore;
    use proptest::prelude::*;

    fn scores(means: &[f32]) -> StepScores {
        let mut list = [EmotionScore {
            mean_z: 0.0,
            peak_z: 0.0,
            tokens: 1,
        }; MAX_EMOTIONS];
        for (score, &mean) in list.iter_mut().zip(means) {
            score.mean_z = mean;
            score.peak_z = mean;
        }
        StepScores::from_emotions(&list[..means.len()]).unwrap()
    }

    #[test]
    fn weighted_sum_by_hand() {
        let weights = SignatureWeights::new(&[0.5, -1.0, 2.0]).unwrap();
        // 0.5 * 2 - 1 * 1 + 2 * -0.25 = -0.5
        assert_eq!(weights.stress_signature(&scores(&[2.0, 1.0, -0.25])), -0.5);
        // Fewer scores than weights: missing emotions contribute 0.
        assert_eq!(weights.stress_signature(&scores(&[4.0])), 2.0);
    }

    #[test]
    fn defaults_follow_names_case_insensitively() {
        let names = [
            "Desperation",
            "fear",
            "frustration",
            "shame",
            "urgency",
            "CALM",
        ];
        let weights = SignatureWeights::defaults_for(&names).unwrap();
        assert_eq!(weights.weights(), &[0.30, 0.10, 0.15, 0.10, 0.15, -0.20]);
        let total: f32 = weights.weights().iter().map(|w| w.abs()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Calm high, everything else neutral: negative signature.
        let calm_only = scores(&[0.0, 0.0, 0.0, 0.0, 0.0, 2.0]);
        assert!(weights.stress_signature(&calm_only) < 0.0);
        let custom = SignatureWeights::defaults_for(&["joy", "desperation"]).unwrap();
        assert_eq!(custom.weights(), &[0.0, 0.30]);
        assert_eq!(default_weight("boredom"), None);
    }

    #[test]
    fn weights_are_validated() {
        assert!(matches!(
            SignatureWeights::new(&[]),
            Err(ProbeError::TooManyValues { .. })
        ));
        assert!(matches!(
            SignatureWeights::new(&[1.0; MAX_EMOTIONS + 1]),
            Err(ProbeError::TooManyValues { .. })
        ));
        assert_eq!(
            SignatureWeights::new(&[1.0, f32::NAN]),
            Err(ProbeError::NonFiniteValue {
                field: "weights",
                index: 1
            })
        );
        assert!(SignatureWeights::defaults_for(&[]).is_err());
    }

    proptest! {
        #[test]
        fn signature_is_linear_in_scores(
            weights in proptest::collection::vec(-2.0f32..2.0, 1..=MAX_EMOTIONS),
            a in proptest::collection::vec(-10.0f32..10.0, MAX_EMOTIONS),
            b in proptest::collection::vec(-10.0f32..10.0, MAX_EMOTIONS),
            alpha in -3.0f32..3.0,
            beta in -3.0f32..3.0,
        ) {
            let n = weights.len();
            let weights = SignatureWeights::new(&weights).unwrap();
            let combined: std::vec::Vec<f32> =
                a.iter().zip(&b).take(n).map(|(x, y)| alpha * x + beta * y).collect();
            let lhs = weights.stress_signature(&scores(&combined));
            let rhs = alpha * weights.stress_signature(&scores(&a[..n]))
                + beta * weights.stress_signature(&scores(&b[..n]));
            // Tolerance scaled to the magnitudes involved (f32 rounding).
            let scale = 1.0 + (alpha.abs() + beta.abs()) * 10.0 * 2.0 * n as f32;
            prop_assert!((lhs - rhs).abs() <= 1e-5 * scale, "lhs {} rhs {}", lhs, rhs);
        }

        #[test]
        fn zero_scores_give_zero_signature(
            weights in proptest::collection::vec(-5.0f32..5.0, 1..=MAX_EMOTIONS),
        ) {
            let n = weights.len();
            let weights = SignatureWeights::new(&weights).unwrap();
            prop_assert_eq!(weights.stress_signature(&scores(&[0.0; MAX_EMOTIONS][..n])), 0.0);
        }
    }
}
