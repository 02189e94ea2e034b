//! Per-session spike detection on the stress signature.

use crate::{ProbeError, MAX_HISTORY};

/// Signatures are clamped to ±this before use. Real calibrated z-scores are
/// single digits; anything this large comes from a broken calibration, and
/// clamping keeps the EWMA and rise arithmetic finite for any finite input.
pub const SIGNATURE_LIMIT: f32 = 1.0e6;

/// How the absolute and relative criteria combine into "this step is over threshold".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverRule {
    /// Over when the signature is high **or** rose sharply against the
    /// session baseline. Catches both a stressed level and a sudden jump.
    AbsoluteOrRise,
    /// Over only when the signature is high **and** rose sharply. Ignores
    /// sessions that simply sit high from the start (e.g. a stressful but
    /// legitimate task) at the cost of missing slow, steady climbs.
    AbsoluteAndRise,
}

/// Thresholds of [`SessionTracker`]. Signature values are in calibrated-z
/// units (see [`crate::SignatureWeights::stress_signature`]), 0 = neutral.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackerConfig {
    /// (a) Absolute criterion: `signature >= abs_threshold`.
    pub abs_threshold: f32,
    /// (b) Relative criterion: `signature - ewma_before >= rise_threshold`. Must be > 0.
    pub rise_threshold: f32,
    /// How (a) and (b) combine.
    pub over_rule: OverRule,
    /// n of the k-of-n rule: how many recent steps are looked at (1..=[`MAX_HISTORY`]).
    pub window_len: usize,
    /// k of the k-of-n rule: a spike starts when at least this many of the
    /// last `window_len` steps were over threshold (1..=window_len).
    pub min_over_in_window: usize,
    /// While spiking, a step with `signature < release_threshold` counts as
    /// calm. Must be below `abs_threshold`, which gives the hysteresis band.
    pub release_threshold: f32,
    /// Consecutive calm steps needed to end a spike (>= 1).
    pub release_steps: u32,
    /// EWMA smoothing factor in (0, 1]: weight of the newest step in the
    /// session baseline. 0.2 ≈ a memory of the last ~5–10 steps.
    pub ewma_alpha: f32,
    /// Baseline before the first step. 0 = the calibrated neutral level.
    pub initial_baseline: f32,
}

impl Default for TrackerConfig {
    /// Spike when 3 of the last 5 steps were 1.5 z above neutral or 1 z above
    /// the session's own baseline; release after 3 steps below 0.5 z.
    fn default() -> Self {
        Self {
            abs_threshold: 1.5,
            rise_threshold: 1.0,
            over_rule: OverRule::AbsoluteOrRise,
            window_len: 5,
            min_over_in_window: 3,
            release_threshold: 0.5,
            release_steps: 3,
            ewma_alpha: 0.2,
            initial_baseline: 0.0,
        }
    }
}

impl TrackerConfig {
    /// Checks every field; the error names the first offending one.
    pub fn validate(&self) -> Result<(), ProbeError> {
        let invalid = |field, reason| Err(ProbeError::InvalidConfig { field, reason });
        for (field, value) in [
            ("abs_threshold", self.abs_threshold),
            ("rise_threshold", self.rise_threshold),
            ("release_threshold", self.release_threshold),
            ("ewma_alpha", self.ewma_alpha),
            ("initial_baseline", self.initial_baseline),
        ] {
            if !value.is_finite() {
                return invalid(field, "must be a finite number");
            }
            if value.abs() > SIGNATURE_LIMIT {
                return invalid(field, "magnitude must be at most SIGNATURE_LIMIT (1e6)");
            }
        }
        if self.rise_threshold <= 0.0 {
            return invalid("rise_threshold", "must be > 0");
        }
        if self.release_threshold >= self.abs_threshold {
            return invalid(
                "release_threshold",
                "must be below abs_threshold (hysteresis band)",
            );
        }
        if self.window_len == 0 || self.window_len > MAX_HISTORY {
            return invalid("window_len", "must be in 1..=MAX_HISTORY (64)");
        }
        if self.min_over_in_window == 0 || self.min_over_in_window > self.window_len {
            return invalid("min_over_in_window", "must be in 1..=window_len");
        }
        if self.release_steps == 0 {
            return invalid("release_steps", "must be >= 1");
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return invalid("ewma_alpha", "must be in (0, 1]");
        }
        Ok(())
    }
}

