//! Device profiles: how limbic is sized for one kind of machine (threads, GPU layers,
//! context, batch, concurrent sessions, tapped-layer cap, memory budget, fail mode, default
//! policy, text storage). The shipped profiles live in `firmware-configs/profiles/` and are
//! embedded here; any other TOML file of the same shape loads by path.
//!
//! A profile is a ceiling as well as a setting: [`Profile::check_fits`] refuses, with the
//! numbers, a model and context that would not fit the profile's memory budget, so a device
//! fails at start rather than being killed for memory under load.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use limbic_policy::FailMode;
use serde::{Deserialize, Serialize};

use crate::guard::StoreText;

/// The shipped profiles: (name, TOML).
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    (
        "cpu-2core",
        include_str!("../../../firmware-configs/profiles/cpu-2core.toml"),
    ),
    (
        "workstation-cuda",
        include_str!("../../../firmware-configs/profiles/workstation-cuda.toml"),
    ),
    (
        "jetson-orin-nano",
        include_str!("../../../firmware-configs/profiles/jetson-orin-nano.toml"),
    ),
    (
        "raspberry-pi-5",
        include_str!("../../../firmware-configs/profiles/raspberry-pi-5.toml"),
    ),
    (
        "apple-silicon",
        include_str!("../../../firmware-configs/profiles/apple-silicon.toml"),
    ),
];

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "cpu-2core";

/// One device profile (the TOML shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// CPU threads for llama.cpp.
    pub threads: u32,
    /// Layers offloaded to the GPU (999 = all; ignored by CPU-only builds).
    pub gpu_layers: u32,
    /// KV-cache tokens shared by the resident sessions.
    pub n_ctx: u32,
    /// Tokens per decode call.
    pub n_batch: u32,
    /// Sessions resident at once.
    pub max_sessions: u32,
    /// Most layers the vector pack may tap (each tapped layer costs a row copy per token).
    pub max_tapped_layers: u32,
    /// Memory limbic may use for weights, KV cache, compute and saved session states.
    pub memory_budget_mb: u64,
    /// Host memory for the saved KV state of sessions beyond `max_sessions` (restored
    /// instead of re-decoded on their next step). Default: a quarter of
    /// `memory_budget_mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_budget_mb: Option<u64>,
    /// The fail mode this device expects; a policy with another one is refused unless the
    /// policy was chosen explicitly (then it is a warning).
    pub fail_mode: FailMode,
    /// Built-in policy name or a policy file (relative to the profile file).
    pub policy: String,
    /// How step text is written to the audit log.
    #[serde(default)]
    pub store_text: StoreText,
    /// Where the profile was loaded from (not in the file).
    #[serde(skip)]
    pub origin: String,
}

/// What a model needs, for [`Profile::check_fits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub file_bytes: u64,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_vocab: u32,
}

/// The memory estimate behind a fit check, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    pub kv_cache: u64,
    pub compute: u64,
    pub taps: u64,
    pub saved_states: u64,
    pub total: u64,
    pub budget: u64,
}

const MIB: u64 = 1 << 20;

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "~{} MiB (weights {} + KV cache {} + compute {} + taps {} + saved sessions {}) \
             against a budget of {} MiB",
            mib(self.total),
            mib(self.weights),
            mib(self.kv_cache),
            mib(self.compute),
            mib(self.taps),
            mib(self.saved_states),
            mib(self.budget)
        )
    }
}

impl Profile {
    /// A shipped profile by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Profile> {
        let path = Path::new(name_or_path);
        let looks_like_path = name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.contains('/')
            || path.extension().is_some_and(|e| e == "toml");
        if looks_like_path || path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading profile {}", path.display()))?;
            let mut p = Profile::parse(&text, &path.display().to_string())?;
            // A relative policy file is relative to the profile, not to the working directory.
            if is_policy_path(&p.policy) && Path::new(&p.policy).is_relative() {
                if let Some(dir) = path.parent() {
                    p.policy = dir.join(&p.policy).display().to_string();
                }
            }
            return Ok(p);
        }
        match BUILTIN_PROFILES.iter().find(|(n, _)| *n == name_or_path) {
            Some((n, text)) => Profile::parse(text, &format!("<builtin:{n}>")),
            None => bail!(
                "no profile named {name_or_path:?} and no such file; shipped profiles: {}",
                BUILTIN_PROFILES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Parses and checks a profile's TOML.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let mut p: Profile = toml::from_str(text)
            .with_context(|| format!("profile {origin}: not a valid profile"))?;
        p.origin = origin.to_string();
        p.check().with_context(|| format!("profile {origin}"))?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let positive = [
            ("threads", u64::from(self.threads)),
            ("n_ctx", u64::from(self.n_ctx)),
            ("n_batch", u64::from(self.n_batch)),
            ("max_sessions", u64::from(self.max_sessions)),
            ("max_tapped_layers", u64::from(self.max_tapped_layers)),
            ("memory_budget_mb", self.memory_budget_mb),
        ];
        for (field, value) in positive {
            if value == 0 {
                bail!("`{field}` must be at least 1");
            }
        }
        if self.n_ctx / self.max_sessions < 64 {
            bail!(
                "n_ctx {} shared by max_sessions {} leaves {} tokens per session; at least 64 \
                 are needed",
                self.n_ctx,
                self.max_sessions,
                self.n_ctx / self.max_sessions
            );
        }
        if self.policy.trim().is_empty() {
            bail!("`policy` is empty: name a built-in policy or a policy file");
        }
        Ok(())
    }

    /// The policy file, when `policy` names a file rather than a built-in policy.
    pub fn policy_path(&self) -> Option<PathBuf> {
        is_policy_path(&self.policy).then(|| PathBuf::from(&self.policy))
    }

    /// The saved-session budget: `state_budget_mb`, else a quarter of the memory budget.
    pub fn state_budget_mb(&self) -> u64 {
        self.state_budget_mb.unwrap_or(self.memory_budget_mb / 4)
    }

    /// Memory for `model` with `n_ctx` context tokens, `n_batch` tokens per decode and
    /// `tapped` layers under this profile, against its budget: the estimate if it fits, an
    /// error with the numbers if not. An upper bound: KV is counted as f16 at full width
    /// (models with grouped-query attention need less), and saved sessions count at
    /// [`Profile::state_budget_mb`].
    pub fn check_fits(
        &self,
        model: &ModelShape,
        n_ctx: u32,
        n_batch: u32,
        tapped: u32,
    ) -> Result<MemoryEstimate> {
        let budget = self.memory_budget_mb.saturating_mul(MIB);
        let layers = u64::from(model.n_layer);
        let embd = u64::from(model.n_embd);
        let weights = model.file_bytes;
        let kv_cache = 2 * layers * u64::from(n_ctx) * embd * 2;
        // Logits for every token of a batch (tapping the last layer makes all tokens outputs)
        // plus activations of a few batch-wide tensors.
        let compute = u64::from(n_batch) * (u64::from(model.n_vocab) + 16 * embd) * 4;
        let taps = u64::from(tapped) * u64::from(n_batch) * embd * 4;
        let saved_states = self.state_budget_mb().saturating_mul(MIB);
        let total = weights + kv_cache + compute + taps + saved_states;
        let estimate = MemoryEstimate {
            weights,
            kv_cache,
            compute,
            taps,
            saved_states,
            total,
            budget,
        };
        if tapped > self.max_tapped_layers {
            bail!(
                "profile {}: the vector pack taps {tapped} layers, more than this profile's cap \
                 of {} (max_tapped_layers)",
                self.name,
                self.max_tapped_layers
            );
        }
        if total > budget {
            bail!(
                "profile {}: the model does not fit: it needs {estimate} (memory_budget_mb = \
                 {}); lower n_ctx (now {n_ctx}) or max_sessions, use a smaller model, or raise \
                 the budget",
                self.name,
                self.memory_budget_mb
            );
        }
        Ok(estimate)
    }
}

