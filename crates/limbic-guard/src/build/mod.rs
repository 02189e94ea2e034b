//! Building a vector pack: pool → fit → calibrate → weights → write.
//!
//! Prompt texts are rendered and pooled exactly as the guard reads agent steps
//! ([`crate::render`]); one direction per emotion and layer is fitted on the matched pairs,
//! layers are chosen by cross-validation against a permutation control, and calibration and
//! signature weights are computed **through `limbic-probe`'s own types** (`ProbeSet`,
//! `StepAccumulator`, `SignatureWeights`) on the neutral corpus read as agent sessions — the
//! same code path that scores steps at run time, so build and run time cannot disagree on
//! what a z-score or the signature is.

mod collect;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use limbic_engine::{Engine, EngineConfig, Model};
use limbic_probe::{Probe, ProbeSet, SignatureWeights, StepAccumulator, TokenKind};
use limbic_vectors::{
    choose_layers, cross_validate, fit_direction, math, Calibration, ControlVector, CvConfig,
    EmotionEntry, LayerData, Method, ModelInfo, Pack, PackManifest, Pooling, Signature,
};
use sha2::{Digest, Sha256};

pub use collect::{pool_texts, NeutralText, Pooled, PromptPair};

use crate::jsonl::read_jsonl;
use crate::render::TurnFrame;

/// The emotions a pack holds unless told otherwise.
pub const DEFAULT_EMOTIONS: &[&str] = &[
    "desperation",
    "fear",
    "frustration",
    "shame",
    "urgency",
    "calm",
];

/// Neutral steps per calibration session: calibration texts are read in context, as the
/// guard reads an agent's steps.
const CALIBRATION_SESSION_STEPS: usize = 6;

/// How to build a pack.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Emotions to build; each needs `<prompts>/<emotion>.jsonl`.
    pub emotions: Vec<String>,
    /// The folder of prompt sets (with `neutral.jsonl`).
    pub prompts: PathBuf,
    pub method: Method,
    /// Probe layers chosen per emotion.
    pub layers_per_emotion: usize,
    /// Top principal components of neutral text projected out of every direction.
    pub neutral_components: usize,
    /// Cross-validation folds.
    pub folds: usize,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            emotions: DEFAULT_EMOTIONS.iter().map(|s| s.to_string()).collect(),
            prompts: PathBuf::from("vectors/prompts"),
            method: Method::DiffOfMeans,
            layers_per_emotion: 3,
            neutral_components: 2,
            folds: 5,
        }
    }
}

/// What a build chose.
pub struct BuildReport {
    pub out_dir: PathBuf,
    pub emotions: Vec<EmotionBuild>,
}

/// One emotion's build: how many pairs, which layers were chosen and on what evidence.
pub struct EmotionBuild {
    pub emotion: String,
    pub pairs: usize,
    pub chosen: Vec<ChosenLayer>,
}

pub struct ChosenLayer {
    pub layer: u32,
    /// Cross-validated AUROC of the pairs at this layer.
    pub cv_auroc: f64,
    /// The same with shuffled labels (the control).
    pub perm_auroc: f64,
}

/// Each probe's calibration, by emotion index.
type ProbeCalibrations = Vec<(usize, Calibration)>;

/// One emotion's fitted directions (every layer) and the layers chosen as probes.
struct Fitted {
    entry: EmotionEntry,
    vector: ControlVector,
}

