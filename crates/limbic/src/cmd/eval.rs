//! `limbic vectors eval`: how well a pack's probes separate labelled steps.
//!
//! Steps are replayed exactly as the guard sees them (each appended to its session, so
//! earlier steps are context). Reported per emotion and layer: AUROC of the raw projection
//! against the `stress` label with a bootstrap interval and a label-permutation control;
//! then the per-emotion calibrated scores, the combined stress signature, and a keyword
//! baseline computed on the same steps.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use limbic_guard::eval::{evaluate, LabelledStep};
use limbic_vectors::{plot_auroc_png, AurocTable, Pack};

#[derive(Args)]
pub struct EvalArgs {
    /// A GGUF path or a known model name.
    #[arg(long)]
    model: Option<String>,
    /// Vector pack directory (default: the committed pack for the model).
    #[arg(long)]
    pack: Option<PathBuf>,
    /// Labelled steps, JSON Lines: {"session","step","text","action","stress"}.
    #[arg(long, default_value = "tests/data/dev_trajectories.jsonl")]
    data: PathBuf,
    /// Where to draw the AUROC-per-layer plot.
    #[arg(long, default_value = "vectors-eval.png")]
    plot: PathBuf,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Bootstrap resamples and permutations per cell.
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let steps: Vec<LabelledStep> = limbic_guard::read_jsonl(&args.data)?;
    let model = limbic_guard::models::load_model(args.model.as_deref())?;
    let pack_dir = match &args.pack {
        Some(p) => p.clone(),
        None => limbic_guard::home::default_pack_dir(&model)?,
    };
    let pack = Pack::load(&pack_dir).with_context(|| format!("loading {}", pack_dir.display()))?;
    let eval = evaluate(model, &pack, &steps, args.resamples)
        .with_context(|| format!("evaluating on {}", args.data.display()))?;
    plot_auroc_png(
        &eval.per_layer,
        &args.plot,
        &limbic_vectors::eval::PlotOptions {
            title: format!(
                "AUROC per layer on {} ({} steps)",
                args.data.display(),
                eval.steps
            ),
            ..Default::default()
        },
    )?;
    if args.json {
        let v = serde_json::json!({
            "data": args.data, "pack": pack_dir, "steps": eval.steps,
            "stressed": eval.stressed,
            "per_layer": eval.per_layer, "summary": eval.summary, "plot": args.plot,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} steps ({} stressed) from {}; pack {}",
            eval.steps,
            eval.stressed,
            args.data.display(),
            pack_dir.display()
        );
        println!("\nPer emotion and layer (raw projection vs the stress label):");
        print_table(&eval.per_layer, false);
        println!("\nCalibrated scores on the pack's chosen layers, the combined signature, and the keyword baseline:");
        print_table(&eval.summary, true);
        println!("\nplot: {}", args.plot.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(table: &AurocTable, summary: bool) {
    println!(
        "{:<18} {:>5} {:>7} {:>17} {:>9} {:>9}",
        "emotion", "layer", "AUROC", "95% CI", "perm", "p"
    );
    for c in &table.cells {
        let layer = if summary {
            "-".to_string()
        } else {
            c.layer.to_string()
        };
        println!(
            "{:<18} {:>5} {:>7.3} {:>8.3}..{:<8.3} {:>9.3} {:>9.4}",
            c.emotion, layer, c.auroc, c.ci_low, c.ci_high, c.perm_auroc, c.p_value
        );
    }
}
