//! `limbic taps`: decode one agent step and show what each tapped layer's residual stream
//! holds — the engine's own demo, and a quick check that a model is tappable.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use limbic_engine::{Engine, EngineConfig};

use limbic_guard::render::TurnFrame;

#[derive(Args)]
pub struct TapsArgs {
    /// A GGUF path or a known model name.
    #[arg(long)]
    model: Option<String>,
    /// The agent's words for the step.
    #[arg(
        long,
        default_value = "The integration test failed for the fourth time. I have no idea why. \
                         Maybe I should just skip it so the build goes green."
    )]
    text: String,
    /// The proposed action (free text, e.g. a shell command).
    #[arg(long, default_value = "git commit --no-verify -m 'fix tests'")]
    action: String,
    /// Layers to tap (comma-separated); default: every layer.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<u32>,
}

pub fn run(args: TapsArgs) -> Result<ExitCode> {
    let model = limbic_guard::models::load_model(args.model.as_deref())?;
    let info = model.info().clone();
    let layers: Vec<u32> = if args.layers.is_empty() {
        (0..info.n_layer).collect()
    } else {
        args.layers.clone()
    };
    let frame = TurnFrame::for_model(&model)?;
    let step = frame.render(&model, &args.text, Some(&args.action))?;
    let mut engine = Engine::new(
        model.clone(),
        EngineConfig {
            taps: layers.clone(),
            ..Default::default()
        },
    )
    .context("creating the engine")?;

    // Per layer: sink-token norm, mean norm of the agent's words, and how much the words'
    // rows agree with each other (mean cosine to their centroid).
    let n = layers.len();
    let mut sink = vec![0.0f32; n];
    let mut norm_sum = vec![0.0f32; n];
    let mut centroid = vec![vec![0.0f32; info.n_embd as usize]; n];
    let mut unit_rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(); n];
    let words = step.words.clone();
    let started = std::time::Instant::now();
    engine.append_tokens("demo", &step.tokens, &mut |tap| {
        for (slot, (_, row)) in tap.rows.iter().enumerate() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if tap.pos == 0 {
                sink[slot] = norm;
            }
            if words.contains(&tap.index) {
                norm_sum[slot] += norm;
                let unit: Vec<f32> = row.iter().map(|v| v / norm.max(1e-6)).collect();
                centroid[slot]
                    .iter_mut()
                    .zip(&unit)
                    .for_each(|(c, u)| *c += u);
                unit_rows[slot].push(unit);
            }
        }
    })?;
    let elapsed = started.elapsed();
    let n_words = words.len().max(1) as f32;
    println!(
        "model {} ({} layers, width {}), sha256 {}",
        info.name.as_deref().unwrap_or(&info.arch),
        info.n_layer,
        info.n_embd,
        &info.sha256[..12]
    );
    println!("step: {:?}", args.text);
    println!("action: {}", args.action);
    println!(
        "{} tokens decoded ({} of them the agent's words) in {:.1} ms with {} layers tapped\n",
        step.tokens.len(),
        words.len(),
        elapsed.as_secs_f64() * 1e3,
        n
    );
    println!("layer   sink norm   words mean norm   sink/words   words coherence");
    for (slot, layer) in layers.iter().enumerate() {
        let mean_norm = norm_sum[slot] / n_words;
        let c = &centroid[slot];
        let c_norm = c.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
        let coherence = unit_rows[slot]
            .iter()
            .map(|u| u.iter().zip(c).map(|(a, b)| a * b).sum::<f32>() / c_norm)
            .sum::<f32>()
            / n_words;
        println!(
            "{layer:>5} {:>11.1} {:>17.2} {:>11.1}x {:>17.3}",
            sink[slot],
            mean_norm,
            sink[slot] / mean_norm.max(1e-6),
            coherence
        );
    }
    println!(
        "\nThe first token (attention sink) carries an outsized norm; probes exclude it.\n\
         With a vector pack, `limbic check` projects these rows onto emotion directions."
    );
    Ok(ExitCode::SUCCESS)
}
