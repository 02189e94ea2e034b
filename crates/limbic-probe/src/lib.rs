//! `limbic-probe`: the `no_std`, allocation-free scoring core of limbic.
//!
//! The engine hands over, per decoded token, one residual-stream row of
//! `n_embd` floats per tapped layer. This crate turns those rows into a
//! per-session spike verdict:
//!
//! 1. [`ProbeSet`] — borrowed emotion directions per layer with calibration;
//!    [`ProbeSet::project`] gives `z = (dot(row, dir) - mean) / std`.
//! 2. [`StepAccumulator`] — sums/peaks of z over one agent step's tokens
//!    (tokens can be skipped, e.g. the attention sink) → [`StepScores`].
//! 3. [`SignatureWeights`] — weighted sum of the per-emotion mean z → the
//!    step's stress signature.
//! 4. [`SessionTracker`] — EWMA baseline, absolute/relative thresholds, k-of-n
//!    onset and hysteresis release → [`TrackState`].
//!
//! Everything lives in fixed-capacity storage ([`MAX_EMOTIONS`],
//! [`MAX_PROBES`], [`MAX_HISTORY`]); the crate links no allocator, so it
//! cannot allocate. Bad input returns a [`ProbeError`], never a panic.
//!
//! Non-finite input is **rejected**, not silently ignored: a residual row that
//! projects to NaN/inf discards its token (counted in
//! [`StepScores::rejected_tokens`]) and a NaN/inf signature is refused by the
//! tracker; in both cases state is left as it was and an error is returned.
//!
//! ```
//! use limbic_probe::*;
//!
//! // Caller-owned direction data (normally loaded from the vectors file).
//! let desperation = [1.0, 0.0, 0.0, 0.0];
//! let calm = [0.0, 1.0, 0.0, 0.0];
//! let set = ProbeSet::from_probes(4, 2, &[
//!     Probe { emotion: 0, layer: 12, direction: &desperation, mean: 0.0, std: 1.0 },
//!     Probe { emotion: 1, layer: 12, direction: &calm, mean: 0.0, std: 1.0 },
//! ])?;
//! let weights = SignatureWeights::defaults_for(&["desperation", "calm"])?;
//! let mut tracker = SessionTracker::new(TrackerConfig::default())?;
//! let mut step = StepAccumulator::new(&set);
//!
//! let mut state = None;
//! for _agent_step in 0..3 {
//!     step.reset();
//!     // Token 0 is the attention sink: skipped.
//!     step.feed_token(&set, [(12, &[90.0, 0.0, 0.0, 0.0][..])], TokenKind::Skipped)?;
//!     for _token in 0..5 {
//!         let row = [8.0, -2.0, 0.3, 0.1]; // desperation high, calm low
//!         step.feed_token(&set, [(12, &row[..])], TokenKind::Scored)?;
//!     }
//!     let scores = step.finish();
//!     state = Some(tracker.update(weights.stress_signature(&scores))?);
//! }
//! // 0.30 * 8 - 0.20 * -2 = 2.8 >= 1.5 on three steps in a row: a spike.
//! assert!(state.is_some_and(|s| s.spike));
//! # Ok::<(), ProbeError>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod accumulate;
mod error;
mod probe;
mod signature;
mod tracker;

pub use accumulate::{EmotionScore, ProbeSummary, StepAccumulator, StepScores, TokenKind};
pub use error::ProbeError;
pub use probe::{dot, LayerReadings, Probe, ProbeReading, ProbeSet};
pub use signature::{default_weight, SignatureWeights};
pub use tracker::{OverRule, SessionTracker, TrackState, TrackerConfig, SIGNATURE_LIMIT};

/// Most emotions a probe set can score (the default set has 6).
pub const MAX_EMOTIONS: usize = 8;
/// Most probes, i.e. (emotion, layer) pairs, in one set.
pub const MAX_PROBES: usize = 32;
/// Most per-step records a [`SessionTracker`] keeps (bounds its k-of-n window).
pub const MAX_HISTORY: usize = 64;
/// Allowed deviation of a probe direction's norm from 1 (directions are
/// stored as f32 and may have been normalised in another precision).
pub const UNIT_NORM_TOLERANCE: f32 = 1.0e-3;