/// Builds a pack for `model` from the prompt sets and writes it to `out_dir`.
pub fn build_pack(model: Arc<Model>, config: &BuildConfig, out_dir: &Path) -> Result<BuildReport> {
    let info = model.info().clone();
    // Prompt sets, and their hash (recorded in the pack so a rebuild can be checked).
    let mut hasher = Sha256::new();
    let mut sets = Vec::new();
    for emotion in &config.emotions {
        let path = config.prompts.join(format!("{emotion}.jsonl"));
        let pairs: Vec<PromptPair> = read_jsonl(&path)?;
        hasher.update(std::fs::read(&path)?);
        sets.push((emotion.clone(), pairs));
    }
    let neutral_path = config.prompts.join("neutral.jsonl");
    let neutral: Vec<NeutralText> = read_jsonl(&neutral_path)?;
    hasher.update(std::fs::read(&neutral_path)?);
    let prompts_hash = format!("sha256:{}", hex::encode(hasher.finalize()));

    // Every layer that a control vector can hold (llama.cpp skips layer 0); the last layer
    // is left out because tapping it forces logits for every token.
    let layers: Vec<u32> = (1..info.n_layer.saturating_sub(1)).collect();
    let mut engine = Engine::new(
        model.clone(),
        EngineConfig {
            n_ctx: 4096,
            max_sessions: 1,
            taps: layers.clone(),
            ..Default::default()
        },
    )?;
    let frame = TurnFrame::for_model(&model)?;
    tracing::info!(
        "building {} emotion vectors for {} ({} layers tapped, method {:?})",
        sets.len(),
        info.name.as_deref().unwrap_or(&info.arch),
        layers.len(),
        config.method
    );
    let neutral_texts: Vec<&str> = neutral.iter().map(|n| n.text.as_str()).collect();
    // Calibration reads the neutral corpus as agent sessions (the guard's condition);
    // the neutral variance to project out is taken from the same rows.
    let neutral_rows = pool_texts(
        &mut engine,
        &model,
        &frame,
        &neutral_texts,
        "neutral",
        CALIBRATION_SESSION_STEPS,
    )?;
    let neutral_basis: Vec<Vec<Vec<f32>>> = (0..layers.len())
        .map(|slot| {
            let rows: Vec<&[f32]> = neutral_rows
                .rows
                .iter()
                .map(|r| r[slot].as_slice())
                .collect();
            centered_components(&rows, config.neutral_components)
        })
        .collect();

    let cv = CvConfig {
        folds: config.folds,
        method: config.method,
        ..Default::default()
    };
    let mut fitted = Vec::new();
    let mut report = Vec::new();
    for (emotion, pairs) in &sets {
        let pos: Vec<&str> = pairs.iter().map(|p| p.positive.as_str()).collect();
        let neg: Vec<&str> = pairs.iter().map(|p| p.negative.as_str()).collect();
        let pos_rows = pool_texts(
            &mut engine,
            &model,
            &frame,
            &pos,
            &format!("{emotion} +"),
            1,
        )?;
        let neg_rows = pool_texts(
            &mut engine,
            &model,
            &frame,
            &neg,
            &format!("{emotion} -"),
            1,
        )?;
        let data: Vec<LayerData> = layers
            .iter()
            .enumerate()
            .map(|(slot, &layer)| LayerData {
                layer,
                pos: pos_rows.rows.iter().map(|r| r[slot].clone()).collect(),
                neg: neg_rows.rows.iter().map(|r| r[slot].clone()).collect(),
                neutral_basis: neutral_basis[slot].clone(),
            })
            .collect();
        let reports = cross_validate(&data, &cv)?;
        let mut chosen = choose_layers(&reports, info.n_layer, config.layers_per_emotion);
        if chosen.is_empty() {
            bail!("{emotion}: no layer separates the pairs");
        }
        chosen.sort_unstable();
        let mut directions = BTreeMap::new();
        for d in &data {
            let p: Vec<&[f32]> = d.pos.iter().map(Vec::as_slice).collect();
            let n: Vec<&[f32]> = d.neg.iter().map(Vec::as_slice).collect();
            let dir = fit_direction(&p, &n, config.method, &d.neutral_basis, cv.pca_iters);
            directions.insert(d.layer, dir);
        }
        report.push(EmotionBuild {
            emotion: emotion.clone(),
            pairs: pairs.len(),
            chosen: reports
                .iter()
                .filter(|r| chosen.contains(&r.layer))
                .map(|r| ChosenLayer {
                    layer: r.layer,
                    cv_auroc: r.cv_auroc,
                    perm_auroc: r.perm_auroc,
                })
                .collect(),
        });
        fitted.push(Fitted {
            entry: EmotionEntry {
                file: format!("{emotion}.gguf"),
                layers: chosen,
                pooling: Pooling::Mean,
                sign: 1,
                method: config.method,
                calibration: Vec::new(),
                selection: reports,
            },
            vector: ControlVector {
                model_hint: info.arch.clone(),
                n_embd: info.n_embd,
                directions,
            },
        });
    }

    let (weights, calibrations) = calibrate(&config.emotions, &fitted, &neutral_rows, &layers)?;
    for (emotion, calibration) in calibrations {
        fitted[emotion].entry.calibration.push(calibration);
    }
    let mut entries = BTreeMap::new();
    let mut vectors = BTreeMap::new();
    for (emotion, f) in config.emotions.iter().zip(fitted) {
        entries.insert(emotion.clone(), f.entry);
        vectors.insert(emotion.clone(), f.vector);
    }
    let manifest = PackManifest {
        limbic_version: env!("CARGO_PKG_VERSION").to_string(),
        prompts_hash,
        model: ModelInfo {
            name: crate::home::model_dir_name(&model),
            sha256: info.sha256.clone(),
            arch: info.arch.clone(),
            n_embd: info.n_embd,
            n_layer: info.n_layer,
        },
        emotions: entries,
        signature: Some(Signature { weights }),
    };
    let mut pack = Pack::new(manifest, vectors)?;
    pack.save(out_dir)?;
    Ok(BuildReport {
        out_dir: out_dir.to_path_buf(),
        emotions: report,
    })
}

