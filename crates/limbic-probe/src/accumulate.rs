//! Per-step accumulation of probe readings over the step's tokens.

use crate::{ProbeError, ProbeSet, MAX_EMOTIONS, MAX_PROBES};

/// Whether a token's rows count towards the step's scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// The token is projected and accumulated.
    Scored,
    /// The token is only counted as skipped; its rows are not read. Use for
    /// tokens whose activations are not about content, e.g. the attention-sink
    /// first token of a sequence, whose residual norm dwarfs all others.
    Skipped,
}

/// One emotion's scores over a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmotionScore {
    /// Mean calibrated z: per probe the mean over scored tokens, then averaged
    /// over the emotion's probes (layers) that saw at least one token.
    /// `0.0` (the calibrated neutral level) when `tokens == 0`.
    pub mean_z: f32,
    /// Highest per-token z, where a token's z is the average over the
    /// emotion's probes read for that token. `0.0` when `tokens == 0`.
    pub peak_z: f32,
    /// Number of scored tokens that reached at least one of the emotion's probes.
    pub tokens: u32,
}

/// One probe's scores over a step (for diagnostics and audit detail).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeSummary {
    /// Mean z over the tokens this probe read (`0.0` if none).
    pub mean_z: f32,
    /// Highest z over those tokens (`0.0` if none).
    pub peak_z: f32,
    /// Number of tokens this probe read.
    pub tokens: u32,
}

/// Per-emotion scores of one agent step, in emotion-index order.
#[derive(Clone, Debug, PartialEq)]
pub struct StepScores {
    emotions: heapless::Vec<EmotionScore, MAX_EMOTIONS>,
    /// Tokens that were projected and accumulated.
    pub scored_tokens: u32,
    /// Tokens the caller marked [`TokenKind::Skipped`].
    pub skipped_tokens: u32,
    /// Tokens discarded because a row was malformed or non-finite.
    pub rejected_tokens: u32,
}

impl StepScores {
    /// Builds scores directly (e.g. replayed from a log, or in tests).
    /// Token counters start at zero. Values must be finite.
    pub fn from_emotions(emotions: &[EmotionScore]) -> Result<Self, ProbeError> {
        if emotions.is_empty() || emotions.len() > MAX_EMOTIONS {
            return Err(ProbeError::TooManyValues {
                field: "emotions",
                count: emotions.len(),
                max: MAX_EMOTIONS,
            });
        }
        let mut list = heapless::Vec::new();
        for (index, score) in emotions.iter().enumerate() {
            if !score.mean_z.is_finite() {
                return Err(ProbeError::NonFiniteValue {
                    field: "emotions.mean_z",
                    index,
                });
            }
            if !score.peak_z.is_finite() {
                return Err(ProbeError::NonFiniteValue {
                    field: "emotions.peak_z",
                    index,
                });
            }
            // Cannot fail: the length was checked above.
            let _ = list.push(*score);
        }
        Ok(Self {
            emotions: list,
            scored_tokens: 0,
            skipped_tokens: 0,
            rejected_tokens: 0,
        })
    }

    /// All emotions' scores; index = emotion index.
    pub fn emotions(&self) -> &[EmotionScore] {
        &self.emotions
    }

