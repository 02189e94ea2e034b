//! `[native]`: what native mode (limbic serving the agent's own model) does when the
//! policy reroutes a tool call the model wrote: steer and regenerate, or veto.

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// How a rerouted tool call is handled in native mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeReroute {
    /// Roll the turn back, add the calm control vector, regenerate and decide again.
    Steer,
    /// Withhold the tool call at once.
    #[default]
    Veto,
}

/// What happens when every steered try was still rerouted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeExhausted {
    /// Withhold the tool call; the answer says why.
    #[default]
    Veto,
    /// Withhold the tool call; the answer asks a human to confirm it.
    Confirm,
}

/// Native-mode settings (all optional in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeSettings {
    pub reroute: NativeReroute,
    /// Regenerations after the first try (0..=8).
    pub max_tries: u32,
    /// Steering strength in calibration sigmas: each `toward` emotion's probe reading
    /// rises by about this much at the steered layers, each `away` one falls.
    pub steer_strength: f32,
    /// Blocks to steer; empty: the layers the pack probes the `toward` emotions at.
    pub steer_layers: Vec<u32>,
    pub toward: Vec<String>,
    pub away: Vec<String>,
    pub exhausted: NativeExhausted,
}

impl Default for NativeSettings {
    fn default() -> Self {
        NativeSettings {
            reroute: NativeReroute::default(),
            max_tries: 2,
            steer_strength: 4.0,
            steer_layers: Vec::new(),
            toward: vec!["calm".to_owned()],
            away: vec!["desperation".to_owned()],
            exhausted: NativeExhausted::default(),
        }
    }
}

/// Most regenerations a policy may ask for (each is a whole turn of decoding).
pub const MAX_NATIVE_TRIES: u32 = 8;
/// Strongest steering a policy may ask for, in sigmas (beyond it small models stop
/// writing language).
pub const MAX_STEER_STRENGTH: f32 = 32.0;

impl NativeSettings {
    pub(crate) fn check(&self, origin: &str) -> Result<(), PolicyError> {
        let err = |problem: String| PolicyError::invalid(origin, "[native]", problem);
        if self.max_tries > MAX_NATIVE_TRIES {
            return Err(err(format!(
                "max_tries = {} is more than {MAX_NATIVE_TRIES}",
                self.max_tries
            )));
        }
        if !self.steer_strength.is_finite()
            || self.steer_strength < 0.0
            || self.steer_strength > MAX_STEER_STRENGTH
        {
            return Err(err(format!(
                "steer_strength = {} must be between 0 and {MAX_STEER_STRENGTH}",
                self.steer_strength
            )));
        }
        if self.steer_layers.contains(&0) {
            return Err(err(
                "steer_layers: layer 0 cannot be steered (control vectors start at layer 1)"
                    .to_owned(),
            ));
        }
        if self.reroute == NativeReroute::Steer && self.toward.is_empty() && self.away.is_empty() {
            return Err(err(
                "reroute = \"steer\" needs an emotion in `toward` or `away`".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_veto() {
        let s = NativeSettings::default();
        assert!(s.check("<t>").is_ok());
        assert_eq!(s.reroute, NativeReroute::Veto);
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        for bad in [
            NativeSettings {
                max_tries: 9,
                ..Default::default()
            },
            NativeSettings {
                steer_strength: f32::NAN,
                ..Default::default()
            },
            NativeSettings {
                steer_strength: -1.0,
                ..Default::default()
            },
            NativeSettings {
                steer_layers: vec![0, 3],
                ..Default::default()
            },
            NativeSettings {
                reroute: NativeReroute::Steer,
                toward: vec![],
                away: vec![],
                ..Default::default()
            },
        ] {
            assert!(bad.check("<t>").is_err(), "{bad:?}");
        }
    }
}