/// Calibrates every chosen probe on the neutral corpus and scales the default emotion
/// weights so the combined signature has unit standard deviation there: the signature then
/// reads in "neutral sigmas", which is what policy and tracker thresholds are written in.
///
/// Both steps go through the run-time scoring types. A pooled neutral text is one mean row
/// per layer, fed as one scored token: by linearity its mean z equals the mean of the
/// per-token z the guard computes over the same words.
/// Returns the signature weights and each probe's calibration.
fn calibrate(
    emotions: &[String],
    fitted: &[Fitted],
    neutral: &Pooled,
    layers: &[u32],
) -> Result<(BTreeMap<String, f64>, ProbeCalibrations)> {
    let n_embd = fitted
        .first()
        .map(|f| f.vector.n_embd as usize)
        .ok_or_else(|| anyhow!("no emotion to calibrate"))?;
    let slot_of = |layer: u32| {
        layers
            .iter()
            .position(|&l| l == layer)
            .ok_or_else(|| anyhow!("layer {layer} was not tapped"))
    };
    // Probes in emotion order: (emotion index, layer, direction).
    let mut probes: Vec<(usize, u32, &[f32])> = Vec::new();
    for (index, f) in fitted.iter().enumerate() {
        for &layer in &f.entry.layers {
            let dir = f
                .vector
                .directions
                .get(&layer)
                .ok_or_else(|| anyhow!("{}: no direction at {layer}", emotions[index]))?;
            probes.push((index, layer, dir));
        }
    }
    let probe_set = |stats: Option<&[(f32, f32)]>| -> Result<ProbeSet<'_>> {
        let mut set = ProbeSet::new(n_embd, fitted.len()).map_err(|e| anyhow!("{e:?}"))?;
        for (i, &(emotion, layer, direction)) in probes.iter().enumerate() {
            let (mean, std) = stats.map_or((0.0, 1.0), |s| s[i]);
            set.push(Probe {
                emotion,
                layer,
                direction,
                mean,
                std,
            })
            .map_err(|e| anyhow!("probe {}@{layer}: {e:?}", emotions[emotion]))?;
        }
        Ok(set)
    };
    let rows_of = |text: &[Vec<f32>]| -> Result<Vec<(u32, Vec<f32>)>> {
        let mut rows = Vec::new();
        for &layer in layers {
            rows.push((layer, text[slot_of(layer)?].clone()));
        }
        Ok(rows)
    };

    // 1. Raw projections of every neutral text on every probe → mean and std.
    let raw = probe_set(None)?;
    let mut projections = vec![Vec::with_capacity(neutral.rows.len()); probes.len()];
    for text in &neutral.rows {
        for (layer, row) in rows_of(text)? {
            for reading in raw.project(layer, &row).map_err(|e| anyhow!("{e:?}"))? {
                projections[reading.probe].push(reading.projection);
            }
        }
    }
    let mut stats = Vec::with_capacity(probes.len());
    for (values, &(emotion, layer, _)) in projections.iter().zip(&probes) {
        let (mean, std) = math::mean_std(values);
        if std <= 0.0 || !std.is_finite() {
            bail!(
                "{}: degenerate calibration at layer {layer}",
                emotions[emotion]
            );
        }
        stats.push((mean, std));
    }
    let calibrations: ProbeCalibrations = probes
        .iter()
        .zip(&stats)
        .map(|(&(emotion, layer, _), &(mean, std))| {
            (
                emotion,
                Calibration {
                    layer,
                    mean: f64::from(mean),
                    std: f64::from(std),
                },
            )
        })
        .collect();

    // 2. The signature of every neutral text under the default weights → its std.
    let set = probe_set(Some(&stats))?;
    let names: Vec<&str> = emotions.iter().map(String::as_str).collect();
    let base = SignatureWeights::defaults_for(&names).map_err(|e| anyhow!("{e:?}"))?;
    let mut signatures = Vec::with_capacity(neutral.rows.len());
    for text in &neutral.rows {
        let rows = rows_of(text)?;
        let mut acc = StepAccumulator::new(&set);
        acc.feed_token(
            &set,
            rows.iter().map(|(l, r)| (*l, r.as_slice())),
            TokenKind::Scored,
        )
        .map_err(|e| anyhow!("neutral text: {e:?}"))?;
        signatures.push(f64::from(base.stress_signature(&acc.finish())));
    }
    let n = signatures.len() as f64;
    let mean = signatures.iter().sum::<f64>() / n;
    let std =
        (signatures.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    if !(std.is_finite() && std > 0.0) {
        bail!("degenerate signature calibration (std {std})");
    }
    let weights = emotions
        .iter()
        .zip(base.weights())
        .map(|(e, w)| (e.clone(), f64::from(*w) / std))
        .collect();
    Ok((weights, calibrations))
}

/// Top principal components of rows after centering (the directions neutral text varies
/// along most, which say nothing about affect).
fn centered_components(rows: &[&[f32]], k: usize) -> Vec<Vec<f32>> {
    if k == 0 || rows.is_empty() {
        return Vec::new();
    }
    let mean = math::mean_rows(rows);
    let centered: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(a, m)| a - m).collect())
        .collect();
    let refs: Vec<&[f32]> = centered.iter().map(Vec::as_slice).collect();
    math::top_components(&refs, k, 100)
}