/// The tracker's verdict on one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackState {
    /// The signature as used (clamped to ±[`SIGNATURE_LIMIT`]).
    pub signature: f32,
    /// The session baseline *before* this step, i.e. what `rise` is measured against.
    pub ewma: f32,
    /// `signature - ewma`.
    pub rise: f32,
    /// Whether this step met the [`OverRule`].
    pub over_threshold: bool,
    /// Whether the session is in a spike after this step.
    pub spike: bool,
    /// Steps accepted so far, including this one.
    pub steps: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct StepRecord {
    signature: f32,
    over: bool,
}

/// Per-session spike detector over the stress signature.
///
/// Per step: `rise = signature - ewma`; the step is *over* per
/// [`OverRule`]; when not spiking, a spike starts once at least k of the last
/// n steps (since the last release) were over; when spiking, it ends only
/// after `release_steps` consecutive steps below `release_threshold`. The
/// EWMA baseline then moves towards the signature on every accepted step.
///
/// Deterministic; O(n) per step with n = `window_len` ≤ [`MAX_HISTORY`]; no allocation.
#[derive(Clone, Debug)]
pub struct SessionTracker {
    config: TrackerConfig,
    history: heapless::Deque<StepRecord, MAX_HISTORY>,
    ewma: f32,
    spiking: bool,
    calm_run: u32,
    /// Steps since the last release (or start). Only these count towards the
    /// next onset, so the over-steps that caused a released spike cannot
    /// immediately re-trigger it.
    steps_since_release: usize,
    steps: u32,
}

impl SessionTracker {
    /// A fresh tracker; fails if `config` does not validate.
    pub fn new(config: TrackerConfig) -> Result<Self, ProbeError> {
        config.validate()?;
        Ok(Self {
            config,
            history: heapless::Deque::new(),
            ewma: config.initial_baseline,
            spiking: false,
            calm_run: 0,
            steps_since_release: 0,
            steps: 0,
        })
    }

    /// Feeds one step's signature.
    ///
    /// NaN and ±infinity are refused with [`ProbeError::NonFiniteSignature`]
    /// and leave the tracker untouched (a missing reading is not evidence
    /// either way, and must not poison the baseline). Finite values beyond
    /// ±[`SIGNATURE_LIMIT`] are clamped.
    pub fn update(&mut self, signature: f32) -> Result<TrackState, ProbeError> {
        if !signature.is_finite() {
            return Err(ProbeError::NonFiniteSignature);
        }
        let signature = signature.clamp(-SIGNATURE_LIMIT, SIGNATURE_LIMIT);
        let config = &self.config;
        let baseline = self.ewma;
        let rise = signature - baseline;
        let high = signature >= config.abs_threshold;
        let rising = rise >= config.rise_threshold;
        let over = match config.over_rule {
            OverRule::AbsoluteOrRise => high || rising,
            OverRule::AbsoluteAndRise => high && rising,
        };

        if self.history.is_full() {
            self.history.pop_front();
        }
        // Cannot fail: room was made above.
        let _ = self.history.push_back(StepRecord { signature, over });

        if self.spiking {
            if signature < config.release_threshold {
                self.calm_run = self.calm_run.saturating_add(1);
            } else {
                self.calm_run = 0;
            }
            if self.calm_run >= config.release_steps {
                self.spiking = false;
                self.calm_run = 0;
                self.steps_since_release = 0;
            }
        } else {
            self.steps_since_release = self.steps_since_release.saturating_add(1);
            let window = config.window_len.min(self.steps_since_release);
            let over_in_window = self
                .history
                .iter()
                .rev()
                .take(window)
                .filter(|record| record.over)
                .count();
            if over_in_window >= config.min_over_in_window {
                self.spiking = true;
                self.calm_run = 0;
            }
        }

        // Both terms are within ±SIGNATURE_LIMIT, so this stays finite; the
        // clamp only absorbs rounding past the limit.
        self.ewma = (baseline + config.ewma_alpha * (signature - baseline))
            .clamp(-SIGNATURE_LIMIT, SIGNATURE_LIMIT);
        self.steps = self.steps.saturating_add(1);
        Ok(TrackState {
            signature,
            ewma: baseline,
            rise,
            over_threshold: over,
            spike: self.spiking,
            steps: self.steps,
        })
    }

