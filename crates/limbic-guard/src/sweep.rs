//! Choosing a policy's operating point from measured curves instead of hand-set constants.
//!
//! Every labelled step is scored once (as the guard reads it: appended to its session);
//! then the policy is re-decided for a grid of threshold settings. For each setting and
//! each group of domains this gives **block recall** (steps labelled `block` that the
//! guard stops: veto or reroute) and **calm false veto** (steps labelled calm and
//! harmless that it stops). The operating point is chosen on tuning domains only and
//! reported on held-out domains, and leave-one-domain-out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use limbic_engine::{EngineConfig, Model};
use limbic_policy::{Policy, StepView};
use limbic_vectors::{math, Pack};
use serde::Serialize;

use crate::api::NO_WORDS;
use crate::eval::LabelledStep;
use crate::scorer::Scorer;

/// The thresholds swept, in the policy's `[thresholds]` table.
pub const SWEPT: [&str; 3] = ["medium_confirm", "unknown_confirm", "action_confirm"];

/// One step's probe reading, kept for re-deciding.
pub struct ScoredStep {
    pub step: LabelledStep,
    pub stress: f32,
    pub spike: bool,
    pub scores: Vec<(String, f32)>,
}

/// Scores every step once with the pack's probes.
pub fn score_steps(
    model: Arc<Model>,
    pack: &Pack,
    steps: &[LabelledStep],
) -> Result<Vec<ScoredStep>> {
    let mut scorer = Scorer::new(
        model,
        pack,
        EngineConfig {
            max_sessions: 8,
            ..Default::default()
        },
    )?;
    let bar = indicatif::ProgressBar::new(steps.len() as u64);
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let text = if step.text.trim().is_empty() {
            NO_WORDS
        } else {
            &step.text
        };
        let reading = scorer
            .score(&step.session, text, &step.action.text())
            .with_context(|| format!("scoring session {} ", step.session))?;
        out.push(ScoredStep {
            step: step.clone(),
            stress: reading.signature,
            spike: reading.track.spike,
            scores: reading.scores,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Recall and calm false veto of one setting on one group of steps.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rates {
    pub blocks: usize,
    pub blocks_stopped: usize,
    pub calm: usize,
    pub calm_stopped: usize,
    /// Stressed steps with nothing to block that were stopped anyway.
    pub distress_benign: usize,
    pub distress_benign_stopped: usize,
}

impl Rates {
    pub fn recall(&self) -> f64 {
        ratio(self.blocks_stopped, self.blocks)
    }
    pub fn calm_false_veto(&self) -> f64 {
        ratio(self.calm_stopped, self.calm)
    }
    fn add(&mut self, step: &LabelledStep, stopped: bool) {
        let s = usize::from(stopped);
        if step.block == 1 {
            self.blocks += 1;
            self.blocks_stopped += s;
        } else if step.stress == 0 {
            self.calm += 1;
            self.calm_stopped += s;
        } else {
            self.distress_benign += 1;
            self.distress_benign_stopped += s;
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// One grid point: the swept thresholds' values.
pub type Setting = [f32; SWEPT.len()];

/// The policy with the swept thresholds replaced.
pub fn policy_with(base: &Policy, setting: &Setting) -> Result<Policy> {
    let mut doc: toml::Table = toml::from_str(base.source()).context("re-reading the policy")?;
    let thresholds = doc
        .get_mut("thresholds")
        .and_then(|t| t.as_table_mut())
        .ok_or_else(|| anyhow!("the policy has no [thresholds] table"))?;
    for (name, value) in SWEPT.iter().zip(setting) {
        thresholds.insert(
            (*name).to_string(),
            toml::Value::Float(f64::from((value * 100.0).round() / 100.0)),
        );
    }
    let source = toml::to_string(&doc)?;
    Policy::parse(&source, base.origin()).map_err(|e| anyhow!("{e}"))
}

/// Whether each step is stopped under `policy`.
pub fn decide_all(policy: &Policy, steps: &[ScoredStep]) -> Vec<bool> {
    steps
        .iter()
        .map(|s| {
            let named: Vec<(&str, f32)> = s.scores.iter().map(|(n, z)| (n.as_str(), *z)).collect();
            let view = StepView::new(&s.step.action.tool, &s.step.action.args, s.stress)
                .with_spike(s.spike)
                .with_scores(&named)
                .with_text(Some(&s.step.text));
            policy.decide(&view).kind.blocks_action()
        })
        .collect()
}

/// Rates of `stopped` over the steps whose domain passes `keep`.
pub fn rates(steps: &[ScoredStep], stopped: &[bool], keep: impl Fn(&str) -> bool) -> Rates {
    let mut r = Rates::default();
    for (s, &stop) in steps.iter().zip(stopped) {
        if keep(s.step.domain.as_deref().unwrap_or("dev")) {
            r.add(&s.step, stop);
        }
    }
    r
}

/// The grid: every combination of the swept thresholds over `values`.
pub fn grid(values: &[f32]) -> Vec<Setting> {
    let mut out = Vec::new();
    for &a in values {
        for &b in values {
            for &c in values {
                out.push([a, b, c]);
            }
        }
    }
    out
}

/// The best setting on some steps: the highest recall with calm false veto at most
/// `max_false_veto`; ties go to the higher (more permissive) thresholds.
pub fn choose(
    decisions: &[(Setting, Vec<bool>)],
    steps: &[ScoredStep],
    keep: impl Fn(&str) -> bool + Copy,
    max_false_veto: f64,
) -> Option<(Setting, Rates)> {
    let mut best: Option<(Setting, Rates)> = None;
    for (setting, stopped) in decisions {
        let r = rates(steps, stopped, keep);
        if r.calm_false_veto().is_nan() || r.calm_false_veto() > max_false_veto {
            continue;
        }
        let better = match &best {
            None => true,
            Some((s, b)) => {
                let (rb, rr) = (b.recall(), r.recall());
                rr > rb + 1e-9
                    || ((rr - rb).abs() < 1e-9
                        && setting.iter().sum::<f32>() > s.iter().sum::<f32>())
            }
        };
        if better {
            best = Some((*setting, r));
        }
    }
    best
}

/// Stress AUROC (signature vs the `stress` label) over the steps whose domain passes `keep`.
pub fn stress_auroc(steps: &[ScoredStep], keep: impl Fn(&str) -> bool) -> Option<f64> {
    let (scores, labels): (Vec<f32>, Vec<bool>) = steps
        .iter()
        .filter(|s| keep(s.step.domain.as_deref().unwrap_or("dev")))
        .map(|s| (s.stress, s.step.stress == 1))
        .unzip();
    math::auroc(&scores, &labels)
}

/// The domains present, sorted.
pub fn domains(steps: &[ScoredStep]) -> BTreeSet<String> {
    steps
        .iter()
        .map(|s| s.step.domain.clone().unwrap_or_else(|| "dev".into()))
        .collect()
}

/// Per-domain rates of one set of decisions.
pub fn per_domain(steps: &[ScoredStep], stopped: &[bool]) -> BTreeMap<String, Rates> {
    domains(steps)
        .into_iter()
        .map(|d| {
            let r = rates(steps, stopped, |x| x == d);
            (d, r)
        })
        .collect()
}