fn is_policy_path(policy: &str) -> bool {
    policy.ends_with(".toml") || policy.contains('/') || policy.contains(std::path::MAIN_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM: ModelShape = ModelShape {
        file_bytes: 92 * MIB,
        n_layer: 30,
        n_embd: 576,
        n_vocab: 49152,
    };

    #[test]
    fn every_shipped_profile_loads_and_names_itself() {
        for (name, _) in BUILTIN_PROFILES {
            let p = Profile::load(name).unwrap();
            assert_eq!(&p.name, name);
            limbic_policy::Policy::builtin(&p.policy).unwrap();
        }
    }

    #[test]
    fn shipped_profiles_fit_the_default_model() {
        for (name, _) in BUILTIN_PROFILES {
            let p = Profile::load(name).unwrap();
            let e = p.check_fits(&SMOLLM, p.n_ctx, p.n_batch, 10).unwrap();
            assert!(e.total <= e.budget, "{name}: {e}");
        }
    }

    #[test]
    fn the_saved_session_budget_defaults_to_a_quarter_of_the_memory_budget() {
        let good = BUILTIN_PROFILES[0].1;
        let p = Profile::parse(good, "t").unwrap();
        assert_eq!(p.state_budget_mb, None);
        assert_eq!(p.state_budget_mb(), p.memory_budget_mb / 4);
        let e = p.check_fits(&SMOLLM, p.n_ctx, p.n_batch, 10).unwrap();
        assert_eq!(e.saved_states, p.state_budget_mb() * MIB);
        let set = Profile::parse(&format!("{good}\nstate_budget_mb = 64\n"), "t").unwrap();
        assert_eq!(set.state_budget_mb(), 64);
        let e = set.check_fits(&SMOLLM, set.n_ctx, set.n_batch, 10).unwrap();
        assert_eq!(e.saved_states, 64 * MIB);
        // A saved-session budget that does not fit is refused like any other part.
        let huge = Profile::parse(&format!("{good}\nstate_budget_mb = 100000\n"), "t").unwrap();
        let err = format!("{:#}", huge.check_fits(&SMOLLM, 4096, 256, 10).unwrap_err());
        assert!(err.contains("saved sessions"), "{err}");
    }

    #[test]
    fn refuses_with_numbers() {
        let mut p = Profile::load("raspberry-pi-5").unwrap();
        p.memory_budget_mb = 300;
        let err = format!("{:#}", p.check_fits(&SMOLLM, 65536, 512, 2).unwrap_err());
        assert!(err.contains("does not fit"), "{err}");
        assert!(err.contains("budget of 300 MiB"), "{err}");
        assert!(err.contains("KV cache"), "{err}");
        let err = format!("{:#}", p.check_fits(&SMOLLM, 2048, 128, 99).unwrap_err());
        assert!(err.contains("taps 99 layers"), "{err}");
    }

    #[test]
    fn rejects_bad_profiles() {
        let good = BUILTIN_PROFILES[0].1;
        assert!(Profile::parse(&good.replace("threads = 2", "threads = 0"), "t").is_err());
        assert!(Profile::parse(&format!("{good}\nbogus = 1\n"), "t").is_err());
        assert!(Profile::parse(&good.replace("n_ctx = 4096", "n_ctx = 100"), "t").is_err());
        assert!(Profile::load("no-such-profile").is_err());
        assert!(Profile::load("/nonexistent/p.toml").is_err());
    }
}
