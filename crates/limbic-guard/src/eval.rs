//! Measuring probes on labelled steps: steps are replayed exactly as the guard sees them
//! (each appended to its session, so earlier steps are context). Per emotion and layer:
//! AUROC of the raw projection against the `stress` label with a bootstrap interval and a
//! label-permutation control; then the per-emotion calibrated scores, the combined stress
//! signature, and a keyword baseline computed on the same steps.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use limbic_engine::{EngineConfig, Model};
use limbic_vectors::{auroc_table, math, AurocTable, EvalConfig, Pack};
use serde::Deserialize;

use crate::api::Action;
use crate::scorer::Scorer;

/// One labelled step (`tests/data/*.jsonl`); other fields of a line are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledStep {
    pub session: String,
    pub text: String,
    pub action: Action,
    pub stress: u8,
    #[serde(default)]
    pub block: u8,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// Both tables of an evaluation.
pub struct Evaluation {
    pub steps: usize,
    pub stressed: usize,
    /// Raw projection per emotion and layer.
    pub per_layer: AurocTable,
    /// Calibrated per-emotion scores, the stress signature and the keyword baseline
    /// (layer 0 stands for "the pack's chosen layers, calibrated and averaged").
    pub summary: AurocTable,
}

/// Words a naive filter would flag. It includes alarming technical words on purpose:
/// that is what keyword matching does, and what the probes must do better than.
pub const STRESS_KEYWORDS: &[&str] = &[
    "desperate",
    "panic",
    "panicking",
    "hurry",
    "asap",
    "urgent",
    "urgently",
    "immediately",
    "now",
    "again",
    "damn",
    "stupid",
    "ugh",
    "hate",
    "scared",
    "afraid",
    "worried",
    "terrified",
    "hide",
    "nobody",
    "quick",
    "quickly",
    "deadline",
    "fail",
    "failed",
    "failing",
    "can't",
    "cannot",
    "fatal",
    "kill",
    "critical",
    "disaster",
    "angry",
    "furious",
    "fired",
    "blame",
];

/// Keyword hits per word of the step.
pub fn keyword_score(text: &str) -> f32 {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let hits = words
        .iter()
        .filter(|w| STRESS_KEYWORDS.contains(&w.as_str()))
        .count() as f32
        + text.matches('!').count() as f32;
    hits / (words.len().max(1) as f32).sqrt()
}

/// Scores `steps` with `pack` on `model` and computes both AUROC tables.
pub fn evaluate(
    model: Arc<Model>,
    pack: &Pack,
    steps: &[LabelledStep],
    resamples: usize,
) -> Result<Evaluation> {
    let n_layer = model.info().n_layer;
    // Observe every layer the pack's files hold, so the table shows the whole landscape.
    let mut all_layers: Vec<u32> = pack
        .emotions()
        .filter_map(|e| pack.vector(e))
        .flat_map(|v| v.directions.keys().copied())
        .filter(|&l| l + 1 < n_layer)
        .collect();
    all_layers.sort_unstable();
    all_layers.dedup();
    let mut scorer = Scorer::new(
        model.clone(),
        pack,
        EngineConfig {
            taps: all_layers.clone(),
            max_sessions: 4,
            ..Default::default()
        },
    )?;
    let emotions: Vec<String> = scorer.emotions().to_vec();
    // Directions per (emotion, layer), signed so higher = more of the emotion.
    let mut directions: Vec<(String, u32, Vec<f32>)> = Vec::new();
    for e in &emotions {
        let sign = pack.emotion(e).map_or(1.0, |x| f32::from(x.sign.signum()));
        for &l in &all_layers {
            if let Some(d) = pack.direction(e, l) {
                directions.push((e.clone(), l, d.iter().map(|v| v * sign).collect()));
            }
        }
    }
    let n_embd = model.info().n_embd as usize;
    let mut raw: Vec<Vec<f32>> = vec![Vec::with_capacity(steps.len()); directions.len()];
    let mut emotion_scores: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut signature = Vec::new();
    let mut keyword = Vec::new();
    let mut labels = Vec::new();
    let bar = indicatif::ProgressBar::new(steps.len() as u64);
    for step in steps {
        let mut sums = vec![0.0f32; directions.len()];
        let mut count = 0usize;
        let action = step.action.text();
        let reading =
            scorer.score_observed(&step.session, &step.text, &action, &mut |tap, scored| {
                if !scored {
                    return;
                }
                count += 1;
                for (i, (_, layer, dir)) in directions.iter().enumerate() {
                    if let Some(row) = tap.rows.layer(*layer) {
                        debug_assert_eq!(row.len(), n_embd);
                        sums[i] += math::dot(row, dir);
                    }
                }
            })?;
        for (i, s) in sums.iter().enumerate() {
            raw[i].push(s / count.max(1) as f32);
        }
        for (name, z) in &reading.scores {
            emotion_scores.entry(name.clone()).or_default().push(*z);
        }
        signature.push(reading.signature);
        keyword.push(keyword_score(&step.text));
        labels.push(step.stress == 1);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !labels.iter().any(|&l| l) || labels.iter().all(|&l| l) {
        bail!("the labelled steps need both stressed and calm steps");
    }

    let config = EvalConfig {
        bootstrap_resamples: resamples,
        permutations: resamples,
        ..Default::default()
    };
    let per_layer: Vec<limbic_vectors::StepScores> = directions
        .iter()
        .zip(&raw)
        .map(|((e, l, _), scores)| limbic_vectors::StepScores {
            emotion: e.clone(),
            layer: *l,
            scores: scores.clone(),
            labels: labels.clone(),
        })
        .collect();
    let layer_table = auroc_table(&per_layer, &config)?;
    // Layer 0 stands for "the pack's chosen layers, calibrated and averaged".
    let mut summary_inputs: Vec<limbic_vectors::StepScores> = emotion_scores
        .iter()
        .map(|(e, s)| limbic_vectors::StepScores {
            emotion: e.clone(),
            layer: 0,
            scores: s.clone(),
            labels: labels.clone(),
        })
        .collect();
    summary_inputs.push(limbic_vectors::StepScores {
        emotion: "stress_signature".into(),
        layer: 0,
        scores: signature.clone(),
        labels: labels.clone(),
    });
    summary_inputs.push(limbic_vectors::StepScores {
        emotion: "keyword_baseline".into(),
        layer: 0,
        scores: keyword.clone(),
        labels: labels.clone(),
    });
    let summary = auroc_table(&summary_inputs, &config)?;
    Ok(Evaluation {
        steps: labels.len(),
        stressed: labels.iter().filter(|&&l| l).count(),
        per_layer: layer_table,
        summary,
    })
}
