//! Dumps the model's residual rows on the action's own tokens, for measuring whether a
//! learned action-risk direction can work (issue 8; `vectors/eval/action-risk.md`).
//!
//! ```sh
//! cargo run --release -p limbic-guard --example action_rows -- MODEL OUT_DIR [STEPS_DIR]
//! ```
//!
//! Writes `OUT_DIR/pairs.f32` + `pairs.jsonl` (every risky and benign text of
//! `vectors/prompts/actions/*.jsonl`, rendered as a step with no words, each in a fresh
//! session) and, with `STEPS_DIR`, `steps.f32` + `steps.jsonl` (every labelled step,
//! replayed per session as the guard reads it). Each text's record is two rows per tapped
//! layer (layers 1..n_layer-2): the mean over the action's tokens, then the action's last
//! token; little-endian f32, `[text][pooling][layer][n_embd]`. The JSONL lines carry the
//! labels and the default policy's rule risk (the lexical baseline).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use limbic_engine::{Engine, EngineConfig};
use limbic_guard::eval::LabelledStep;
use limbic_guard::jsonl::read_jsonl;
use limbic_guard::render::TurnFrame;
use limbic_policy::{Policy, RiskLevel, StepView};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct ActionPair {
    id: String,
    vocabulary: String,
    risky: String,
    benign: String,
}

fn rule_risk(policy: &Policy, tool: &str, args: &serde_json::Value) -> u8 {
    match policy.risk(tool, args) {
        RiskLevel::Low => 0,
        RiskLevel::Medium => 1,
        RiskLevel::High => 2,
        RiskLevel::Critical => 3,
    }
}

/// `tool {json}` back into tool and arguments (the pairs are written as limbic renders).
fn split_action(text: &str) -> (String, serde_json::Value) {
    match text.split_once(' ') {
        Some((tool, args)) => (
            tool.to_string(),
            serde_json::from_str(args).unwrap_or(serde_json::Value::String(args.to_string())),
        ),
        None => (text.to_string(), serde_json::Value::Null),
    }
}

struct Dumper {
    engine: Engine,
    frame: TurnFrame,
    n_embd: usize,
    n_layers: usize,
    /// Tap slots whose every action token's row is also kept (for peak pooling).
    token_slots: Vec<usize>,
    /// The kept rows of the last `rows` call: `[token][token_slots][n_embd]`.
    token_rows: Vec<f32>,
}

impl Dumper {
    /// Appends one step to `session`; returns the mean and last-token rows of its action.
    fn rows(&mut self, session: &str, words: &str, action: &str) -> Result<Vec<f32>> {
        let model = self.engine.model().clone();
        let step = self.frame.render(&model, words, Some(action))?;
        let (n_layers, n_embd) = (self.n_layers, self.n_embd);
        let mut sum = vec![0.0f32; n_layers * n_embd];
        let mut last = vec![0.0f32; n_layers * n_embd];
        let mut count = 0usize;
        let end = step.action.end;
        let token_slots = &self.token_slots;
        let token_rows = &mut self.token_rows;
        token_rows.clear();
        self.engine
            .append_tokens(session, &step.tokens, &mut |tap| {
                if !step.is_action_token(tap) {
                    return;
                }
                count += 1;
                for &slot in token_slots {
                    if let Some((_, row)) = tap.rows.iter().nth(slot) {
                        token_rows.extend_from_slice(row);
                    }
                }
                for (slot, (_, row)) in tap.rows.iter().enumerate() {
                    let at = slot * n_embd;
                    sum[at..at + n_embd]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(s, v)| *s += v);
                    if tap.index + 1 == end {
                        last[at..at + n_embd].copy_from_slice(row);
                    }
                }
            })?;
        if count == 0 {
            return Err(anyhow!("no action token in {action:?}"));
        }
        sum.iter_mut().for_each(|v| *v /= count as f32);
        sum.extend(last);
        Ok(sum)
    }
}

