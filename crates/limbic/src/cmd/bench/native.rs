//! `limbic bench native`: what reading the model's own activations costs while it writes.
//! Each repetition answers the same chat request twice on one context, alternately:
//! through the guard (taps on, probes, tracker, policy, audit commit) and as a plain
//! greedy decode of the same prompt with taps off. Greedy decoding makes both write the
//! same tokens, which the bench checks and reports (a tapped graph is computed in pieces,
//! so a near-tie between two tokens can occasionally flip).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use limbic_guard::native::{prompt, ChatRequest, Progress};
use limbic_guard::{Guard, GuardConfig};
use serde::Serialize;

use super::median;

#[derive(Debug, Serialize)]
pub struct NativeBench {
    pub model: String,
    pub repetitions: usize,
    pub tapped_layers: Vec<u32>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Both paths wrote the same tokens in every repetition.
    pub same_tokens: bool,
    /// Decode tokens/s between the first and the last token (medians).
    pub decode_tps_plain: f64,
    pub decode_tps_guarded: f64,
    /// guarded / plain: the target is >= 0.97.
    pub decode_ratio: f64,
    /// Request start to the first token (prompt processing included).
    pub ttft_ms_plain: f64,
    pub ttft_ms_guarded: f64,
    /// The whole turn: request start to the audited answer (guarded) or the last token (plain).
    pub turn_ms_plain: f64,
    pub turn_ms_guarded: f64,
    /// What the guard adds after the last token: decision, tracker and the audit commit.
    pub after_last_token_ms: f64,
}

/// One timed answer: when the first and last tokens came and how many there were.
struct Timing {
    ttft_ms: f64,
    decode_tps: f64,
    turn_ms: f64,
    last_token_ms: f64,
    tokens: Vec<String>,
}

impl Timing {
    fn from_marks(marks: &[f64], end_ms: f64, tokens: Vec<String>) -> Result<Timing> {
        let (Some(&first), Some(&last)) = (marks.first(), marks.last()) else {
            bail!("the model wrote nothing; use a prompt that makes it answer");
        };
        let decode_tps = if marks.len() > 1 {
            (marks.len() - 1) as f64 * 1e3 / (last - first)
        } else {
            f64::NAN
        };
        Ok(Timing {
            ttft_ms: first,
            decode_tps,
            turn_ms: end_ms,
            last_token_ms: last,
            tokens,
        })
    }
}

