//! Pooled activations for vector building: each text is rendered as an agent step (the
//! same framing the guard uses), decoded in a fresh session, and its tapped rows are
//! averaged over the agent's words (the attention-sink token never counts).

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use limbic_engine::{Engine, Model};
use limbic_probe::TokenKind;
use serde::Deserialize;

use crate::render::TurnFrame;

/// One matched pair of a contrastive set (`vectors/prompts/<emotion>.jsonl`). All fields
/// are parsed so a malformed set is refused, even those the build does not use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptPair {
    pub id: String,
    pub domain: String,
    pub situation: String,
    pub positive: String,
    pub negative: String,
}

/// One line of the neutral corpus (`vectors/prompts/neutral.jsonl`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeutralText {
    pub id: String,
    pub domain: String,
    pub text: String,
}

/// Pooled rows: `rows[text][layer_slot]` has n_embd values (mean over the text's words).
pub struct Pooled {
    pub rows: Vec<Vec<Vec<f32>>>,
}

/// Mean-pools each text's word tokens at every tapped layer. Texts are decoded in
/// sessions of `session_len` consecutive steps (1 = each text alone): calibration texts
/// are read in context, as the guard reads an agent's steps.
pub fn pool_texts(
    engine: &mut Engine,
    model: &Model,
    frame: &TurnFrame,
    texts: &[&str],
    label: &str,
    session_len: usize,
) -> Result<Pooled> {
    let layers = engine.tapped_layers().to_vec();
    let n_embd = model.info().n_embd as usize;
    let bar = ProgressBar::new(texts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:30}] {pos}/{len} texts ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let mut rows = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let step = frame.render(model, text, None)?;
        let mut sums = vec![vec![0.0f32; n_embd]; layers.len()];
        let mut count = 0usize;
        if i % session_len.max(1) == 0 {
            engine.close_session("pool");
        }
        engine.append_tokens("pool", &step.tokens, &mut |tap| {
            if step.token_kind(tap) == TokenKind::Skipped {
                return;
            }
            count += 1;
            for (slot, (_, row)) in tap.rows.iter().enumerate() {
                sums[slot].iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
        })?;
        if count == 0 {
            bail!("text {text:?} has no word tokens to pool");
        }
        for s in &mut sums {
            s.iter_mut().for_each(|v| *v /= count as f32);
        }
        rows.push(sums);
        bar.inc(1);
    }
    engine.close_session("pool");
    bar.finish_and_clear();
    Ok(Pooled { rows })
}