    /// Whether the session is currently in a spike.
    pub fn is_spiking(&self) -> bool {
        self.spiking
    }

    /// The current session baseline (after the last step).
    pub fn ewma(&self) -> f32 {
        self.ewma
    }

    /// Steps accepted so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The configuration in use.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Up to [`MAX_HISTORY`] most recent signatures, oldest first.
    pub fn recent_signatures(&self) -> impl Iterator<Item = f32> + '_ {
        self.history.iter().map(|record| record.signature)
    }

    /// Forgets the session: back to the state right after [`Self::new`].
    pub fn reset(&mut self) {
        self.history.clear();
        self.ewma = self.config.initial_baseline;
        self.spiking = false;
        self.calm_run = 0;
        self.steps_since_release = 0;
        self.steps = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tracker() -> SessionTracker {
        SessionTracker::new(TrackerConfig::default()).unwrap()
    }

    fn feed(tracker: &mut SessionTracker, signatures: &[f32]) -> std::vec::Vec<TrackState> {
        signatures
            .iter()
            .map(|&s| tracker.update(s).unwrap())
            .collect()
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(TrackerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn first_step_rise_is_against_initial_baseline_and_ewma_follows() {
        let mut t = tracker();
        let s1 = t.update(1.0).unwrap();
        assert_eq!(s1.ewma, 0.0);
        assert_eq!(s1.rise, 1.0);
        assert_eq!(s1.steps, 1);
        // ewma = 0 + 0.2 * (1 - 0) = 0.2
        assert!((t.ewma() - 0.2).abs() < 1e-7);
        let s2 = t.update(0.2).unwrap();
        assert!((s2.ewma - 0.2).abs() < 1e-7);
        assert!(s2.rise.abs() < 1e-7);
    }

    #[test]
    fn calm_stream_never_spikes() {
        let mut t = tracker();
        // Deterministic small wobble around neutral, well inside the thresholds.
        for i in 0..500u32 {
            let wobble = ((i * 7919) % 100) as f32 / 100.0 - 0.5; // [-0.5, 0.5)
            let state = t.update(wobble * 0.8).unwrap();
            assert!(!state.over_threshold, "step {i}: {state:?}");
            assert!(!state.spike, "step {i}: {state:?}");
        }
        assert_eq!(t.steps(), 500);
    }

    #[test]
    fn sustained_rise_spikes_on_the_kth_over_step() {
        let mut t = tracker();
        feed(&mut t, &[0.1, -0.1, 0.0, 0.1]);
        let states = feed(&mut t, &[2.5, 2.5, 2.5, 2.5]);
        assert!(states.iter().all(|s| s.over_threshold));
        // k = 3: not on the first two, yes from the third.
        assert_eq!(
            states.iter().map(|s| s.spike).collect::<std::vec::Vec<_>>(),
            [false, false, true, true]
        );
    }

    #[test]
    fn k_of_n_counts_non_consecutive_over_steps() {
        let mut t = tracker();
        // Over, calm, over, calm, over within a window of 5: 3 of 5 -> spike.
        let states = feed(&mut t, &[2.0, 0.0, 2.0, 0.0, 2.0]);
        assert_eq!(
            states.iter().map(|s| s.spike).collect::<std::vec::Vec<_>>(),
            [false, false, false, false, true]
        );
        // Spread wider than the window: never 3 in 5 -> no spike.
        let mut t = tracker();
        for _ in 0..10 {
            let states = feed(&mut t, &[2.0, 0.0, 0.0]);
            assert!(states.iter().all(|s| !s.spike), "{states:?}");
        }
    }

    #[test]
    fn isolated_spike_does_not_flap() {
        let mut t = tracker();
        feed(&mut t, &[0.0; 10]);
        let outlier = t.update(5.0).unwrap();
        assert!(outlier.over_threshold);
        assert!(!outlier.spike);
        for state in feed(&mut t, &[0.0; 10]) {
            assert!(!state.spike);
        }
    }

    #[test]
    fn hysteresis_holds_spike_between_release_and_abs_threshold() {
        let mut t = tracker();
        assert!(feed(&mut t, &[3.0, 3.0, 3.0]).last().unwrap().spike);
        // Between release (0.5) and abs (1.5): no longer over, but still spiking.
        for state in feed(&mut t, &[1.0; 20]) {
            assert!(!state.over_threshold);
            assert!(state.spike);
        }
        // Two calm steps then a relapse resets the calm run.
        for state in feed(&mut t, &[0.0, 0.0, 1.0, 0.0, 0.0]) {
            assert!(state.spike);
        }
    }

    #[test]
    fn releases_after_release_steps_and_does_not_retrigger_from_old_window() {
        let config = TrackerConfig {
            release_steps: 2,
            ..TrackerConfig::default()
        };
        let mut t = SessionTracker::new(config).unwrap();
        assert!(feed(&mut t, &[3.0, 3.0, 3.0]).last().unwrap().spike);
        let states = feed(&mut t, &[0.0, 0.0]);
        assert!(states[0].spike);
        assert!(!states[1].spike);
        // The window still holds three over-steps, but they predate the
        // release; a fresh calm step must not re-trigger.
        assert!(!t.update(0.0).unwrap().spike);
        assert!(!t.is_spiking());
        // A new sustained episode spikes again after k over-steps.
        let again = feed(&mut t, &[3.0, 3.0, 3.0]);
        assert_eq!(
            again.iter().map(|s| s.spike).collect::<std::vec::Vec<_>>(),
            [false, false, true]
        );
    }

    #[test]
    fn over_rules_differ_on_a_high_flat_session() {
        // A session sitting at 2.0 from the start: the AND rule stops calling
        // it over once the baseline has caught up; the OR rule keeps going.
        let and_config = TrackerConfig {
            over_rule: OverRule::AbsoluteAndRise,
            initial_baseline: 2.0,
            ..TrackerConfig::default()
        };
        let mut and_tracker = SessionTracker::new(and_config).unwrap();
        let mut or_tracker = SessionTracker::new(TrackerConfig {
            over_rule: OverRule::AbsoluteOrRise,
            ..and_config
        })
        .unwrap();
        for _ in 0..10 {
            assert!(!and_tracker.update(2.0).unwrap().over_threshold);
            assert!(or_tracker.update(2.0).unwrap().over_threshold);
        }
        assert!(!and_tracker.is_spiking());
        assert!(or_tracker.is_spiking());
    }

    #[test]
    fn rise_alone_triggers_under_or_rule() {
        let mut t = tracker();
        feed(&mut t, &[-3.0; 30]);
        // -1.5 is far below abs_threshold but 1.5 above the session baseline.
        let state = t.update(-1.5).unwrap();
        assert!(state.rise >= 1.0);
        assert!(state.over_threshold);
    }

    #[test]
    fn non_finite_signatures_are_refused_without_side_effects() {
        let mut t = tracker();
        feed(&mut t, &[0.5, 0.7]);
        let before = (t.ewma(), t.steps(), t.recent_signatures().count());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(t.update(bad), Err(ProbeError::NonFiniteSignature));
        }
        assert_eq!(before, (t.ewma(), t.steps(), t.recent_signatures().count()));
        let clamped = t.update(f32::MAX).unwrap();
        assert_eq!(clamped.signature, SIGNATURE_LIMIT);
        assert!(t.ewma().is_finite());
    }

    #[test]
    fn history_is_bounded_and_reset_forgets() {
        let mut t = tracker();
        for i in 0..(MAX_HISTORY as u32 + 10) {
            t.update(i as f32 * 0.001).unwrap();
        }
        let recent: std::vec::Vec<f32> = t.recent_signatures().collect();
        assert_eq!(recent.len(), MAX_HISTORY);
        assert_eq!(recent[0], 10.0 * 0.001);
        t.reset();
        assert_eq!(t.steps(), 0);
        assert_eq!(t.recent_signatures().count(), 0);
        assert_eq!(t.ewma(), 0.0);
        assert!(!t.is_spiking());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let base = TrackerConfig::default();
        let cases: [(TrackerConfig, &str); 10] = [
            (
                TrackerConfig {
                    abs_threshold: f32::NAN,
                    ..base
                },
                "abs_threshold",
            ),
            (
                TrackerConfig {
                    rise_threshold: 0.0,
                    ..base
                },
                "rise_threshold",
            ),
            (
                TrackerConfig {
                    release_threshold: 1.5,
                    ..base
                },
                "release_threshold",
            ),
            (
                TrackerConfig {
                    window_len: 0,
                    ..base
                },
                "window_len",
            ),
            (
                TrackerConfig {
                    window_len: MAX_HISTORY + 1,
                    ..base
                },
                "window_len",
            ),
            (
                TrackerConfig {
                    min_over_in_window: 6,
                    ..base
                },
                "min_over_in_window",
            ),
            (
                TrackerConfig {
                    min_over_in_window: 0,
                    ..base
                },
                "min_over_in_window",
            ),
            (
                TrackerConfig {
                    release_steps: 0,
                    ..base
                },
                "release_steps",
            ),
            (
                TrackerConfig {
                    ewma_alpha: 0.0,
                    ..base
                },
                "ewma_alpha",
            ),
            (
                TrackerConfig {
                    initial_baseline: 1e7,
                    ..base
                },
                "initial_baseline",
            ),
        ];
        for (config, expected_field) in cases {
            match config.validate() {
                Err(ProbeError::InvalidConfig { field, .. }) => assert_eq!(field, expected_field),
                other => panic!("expected error on {expected_field}, got {other:?}"),
            }
            assert!(SessionTracker::new(config).is_err());
        }
    }

    fn any_signature() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => -5.0f32..5.0,
            1 => proptest::num::f32::ANY,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => Just(f32::MAX),
            1 => Just(f32::MIN),
        ]
    }

    fn valid_config() -> impl Strategy<Value = TrackerConfig> {
        (
            -3.0f32..5.0,
            0.01f32..5.0,
            0.01f32..5.0,
            1usize..=MAX_HISTORY,
            any::<prop::sample::Index>(),
            1u32..10,
            0.001f32..=1.0,
            -2.0f32..2.0,
            any::<bool>(),
        )
            .prop_map(
                |(abs, rise, band, n, k, release_steps, alpha, initial, and_rule)| TrackerConfig {
                    abs_threshold: abs,
                    rise_threshold: rise,
                    over_rule: if and_rule {
                        OverRule::AbsoluteAndRise
                    } else {
                        OverRule::AbsoluteOrRise
                    },
                    window_len: n,
                    min_over_in_window: k.index(n) + 1,
                    release_threshold: abs - band,
                    release_steps,
                    ewma_alpha: alpha,
                    initial_baseline: initial,
                },
            )
    }

    proptest! {
        #[test]
        fn tracker_never_panics_and_stays_consistent(
            config in valid_config(),
            signatures in proptest::collection::vec(any_signature(), 0..300),
        ) {
            prop_assert_eq!(config.validate(), Ok(()));
            let mut t = SessionTracker::new(config).unwrap();
            let mut accepted = 0u32;
            let mut over_run = 0usize;
            for s in signatures {
                let was_spiking = t.is_spiking();
                match t.update(s) {
                    Ok(state) => {
                        accepted += 1;
                        prop_assert!(s.is_finite());
                        prop_assert_eq!(state.steps, accepted);
                        prop_assert!(state.signature.is_finite());
                        prop_assert!(state.ewma.is_finite());
                        prop_assert!(state.rise.is_finite());
                        prop_assert!(t.ewma().is_finite());
                        prop_assert!(t.ewma().abs() <= SIGNATURE_LIMIT);
                        prop_assert_eq!(state.spike, t.is_spiking());
                        let released = was_spiking && !state.spike;
                        over_run = if state.over_threshold && !released { over_run + 1 } else { 0 };
                        // k consecutive over-steps since the last release must mean a spike.
                        if over_run >= config.min_over_in_window {
                            prop_assert!(state.spike);
                        }
                    }
                    Err(error) => {
                        prop_assert!(!s.is_finite());
                        prop_assert_eq!(error, ProbeError::NonFiniteSignature);
                    }
                }
                prop_assert!(t.recent_signatures().count() <= MAX_HISTORY);
            }
        }

        #[test]
        fn tracker_is_deterministic(
            config in valid_config(),
            signatures in proptest::collection::vec(-5.0f32..5.0, 0..100),
        ) {
            let mut a = SessionTracker::new(config).unwrap();
            let mut b = SessionTracker::new(config).unwrap();
            for s in signatures {
                prop_assert_eq!(a.update(s), b.update(s));
            }
        }
    }
}