fn request(session: &str, max_tokens: u32) -> Result<ChatRequest> {
    serde_json::from_value(serde_json::json!({
        "messages": [
            {"role": "system", "content": "You are a careful coding agent working in a Rust repository."},
            {"role": "user", "content": "The integration test `cache_roundtrip` fails about one run in five. \
              Explain, step by step and in detail, how you will find the cause before changing any code."}
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "limbic": {"session": session}
    }))
    .context("building the bench request")
}

fn guarded(guard: &mut Guard, req: &ChatRequest) -> Result<Timing> {
    let start = Instant::now();
    let mut marks = Vec::new();
    let mut pieces = Vec::new();
    let answer = guard
        .chat(req, &mut |p| {
            if let Progress::Text(piece) = p {
                marks.push(start.elapsed().as_secs_f64() * 1e3);
                pieces.push(piece.to_string());
            }
        })
        .map_err(|e| anyhow::anyhow!("the guarded answer failed: {}", e.message()))?;
    let end = start.elapsed().as_secs_f64() * 1e3;
    if answer.limbic.withheld_tool_call {
        bail!("the bench request must not produce a tool call");
    }
    Timing::from_marks(&marks, end, pieces)
}

fn plain(guard: &mut Guard, req: &ChatRequest, session: &str) -> Result<Timing> {
    let scorer = guard
        .scorer_mut()
        .ok_or_else(|| anyhow::anyhow!("the guard has no scorer"))?;
    let model = scorer.model().clone();
    // The same prompt tokens the guard decodes (the session already holds BOS).
    let turns = prompt::turns(&req.messages, &[]).map_err(anyhow::Error::msg)?;
    let tokens = prompt::tokens(&model, &turns)?;
    let params = limbic_engine::GenerateParams {
        max_tokens: req.max_tokens.unwrap_or(128) as usize,
        temperature: 0.0,
        ..Default::default()
    };
    let engine = scorer.engine_mut();
    let taps = engine.tapped_layers().to_vec();
    engine.set_taps(&[])?;
    engine.open_session(session, &[])?;
    let start = Instant::now();
    let mut marks = Vec::new();
    let mut pieces = Vec::new();
    let outcome = engine.generate(session, &tokens, &params, &mut |_| {}, &mut |_, piece| {
        marks.push(start.elapsed().as_secs_f64() * 1e3);
        pieces.push(piece.to_string());
        std::ops::ControlFlow::Continue(())
    });
    let end = start.elapsed().as_secs_f64() * 1e3;
    engine.close_session(session);
    engine.set_taps(&taps)?;
    outcome?;
    Timing::from_marks(&marks, end, pieces)
}

pub fn run(
    config: &GuardConfig,
    repetitions: usize,
    max_tokens: u32,
    json: bool,
) -> Result<ExitCode> {
    let dir = tempfile::tempdir().context("temp dir for the bench audit log")?;
    let mut guard = super::bench_guard(config, &dir.path().join("native.db"))?;
    let scorer = guard.scorer().context("the guard has no scorer")?;
    let model_path = scorer.model().info().path.display().to_string();
    let tapped_layers = scorer.engine().tapped_layers().to_vec();
    // Warm-up: first-touch page faults and thread-pool start are not what is measured.
    plain(&mut guard, &request("warm", 8)?, "plain-warm").context("plain warm-up")?;
    guarded(&mut guard, &request("warm", 8)?).context("guarded warm-up")?;
    let (mut g, mut p) = (Vec::new(), Vec::new());
    let mut same_tokens = true;
    let mut prompt_tokens = 0;
    for rep in 0..repetitions.max(1) {
        let req = request(&format!("bench-native-{rep}"), max_tokens)?;
        // Alternate which path goes first so drift affects both alike.
        let (gt, pt) = if rep % 2 == 0 {
            let gt = guarded(&mut guard, &req)?;
            (gt, plain(&mut guard, &req, &format!("plain-{rep}"))?)
        } else {
            let pt = plain(&mut guard, &req, &format!("plain-{rep}"))?;
            (guarded(&mut guard, &req)?, pt)
        };
        same_tokens &= gt.tokens == pt.tokens;
        eprintln!(
            "repetition {}: {} tokens, decode {:.1} t/s guarded vs {:.1} plain, ttft {:.0} vs {:.0} ms",
            rep + 1,
            gt.tokens.len(),
            gt.decode_tps,
            pt.decode_tps,
            gt.ttft_ms,
            pt.ttft_ms
        );
        g.push(gt);
        p.push(pt);
        if prompt_tokens == 0 {
            let scorer = guard.scorer_mut().context("the guard has no scorer")?;
            let turns = prompt::turns(&req.messages, &[]).map_err(anyhow::Error::msg)?;
            prompt_tokens = prompt::tokens(scorer.model(), &turns)?.len();
        }
    }
    let med = |v: &[Timing], f: fn(&Timing) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let result = NativeBench {
        model: model_path,
        repetitions: g.len(),
        tapped_layers,
        prompt_tokens,
        completion_tokens: g.first().map_or(0, |t| t.tokens.len()),
        same_tokens,
        decode_tps_plain: med(&p, |t| t.decode_tps),
        decode_tps_guarded: med(&g, |t| t.decode_tps),
        decode_ratio: med(&g, |t| t.decode_tps) / med(&p, |t| t.decode_tps),
        ttft_ms_plain: med(&p, |t| t.ttft_ms),
        ttft_ms_guarded: med(&g, |t| t.ttft_ms),
        turn_ms_plain: med(&p, |t| t.turn_ms),
        turn_ms_guarded: med(&g, |t| t.turn_ms),
        after_last_token_ms: med(&g, |t| t.turn_ms - t.last_token_ms),
    };
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print(&result);
    }
    Ok(ExitCode::SUCCESS)
}

fn print(b: &NativeBench) {
    println!(
        "native bench on {} ({} repetitions, medians; taps at layers {:?})",
        b.model, b.repetitions, b.tapped_layers
    );
    println!(
        "prompt {} tokens, answer {} tokens, same tokens on both paths: {}",
        b.prompt_tokens, b.completion_tokens, b.same_tokens
    );
    println!("                     plain      guarded    guarded/plain");
    println!(
        "decode t/s       {:>9.1}    {:>9.1}    {:>9.3}",
        b.decode_tps_plain, b.decode_tps_guarded, b.decode_ratio
    );
    println!(
        "first token ms   {:>9.1}    {:>9.1}    {:>9.3}",
        b.ttft_ms_plain,
        b.ttft_ms_guarded,
        b.ttft_ms_guarded / b.ttft_ms_plain
    );
    println!(
        "whole turn ms    {:>9.1}    {:>9.1}    {:>9.3}   (decision + audit after the last token: {:.1} ms)",
        b.turn_ms_plain,
        b.turn_ms_guarded,
        b.turn_ms_guarded / b.turn_ms_plain,
        b.after_last_token_ms
    );
}