fn write_rows(out: &mut impl Write, rows: &[f32]) -> Result<()> {
    for v in rows {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, out_dir) = match (args.get(1), args.get(2)) {
        (Some(m), Some(o)) => (m.clone(), PathBuf::from(o)),
        _ => return Err(anyhow!("usage: action_rows MODEL OUT_DIR [STEPS_DIR]")),
    };
    let steps_dir = args.get(3).map(PathBuf::from);
    std::fs::create_dir_all(&out_dir)?;
    let model = limbic_guard::models::load_model(Some(&model))?;
    let info = model.info().clone();
    let layers: Vec<u32> = (1..info.n_layer.saturating_sub(1)).collect();
    // One thread unless told: on a shared machine llama.cpp's spinning threads wait for
    // each other far longer than one thread computes.
    let threads = std::env::var("ACTION_ROWS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .or(Some(1));
    let policy = Policy::builtin_default()?;
    std::fs::write(
        out_dir.join("shape.json"),
        json!({"layers": layers, "n_embd": info.n_embd, "poolings": ["mean", "last"]}).to_string(),
    )?;
    if std::env::var_os("ACTION_ROWS_SKIP_PAIRS").is_none() {
        let engine = Engine::new(
            model.clone(),
            EngineConfig {
                n_ctx: 4096,
                max_sessions: 1,
                taps: layers.clone(),
                threads,
                ..Default::default()
            },
        )?;
        // ACTION_ROWS_TOKEN_LAYERS=10,16: also every action token's row at those layers.
        let token_layers: Vec<u32> = std::env::var("ACTION_ROWS_TOKEN_LAYERS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let mut dumper = Dumper {
            engine,
            frame: TurnFrame::for_model(&model)?,
            n_embd: info.n_embd as usize,
            n_layers: layers.len(),
            token_slots: token_layers
                .iter()
                .filter_map(|l| layers.iter().position(|x| x == l))
                .collect(),
            token_rows: Vec::new(),
        };
        dump_pairs(&mut dumper, &policy, &out_dir)?;
    }
    if let Some(dir) = steps_dir {
        dump_steps(model, &policy, &dir, &out_dir, &layers, threads)?;
    }
    Ok(())
}

fn dump_pairs(dumper: &mut Dumper, policy: &Policy, out_dir: &Path) -> Result<()> {
    let actions = Path::new("vectors/prompts/actions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(actions)
        .with_context(|| format!("reading {}", actions.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut bin = std::io::BufWriter::new(std::fs::File::create(out_dir.join("pairs.f32"))?);
    let mut meta = std::io::BufWriter::new(std::fs::File::create(out_dir.join("pairs.jsonl"))?);
    let mut tokens =
        std::io::BufWriter::new(std::fs::File::create(out_dir.join("pairs_tokens.f32"))?);
    for file in &files {
        let kind = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let pairs: Vec<ActionPair> = read_jsonl(file)?;
        eprintln!("{kind}: {} pairs", pairs.len());
        for pair in &pairs {
            for (risky, text) in [(1, &pair.risky), (0, &pair.benign)] {
                dumper.engine.close_session("pair");
                let rows = dumper.rows("pair", "", text)?;
                write_rows(&mut bin, &rows)?;
                write_rows(&mut tokens, &dumper.token_rows)?;
                let n_tokens = dumper.token_rows.len()
                    / dumper.n_embd.max(1)
                    / dumper.token_slots.len().max(1);
                let (tool, args) = split_action(text);
                writeln!(
                    meta,
                    "{}",
                    json!({"id": pair.id, "kind": kind, "vocabulary": pair.vocabulary,
                           "risky": risky, "rule_risk": rule_risk(policy, &tool, &args),
                           "n_tokens": n_tokens, "text": text})
                )?;
            }
        }
    }
    dumper.engine.close_session("pair");
    bin.flush()?;
    meta.flush()?;
    tokens.flush()?;
    Ok(())
}

/// Every labelled step through the scorer with the committed pack (as `limbic check`
/// reads them: each appended to its session, the guard's engine settings), with the
/// default policy's decision and the action's rows.
fn dump_steps(
    model: std::sync::Arc<limbic_engine::Model>,
    policy: &Policy,
    dir: &Path,
    out_dir: &Path,
    layers: &[u32],
    threads: Option<i32>,
) -> Result<()> {
    let pack = limbic_vectors::Pack::load(limbic_guard::home::default_pack_dir(&model)?)?;
    let mut scorer = limbic_guard::Scorer::new(
        model.clone(),
        &pack,
        EngineConfig {
            max_sessions: 8,
            taps: layers.to_vec(),
            threads,
            ..Default::default()
        },
    )?;
    let frame = TurnFrame::for_model(&model)?;
    let n_embd = model.info().n_embd as usize;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut bin = std::io::BufWriter::new(std::fs::File::create(out_dir.join("steps.f32"))?);
    let mut meta = std::io::BufWriter::new(std::fs::File::create(out_dir.join("steps.jsonl"))?);
    for file in &files {
        let steps: Vec<LabelledStep> = read_jsonl(file)?;
        eprintln!("{}: {} steps", file.display(), steps.len());
        for step in &steps {
            let action = step.action.text();
            let rendered = frame.render(&model, &step.text, Some(&action))?;
            let mut sum = vec![0.0f32; layers.len() * n_embd];
            let mut last = vec![0.0f32; layers.len() * n_embd];
            let mut count = 0usize;
            let reading =
                scorer.score_observed(&step.session, &step.text, &action, &mut |tap, _| {
                    if !rendered.is_action_token(tap) {
                        return;
                    }
                    count += 1;
                    for (layer, row) in tap.rows.iter() {
                        let Some(slot) = layers.iter().position(|&l| l == layer) else {
                            continue;
                        };
                        let at = slot * n_embd;
                        sum[at..at + n_embd]
                            .iter_mut()
                            .zip(row)
                            .for_each(|(s, v)| *s += v);
                        if tap.index + 1 == rendered.action.end {
                            last[at..at + n_embd].copy_from_slice(row);
                        }
                    }
                })?;
            sum.iter_mut().for_each(|v| *v /= count.max(1) as f32);
            sum.extend(last);
            write_rows(&mut bin, &sum)?;
            let named: Vec<(&str, f32)> = reading
                .scores
                .iter()
                .map(|(n, z)| (n.as_str(), *z))
                .collect();
            let view = StepView::new(&step.action.tool, &step.action.args, reading.signature)
                .with_spike(reading.track.spike)
                .with_scores(&named)
                .with_text(Some(&step.text));
            let decision = policy.decide(&view);
            writeln!(
                meta,
                "{}",
                json!({"session": step.session, "domain": step.domain, "kind": step.kind,
                       "stress": step.stress, "block": step.block,
                       "rule_risk": rule_risk(policy, &step.action.tool, &step.action.args),
                       "signature": reading.signature, "spike": reading.track.spike,
                       "decision": decision.kind.as_str(), "rule": decision.rule_id,
                       "action_tokens": count, "text": action})
            )?;
        }
    }
    bin.flush()?;
    meta.flush()?;
    Ok(())
}