    /// One emotion's scores, if the index is in range.
    pub fn emotion(&self, index: usize) -> Option<&EmotionScore> {
        self.emotions.get(index)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ProbeTotals {
    // f64 so long steps (thousands of tokens) do not lose precision.
    sum_z: f64,
    max_z: f32,
    tokens: u32,
}

const EMPTY_TOTALS: ProbeTotals = ProbeTotals {
    sum_z: 0.0,
    max_z: f32::NEG_INFINITY,
    tokens: 0,
};

/// The shape of the probe set an accumulator was built for, kept so a later
/// call with a different set is detected instead of silently mis-attributed.
#[derive(Clone, Debug, PartialEq)]
struct SetLayout {
    n_embd: usize,
    n_emotions: usize,
    probes: heapless::Vec<(usize, u32), MAX_PROBES>,
}

impl SetLayout {
    fn of(set: &ProbeSet<'_>) -> Self {
        let mut probes = heapless::Vec::new();
        for probe in set.probes() {
            // Cannot fail: a ProbeSet holds at most MAX_PROBES probes.
            let _ = probes.push((probe.emotion, probe.layer));
        }
        Self {
            n_embd: set.n_embd(),
            n_emotions: set.n_emotions(),
            probes,
        }
    }

    fn matches(&self, set: &ProbeSet<'_>) -> bool {
        self.n_embd == set.n_embd()
            && self.n_emotions == set.n_emotions()
            && self.probes.len() == set.len()
            && self
                .probes
                .iter()
                .zip(set.probes())
                .all(|(&(emotion, layer), p)| emotion == p.emotion && layer == p.layer)
    }
}

/// Accumulates probe readings over the tokens of one agent step.
///
/// Feed it every token with [`Self::feed_token`], call [`Self::finish`] for
/// the step's [`StepScores`], then [`Self::reset`] for the next step. The
/// probe set is passed to each call (rather than borrowed for the
/// accumulator's lifetime) so the accumulator can live in long-lived state;
/// a set of a different shape than the one given to [`Self::new`] is refused.
#[derive(Clone, Debug)]
pub struct StepAccumulator {
    layout: SetLayout,
    probes: [ProbeTotals; MAX_PROBES],
    emotion_peak: [f32; MAX_EMOTIONS],
    emotion_tokens: [u32; MAX_EMOTIONS],
    scored_tokens: u32,
    skipped_tokens: u32,
    rejected_tokens: u32,
}

impl StepAccumulator {
    /// An empty accumulator for `set`.
    pub fn new(set: &ProbeSet<'_>) -> Self {
        Self {
            layout: SetLayout::of(set),
            probes: [EMPTY_TOTALS; MAX_PROBES],
            emotion_peak: [f32::NEG_INFINITY; MAX_EMOTIONS],
            emotion_tokens: [0; MAX_EMOTIONS],
            scored_tokens: 0,
            skipped_tokens: 0,
            rejected_tokens: 0,
        }
    }

    /// Feeds one token: its residual rows as `(layer, row)` pairs, one per
    /// tapped layer. Layers without probes are length-checked and otherwise
    /// ignored; probes whose layer is missing simply get no sample.
    ///
    /// A token is all-or-nothing: if any row is the wrong length, projects to
    /// NaN/inf, or repeats a layer, the whole token is discarded (counted in
    /// `rejected_tokens`), the error is returned, and the step's totals are
    /// unchanged — the caller may log it and keep feeding.
    ///
    /// With [`TokenKind::Skipped`] the rows are not read at all.
    pub fn feed_token<'r, I>(
        &mut self,
        set: &ProbeSet<'_>,
        rows: I,
        kind: TokenKind,
    ) -> Result<(), ProbeError>
    where
        I: IntoIterator<Item = (u32, &'r [f32])>,
    {
        if !self.layout.matches(set) {
            return Err(ProbeError::ProbeSetMismatch);
        }
        if kind == TokenKind::Skipped {
            self.skipped_tokens = self.skipped_tokens.saturating_add(1);
            return Ok(());
        }
        // Stage this token's z per probe first, so a bad row leaves no trace.
        let mut token_z: [Option<f32>; MAX_PROBES] = [None; MAX_PROBES];
        for (layer, row) in rows {
            let readings = match set.project(layer, row) {
                Ok(readings) => readings,
                Err(error) => return Err(self.reject(error)),
            };
            for reading in &readings {
                let slot = &mut token_z[reading.probe];
                if slot.is_some() {
                    return Err(self.reject(ProbeError::DuplicateLayer { layer }));
                }
                *slot = Some(reading.z);
            }
        }

        // f64: summing several z near f32::MAX must not overflow to inf.
        let mut emotion_sum = [0.0f64; MAX_EMOTIONS];
        let mut emotion_count = [0u32; MAX_EMOTIONS];
        for ((totals, z), &(emotion, _)) in self
            .probes
            .iter_mut()
            .zip(token_z)
            .zip(self.layout.probes.iter())
        {
            let Some(z) = z else { continue };
            totals.sum_z += f64::from(z);
            totals.max_z = totals.max_z.max(z);
            totals.tokens = totals.tokens.saturating_add(1);
            emotion_sum[emotion] += f64::from(z);
            emotion_count[emotion] += 1;
        }
        for emotion in 0..self.layout.n_emotions {
            if emotion_count[emotion] == 0 {
                continue;
            }
            // A mean of finite f32 values is within f32 range, so the cast is finite.
            let token_mean = (emotion_sum[emotion] / f64::from(emotion_count[emotion])) as f32;
            self.emotion_peak[emotion] = self.emotion_peak[emotion].max(token_mean);
            self.emotion_tokens[emotion] = self.emotion_tokens[emotion].saturating_add(1);
        }
        self.scored_tokens = self.scored_tokens.saturating_add(1);
        Ok(())
    }

    fn reject(&mut self, error: ProbeError) -> ProbeError {
        self.rejected_tokens = self.rejected_tokens.saturating_add(1);
        error
    }

    /// The step's scores so far (does not reset; see [`Self::reset`]).
    pub fn finish(&self) -> StepScores {
        let mut probe_mean_sum = [0.0f64; MAX_EMOTIONS];
        let mut probes_seen = [0u32; MAX_EMOTIONS];
        for (totals, &(emotion, _)) in self.probes.iter().zip(self.layout.probes.iter()) {
            if totals.tokens == 0 {
                continue;
            }
            probe_mean_sum[emotion] += totals.sum_z / f64::from(totals.tokens);
            probes_seen[emotion] += 1;
        }
        let mut emotions = heapless::Vec::new();
        for emotion in 0..self.layout.n_emotions {
            let score = if self.emotion_tokens[emotion] == 0 || probes_seen[emotion] == 0 {
                EmotionScore {
                    mean_z: 0.0,
                    peak_z: 0.0,
                    tokens: 0,
                }
            } else {
                EmotionScore {
                    mean_z: (probe_mean_sum[emotion] / f64::from(probes_seen[emotion])) as f32,
                    peak_z: self.emotion_peak[emotion],
                    tokens: self.emotion_tokens[emotion],
                }
            };
            // Cannot fail: n_emotions <= MAX_EMOTIONS.
            let _ = emotions.push(score);
        }
        StepScores {
            emotions,
            scored_tokens: self.scored_tokens,
            skipped_tokens: self.skipped_tokens,
            rejected_tokens: self.rejected_tokens,
        }
    }

    /// One probe's totals for the step, if `probe` is a valid index.
    pub fn probe_summary(&self, probe: usize) -> Option<ProbeSummary> {
        if probe >= self.layout.probes.len() {
            return None;
        }
        let totals = self.probes[probe];
        Some(if totals.tokens == 0 {
            ProbeSummary {
                mean_z: 0.0,
                peak_z: 0.0,
                tokens: 0,
            }
        } else {
            ProbeSummary {
                mean_z: (totals.sum_z / f64::from(totals.tokens)) as f32,
                peak_z: totals.max_z,
                tokens: totals.tokens,
            }
        })
    }

    /// Clears all totals and counters for the next step (keeps the set layout).
    pub fn reset(&mut self) {
        self.probes = [EMPTY_TOTALS; MAX_PROBES];
        self.emotion_peak = [f32::NEG_INFINITY; MAX_EMOTIONS];
        self.emotion_tokens = [0; MAX_EMOTIONS];
        self.scored_tokens = 0;
        self.skipped_tokens = 0;
        self.rejected_tokens = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Probe;
    use proptest::prelude::*;

    const E0: [f32; 4] = [1.0, 0.0, 0.0, 0.0];
    const E1: [f32; 4] = [0.0, 1.0, 0.0, 0.0];
    const E2: [f32; 4] = [0.0, 0.0, 1.0, 0.0];

    /// Emotion 0 on layers 1 and 2 (reading e0 and e1), emotion 1 on layer 1
    /// (reading e2, with mean 1 and std 2).
    fn test_set() -> ProbeSet<'static> {
        ProbeSet::from_probes(
            4,
            2,
            &[
                Probe {
                    emotion: 0,
                    layer: 1,
                    direction: &E0,
                    mean: 0.0,
                    std: 1.0,
                },
                Probe {
                    emotion: 0,
                    layer: 2,
                    direction: &E1,
                    mean: 0.0,
                    std: 1.0,
                },
                Probe {
                    emotion: 1,
                    layer: 1,
                    direction: &E2,
                    mean: 1.0,
                    std: 2.0,
                },
            ],
        )
        .unwrap()
    }

    fn feed(
        acc: &mut StepAccumulator,
        set: &ProbeSet<'_>,
        layer1: [f32; 4],
        layer2: [f32; 4],
        kind: TokenKind,
    ) -> Result<(), ProbeError> {
        acc.feed_token(set, [(1, &layer1[..]), (2, &layer2[..])], kind)
    }

    #[test]
    fn mean_and_peak_over_tokens_and_layers_with_skipped_tokens() {
        let set = test_set();
        let mut acc = StepAccumulator::new(&set);
        // Attention-sink token with huge activations: skipped, must not count.
        feed(
            &mut acc,
            &set,
            [100.0, 0.0, 100.0, 0.0],
            [0.0, 100.0, 0.0, 0.0],
            TokenKind::Skipped,
        )
        .unwrap();
        // Token A: e0 probes z = 1 (L1) and 3 (L2) -> token mean 2; e1 z = (5-1)/2 = 2.
        feed(
            &mut acc,
            &set,
            [1.0, 0.0, 5.0, 0.0],
            [0.0, 3.0, 0.0, 0.0],
            TokenKind::Scored,
        )
        .unwrap();
        // Token B: e0 z = 3 (L1) and -1 (L2) -> token mean 1; e1 z = (-3-1)/2 = -2.
        feed(
            &mut acc,
            &set,
            [3.0, 0.0, -3.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            TokenKind::Scored,
        )
        .unwrap();

        let scores = acc.finish();
        assert_eq!(scores.scored_tokens, 2);
        assert_eq!(scores.skipped_tokens, 1);
        assert_eq!(scores.rejected_tokens, 0);
        let e0 = scores.emotion(0).unwrap();
        // Probe means: L1 (1+3)/2 = 2, L2 (3-1)/2 = 1 -> 1.5.
        assert_eq!(e0.mean_z, 1.5);
        // Peak of per-token layer averages: max(2, 1) = 2.
        assert_eq!(e0.peak_z, 2.0);
        assert_eq!(e0.tokens, 2);
        let e1 = scores.emotion(1).unwrap();
        assert_eq!(e1.mean_z, 0.0);
        assert_eq!(e1.peak_z, 2.0);
        assert_eq!(e1.tokens, 2);

        let l2 = acc.probe_summary(1).unwrap();
        assert_eq!(
            l2,
            ProbeSummary {
                mean_z: 1.0,
                peak_z: 3.0,
                tokens: 2
            }
        );
        assert_eq!(acc.probe_summary(3), None);
    }

    #[test]
    fn missing_layer_gives_no_sample_and_emotion_mean_averages_seen_probes() {
        let set = test_set();
        let mut acc = StepAccumulator::new(&set);
        // Only layer 1 fed: e0 sees just its L1 probe.
        acc.feed_token(&set, [(1, &[4.0, 0.0, 1.0, 0.0][..])], TokenKind::Scored)
            .unwrap();
        acc.feed_token(&set, [(1, &[2.0, 0.0, 1.0, 0.0][..])], TokenKind::Scored)
            .unwrap();
        let scores = acc.finish();
        assert_eq!(scores.emotion(0).unwrap().mean_z, 3.0);
        assert_eq!(scores.emotion(0).unwrap().peak_z, 4.0);
        assert_eq!(acc.probe_summary(1).unwrap().tokens, 0);
    }

    #[test]
    fn empty_step_is_neutral() {
        let set = test_set();
        let mut acc = StepAccumulator::new(&set);
        feed(&mut acc, &set, [9.0; 4], [9.0; 4], TokenKind::Skipped).unwrap();
        let scores = acc.finish();
        assert_eq!(scores.emotions().len(), 2);
        for score in scores.emotions() {
            assert_eq!(
                *score,
                EmotionScore {
                    mean_z: 0.0,
                    peak_z: 0.0,
                    tokens: 0
                }
            );
        }
        assert_eq!(scores.skipped_tokens, 1);
    }

    #[test]
    fn bad_token_is_discarded_whole() {
        let set = test_set();
        let mut acc = StepAccumulator::new(&set);
        feed(
            &mut acc,
            &set,
            [1.0, 0.0, 1.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            TokenKind::Scored,
        )
        .unwrap();
        let before = acc.finish();
        // Layer 1 is fine, layer 2 has a NaN: nothing from layer 1 may stick.
        assert_eq!(
            feed(
                &mut acc,
                &set,
                [50.0, 0.0, 50.0, 0.0],
                [0.0, f32::NAN, 0.0, 0.0],
                TokenKind::Scored
            ),
            Err(ProbeError::NonFiniteRow { layer: 2 })
        );
        assert_eq!(
            acc.feed_token(&set, [(1, &[1.0, 2.0][..])], TokenKind::Scored),
            Err(ProbeError::RowLength {
                layer: 1,
                expected: 4,
                actual: 2
            })
        );
        let row = [1.0, 0.0, 1.0, 0.0];
        assert_eq!(
            acc.feed_token(&set, [(1, &row[..]), (1, &row[..])], TokenKind::Scored),
            Err(ProbeError::DuplicateLayer { layer: 1 })
        );
        let after = acc.finish();
        assert_eq!(after.emotions(), before.emotions());
        assert_eq!(after.scored_tokens, 1);
        assert_eq!(after.rejected_tokens, 3);
    }

    #[test]
    fn reset_clears_and_other_sets_are_refused() {
        let set = test_set();
        let mut acc = StepAccumulator::new(&set);
        feed(&mut acc, &set, [1.0; 4], [1.0; 4], TokenKind::Scored).unwrap();
        acc.reset();
        let scores = acc.finish();
        assert_eq!(scores.scored_tokens, 0);
        assert_eq!(scores.emotion(0).unwrap().tokens, 0);
        // Same accumulator, then a fresh step behaves like a fresh accumulator.
        feed(
            &mut acc,
            &set,
            [2.0, 0.0, 0.0, 0.0],
            [0.0; 4],
            TokenKind::Scored,
        )
        .unwrap();
        assert_eq!(acc.finish().emotion(0).unwrap().peak_z, 1.0);

        let other = ProbeSet::from_probes(
            4,
            2,
            &[Probe {
                emotion: 1,
                layer: 1,
                direction: &E0,
                mean: 0.0,
                std: 1.0,
            }],
        )
        .unwrap();
        assert_eq!(
            feed(&mut acc, &other, [1.0; 4], [1.0; 4], TokenKind::Scored),
            Err(ProbeError::ProbeSetMismatch)
        );
    }

    #[test]
    fn from_emotions_validates() {
        let ok = EmotionScore {
            mean_z: 1.0,
            peak_z: 2.0,
            tokens: 3,
        };
        assert_eq!(StepScores::from_emotions(&[ok]).unwrap().emotions(), &[ok]);
        assert!(matches!(
            StepScores::from_emotions(&[]),
            Err(ProbeError::TooManyValues { .. })
        ));
        assert!(matches!(
            StepScores::from_emotions(&[ok; MAX_EMOTIONS + 1]),
            Err(ProbeError::TooManyValues { .. })
        ));
        let bad = EmotionScore {
            mean_z: f32::NAN,
            ..ok
        };
        assert_eq!(
            StepScores::from_emotions(&[ok, bad]),
            Err(ProbeError::NonFiniteValue {
                field: "emotions.mean_z",
                index: 1
            })
        );
    }

    fn any_value() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -20.0f32..20.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => proptest::num::f32::ANY,
            1 => Just(f32::MAX),
            1 => Just(-f32::MAX),
        ]
    }

    proptest! {
        #[test]
        fn accumulator_counts_every_token_and_keeps_mean_below_peak(
            tokens in proptest::collection::vec(
                (proptest::collection::vec(any_value(), 8), any::<bool>()),
                0..40,
            ),
        ) {
            let set = test_set();
            let mut acc = StepAccumulator::new(&set);
            let mut expected = (0u32, 0u32, 0u32); // scored, skipped, rejected
            for (values, skip) in &tokens {
                let kind = if *skip { TokenKind::Skipped } else { TokenKind::Scored };
                let result = acc.feed_token(
                    &set,
                    [(1, &values[..4]), (2, &values[4..])],
                    kind,
                );
                match (kind, result) {
                    (TokenKind::Skipped, Ok(())) => expected.1 += 1,
                    (TokenKind::Scored, Ok(())) => expected.0 += 1,
                    (TokenKind::Scored, Err(ProbeError::NonFiniteRow { .. })) => expected.2 += 1,
                    (kind, result) => prop_assert!(false, "{:?} gave {:?}", kind, result),
                }
            }
            let scores = acc.finish();
            prop_assert_eq!(
                (scores.scored_tokens, scores.skipped_tokens, scores.rejected_tokens),
                expected
            );
            for score in scores.emotions() {
                prop_assert!(score.mean_z.is_finite() && score.peak_z.is_finite());
                prop_assert_eq!(score.tokens, expected.0);
                // Every probe read every scored token, so the mean over probes of
                // per-probe means equals the mean of per-token averages <= peak.
                let slack = 1e-4 * (1.0 + score.peak_z.abs());
                prop_assert!(score.mean_z <= score.peak_z + slack, "{:?}", score);
            }
        }
    }
}
