//! `limbic vectors build | inspect`: make emotion vector packs from the contrastive prompt
//! sets (the pipeline is `limbic_guard::build`), and look inside any control-vector file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use limbic_guard::build::{build_pack, BuildConfig, DEFAULT_EMOTIONS};
use limbic_guard::models::KNOWN_MODELS;
use limbic_vectors::{math, ControlVector, LayerReport, Method, Pack};

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

pub fn build(args: BuildArgs) -> Result<ExitCode> {
    if args.all_models {
        for known in KNOWN_MODELS {
            build_one(&args, Some(known.name), None)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    build_one(&args, args.model.as_deref(), args.out.clone())
}

fn build_one(args: &BuildArgs, model: Option<&str>, out: Option<PathBuf>) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let model = limbic_guard::models::load_model_exact(model)?;
    let out_dir = out.unwrap_or_else(|| {
        PathBuf::from("vectors").join(limbic_guard::home::model_dir_name(&model))
    });
    let config = BuildConfig {
        emotions: args.emotions.clone(),
        prompts: args.prompts.clone(),
        method: if args.method == "pca" {
            Method::Pca
        } else {
            Method::DiffOfMeans
        },
        layers_per_emotion: args.layers_per_emotion,
        neutral_components: args.neutral_components,
        folds: args.folds,
    };
    let info = model.info().clone();
    eprintln!(
        "building {} emotion vectors for {} (method {:?})",
        config.emotions.len(),
        info.name.as_deref().unwrap_or(&info.arch),
        config.method
    );
    let report = build_pack(model, &config, &out_dir)?;
    for e in &report.emotions {
        let best = e
            .chosen
            .iter()
            .map(|c| format!("L{} cv {:.3} perm {:.3}", c.layer, c.cv_auroc, c.perm_auroc))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!("  {:<12} {} pairs; chosen {best}", e.emotion, e.pairs);
    }
    println!(
        "wrote {} ({} emotions) in {:.0} s",
        report.out_dir.display(),
        config.emotions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(path: &Path) -> Result<ExitCode> {
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
