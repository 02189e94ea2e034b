//! `limbic vectors build | inspect | eval`: make emotion vector packs from the contrastive
//! prompt sets, look inside any control-vector file, and measure a pack on labelled steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use limbic_engine::{Engine, EngineConfig, Model};
use limbic_vectors::{
    choose_layers, cross_validate, fit_direction, math, Calibration, ControlVector, CvConfig,
    EmotionEntry, LayerData, LayerReport, Method, ModelInfo, Pack, PackManifest, Pooling,
    Signature,
};
use sha2::{Digest, Sha256};

use crate::collect::{pool_texts, read_jsonl, NeutralText, PromptPair};
use crate::render::TurnFrame;

pub const DEFAULT_EMOTIONS: &[&str] = &[
    "desperation",
    "fear",
    "frustration",
    "shame",
    "urgency",
    "calm",
];

#[derive(Subcommand)]
pub enum VectorsCmd {
    /// Build a vector pack for a model from the contrastive prompt sets.
    Build(BuildArgs),
    /// Show what a control-vector GGUF holds (limbic's, llama.cpp's or repeng's).
    Inspect {
        /// A control-vector .gguf file, or a pack directory.
        path: PathBuf,
    },
    /// Measure a pack on labelled steps: AUROC per emotion and layer, the combined stress
    /// signature, a permutation control and a keyword baseline; table + PNG plot.
    Eval(crate::eval_cmd::EvalArgs),
}

#[derive(Args)]
pub struct BuildArgs {
    /// A GGUF path or a known model name.
    #[arg(long)]
    model: Option<String>,
    /// Emotions to build (comma-separated); each needs vectors/prompts/<emotion>.jsonl.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_EMOTIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    emotions: Vec<String>,
    /// Where the prompt sets are.
    #[arg(long, default_value = "vectors/prompts")]
    prompts: PathBuf,
    /// Output pack directory (default: vectors/<model-name>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Direction recipe: diff_of_means (llama.cpp cvector-generator style) or pca (repeng style).
    #[arg(long, default_value = "diff-of-means", value_parser = ["diff-of-means", "pca"])]
    method: String,
    /// Probe layers chosen per emotion (by cross-validated margin over the permutation control).
    #[arg(long, default_value_t = 3)]
    layers_per_emotion: usize,
    /// Top principal components of neutral text projected out of every direction.
    #[arg(long, default_value_t = 2)]
    neutral_components: usize,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Rebuild the committed pack of every known model (fetching models as needed) into
    /// vectors/<model>/; ignores --model and --out.
    #[arg(long)]
    all_models: bool,
}

pub fn run(cmd: VectorsCmd) -> Result<ExitCode> {
    match cmd {
        VectorsCmd::Build(args) => build(args),
        VectorsCmd::Inspect { path } => inspect(&path),
        VectorsCmd::Eval(args) => crate::eval_cmd::run(args),
    }
}

/// The committed pack for a model: `vectors/<known-name>/`, found next to the working
/// directory or the executable's repository.
pub fn default_pack_dir(model: &Model) -> Result<PathBuf> {
    let info = model.info();
    let name = crate::models::KNOWN_MODELS
        .iter()
        .find(|m| m.sha256 == info.sha256)
        .map(|m| m.name)
        .ok_or_else(|| {
            anyhow!(
                "no committed vector pack for {} (sha256 {}): build one with \
                 `limbic vectors build --model {}` and pass --pack",
                info.path.display(),
                &info.sha256[..12],
                info.path.display()
            )
        })?;
    let candidates = [
        std::env::var_os("LIMBIC_VECTORS").map(PathBuf::from),
        Some(PathBuf::from("vectors")),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vectors")),
    ];
    for base in candidates.into_iter().flatten() {
        let dir = base.join(name);
        if dir.join(limbic_vectors::pack::MANIFEST_FILE).exists() {
            return Ok(dir);
        }
    }
    bail!("no vector pack found for {name}: expected vectors/{name}/pack.toml (or set LIMBIC_VECTORS / --pack)")
}

fn model_dir_name(model: &Model) -> String {
    let info = model.info();
    crate::models::KNOWN_MODELS
        .iter()
        .find(|m| m.sha256 == info.sha256)
        .map(|m| m.name.to_string())
        .unwrap_or_else(|| {
            info.path
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "model".into())
        })
}

fn build(args: BuildArgs) -> Result<ExitCode> {
    if args.all_models {
        for known in crate::models::KNOWN_MODELS {
            build_one(&args, Some(known.name), None)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    build_one(&args, args.model.as_deref(), args.out.clone())
}

fn build_one(args: &BuildArgs, model: Option<&str>, out: Option<PathBuf>) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let model = crate::load_model(model)?;
    let info = model.info().clone();
    let method = if args.method == "pca" {
        Method::Pca
    } else {
        Method::DiffOfMeans
    };
    // Prompt sets, and their hash (recorded in the pack so a rebuild can be checked).
    let mut hasher = Sha256::new();
    let mut sets = Vec::new();
    for emotion in &args.emotions {
        let path = args.prompts.join(format!("{emotion}.jsonl"));
        let pairs: Vec<PromptPair> = read_jsonl(&path)?;
        hasher.update(std::fs::read(&path)?);
        sets.push((emotion.clone(), pairs));
    }
    let neutral_path = args.prompts.join("neutral.jsonl");
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
    eprintln!(
        "building {} emotion vectors for {} ({} layers tapped, method {:?})",
        sets.len(),
        info.name.as_deref().unwrap_or(&info.arch),
        layers.len(),
        method
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
            centered_components(&rows, args.neutral_components)
        })
        .collect();

    let out_dir = out.unwrap_or_else(|| PathBuf::from("vectors").join(model_dir_name(&model)));
    let cv = CvConfig {
        folds: args.folds,
        method,
        ..Default::default()
    };
    let mut entries = BTreeMap::new();
    let mut vectors = BTreeMap::new();
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
        let chosen = choose_layers(&reports, info.n_layer, args.layers_per_emotion);
        if chosen.is_empty() {
            bail!("{emotion}: no layer separates the pairs");
        }
        let mut directions = BTreeMap::new();
        let mut calibration = Vec::new();
        for (slot, d) in data.iter().enumerate() {
            let p: Vec<&[f32]> = d.pos.iter().map(Vec::as_slice).collect();
            let n: Vec<&[f32]> = d.neg.iter().map(Vec::as_slice).collect();
            let dir = fit_direction(&p, &n, method, &d.neutral_basis, cv.pca_iters);
            if chosen.contains(&d.layer) {
                let projections: Vec<f32> = neutral_rows
                    .rows
                    .iter()
                    .map(|r| math::dot(&r[slot], &dir))
                    .collect();
                let (mean, std) = math::mean_std(&projections);
                if std <= 0.0 || !std.is_finite() {
                    bail!("{emotion}: degenerate calibration at layer {}", d.layer);
                }
                calibration.push(Calibration {
                    layer: d.layer,
                    mean: f64::from(mean),
                    std: f64::from(std),
                });
            }
            directions.insert(d.layer, dir);
        }
        let best = reports
            .iter()
            .filter(|r| chosen.contains(&r.layer))
            .map(|r| format!("L{} cv {:.3} perm {:.3}", r.layer, r.cv_auroc, r.perm_auroc))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!("  {emotion:<12} {} pairs; chosen {best}", pairs.len());
        calibration.sort_by_key(|c| c.layer);
        let mut chosen_sorted = chosen.clone();
        chosen_sorted.sort_unstable();
        entries.insert(
            emotion.clone(),
            EmotionEntry {
                file: format!("{emotion}.gguf"),
                layers: chosen_sorted,
                pooling: Pooling::Mean,
                sign: 1,
                method,
                calibration,
                selection: reports,
            },
        );
        vectors.insert(
            emotion.clone(),
            ControlVector {
                model_hint: info.arch.clone(),
                n_embd: info.n_embd,
                directions,
            },
        );
    }
    let weights = calibrated_weights(&args.emotions, &entries, &vectors, &neutral_rows, &layers)?;
    let manifest = PackManifest {
        limbic_version: env!("CARGO_PKG_VERSION").to_string(),
        prompts_hash,
        model: ModelInfo {
            name: model_dir_name(&model),
            sha256: info.sha256.clone(),
            arch: info.arch.clone(),
            n_embd: info.n_embd,
            n_layer: info.n_layer,
        },
        emotions: entries,
        signature: Some(Signature { weights }),
    };
    let mut pack = Pack::new(manifest, vectors)?;
    pack.save(&out_dir)?;
    println!(
        "wrote {} ({} emotions) in {:.0} s",
        out_dir.display(),
        args.emotions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Neutral steps per calibration session.
const CALIBRATION_SESSION_STEPS: usize = 6;

/// The default emotion weights, scaled so the combined signature has unit standard
/// deviation on the neutral corpus: the signature then reads in "neutral sigmas", which is
/// what policy and tracker thresholds are written in. (Its neutral mean is 0 by
/// construction: every z-score is centred on the same rows.)
fn calibrated_weights(
    emotions: &[String],
    entries: &BTreeMap<String, EmotionEntry>,
    vectors: &BTreeMap<String, ControlVector>,
    neutral: &crate::collect::Pooled,
    layers: &[u32],
) -> Result<BTreeMap<String, f64>> {
    let base: Vec<f64> = emotions
        .iter()
        .map(|e| f64::from(limbic_probe::default_weight(e).unwrap_or(0.0)))
        .collect();
    let mut signature = vec![0.0f64; neutral.rows.len()];
    for (emotion, w) in emotions.iter().zip(&base) {
        let (Some(entry), Some(cv)) = (entries.get(emotion), vectors.get(emotion)) else {
            continue;
        };
        for (i, row) in neutral.rows.iter().enumerate() {
            let mut z = 0.0f64;
            for cal in &entry.calibration {
                let slot = layers
                    .iter()
                    .position(|&l| l == cal.layer)
                    .ok_or_else(|| anyhow!("layer {} was not tapped", cal.layer))?;
                let dir = cv
                    .directions
                    .get(&cal.layer)
                    .ok_or_else(|| anyhow!("{emotion}: no direction at {}", cal.layer))?;
                z += (f64::from(math::dot(&row[slot], dir)) - cal.mean) / cal.std;
            }
            signature[i] += w * z / entry.calibration.len().max(1) as f64;
        }
    }
    let n = signature.len() as f64;
    let mean = signature.iter().sum::<f64>() / n;
    let std =
        (signature.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    if !(std.is_finite() && std > 0.0) {
        bail!("degenerate signature calibration (std {std})");
    }
    Ok(emotions
        .iter()
        .zip(base)
        .map(|(e, w)| (e.clone(), w / std))
        .collect())
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

fn inspect(path: &Path) -> Result<ExitCode> {
    if path.is_dir() {
        let pack = Pack::load(path)?;
        let m = pack.model();
        println!("pack {}", path.display());
        println!(
            "model: {} ({}, {} layers, width {}), sha256 {}",
            m.name, m.arch, m.n_layer, m.n_embd, m.sha256
        );
        println!("prompts: {}", pack.manifest().prompts_hash);
        for name in pack.emotions() {
            let Some(e) = pack.emotion(name) else {
                continue;
            };
            let evidence: Vec<String> = e
                .layers
                .iter()
                .filter_map(|l| e.selection.iter().find(|r| r.layer == *l))
                .map(|r: &LayerReport| {
                    format!("L{} cv {:.3} perm {:.3}", r.layer, r.cv_auroc, r.perm_auroc)
                })
                .collect();
            println!(
                "  {name:<12} layers {:?} method {:?} sign {:+}  [{}]",
                e.layers,
                e.method,
                e.sign,
                evidence.join(", ")
            );
        }
        if let Some(sig) = pack.signature() {
            println!("signature weights: {:?}", sig.weights);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cv = ControlVector::read(path).with_context(|| format!("reading {}", path.display()))?;
    println!("control vector {}", path.display());
    println!("model hint: {}", cv.model_hint);
    println!("width (n_embd): {}", cv.n_embd);
    println!(
        "layers: {} ({}..={})",
        cv.directions.len(),
        cv.directions.keys().next().copied().unwrap_or(0),
        cv.directions.keys().last().copied().unwrap_or(0)
    );
    println!("layer       norm");
    for (layer, dir) in &cv.directions {
        println!("{layer:>5} {:>10.4}", math::norm(dir));
    }
    Ok(ExitCode::SUCCESS)
}
