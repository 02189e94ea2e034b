//! `limbic bench engine | guard | load | native`: what tapping and guarding cost, measured
//! against a baseline in the same run.

pub mod native;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use limbic_engine::{Engine, EngineConfig, Model};
use serde::Serialize;

pub const PP_TOKENS: usize = 512;
pub const TG_TOKENS: usize = 128;

#[derive(Debug, Serialize)]
pub struct EngineBench {
    pub model: String,
    pub repetitions: usize,
    pub pp_tps_off: f64,
    pub pp_tps_1: f64,
    pub pp_tps_4: f64,
    pub tg_tps_off: f64,
    pub tg_tps_1: f64,
    pub tg_tps_4: f64,
    pub pp_cost_1: f64,
    pub pp_cost_4: f64,
    pub tg_cost_1: f64,
    pub tg_cost_4: f64,
}

/// Deterministic text long enough for `PP_TOKENS + TG_TOKENS` tokens.
pub fn bench_tokens(model: &Model, n: usize) -> Result<Vec<i32>> {
    let sentence = "The agent reran the failing integration test, read the stack trace, \
        and wrote a short note about the cache invalidation bug before touching the code. ";
    let mut tokens = Vec::new();
    while tokens.len() < n {
        tokens.extend(model.tokenize(sentence, false)?);
    }
    tokens.truncate(n);
    Ok(tokens)
}

fn tap_sets(n_layer: u32) -> [Vec<u32>; 3] {
    let mid = n_layer / 2;
    let q = (n_layer / 4).max(1);
    // Four spread-out middle layers, never the last one (tapping it forces every token's logits).
    let four = vec![q, mid - 1, mid + 1, (n_layer - q).min(n_layer - 2)];
    [Vec::new(), vec![mid], four]
}

fn run_engine_bench(model: Arc<Model>, repetitions: usize) -> Result<EngineBench> {
    let n_layer = model.info().n_layer;
    let tokens = bench_tokens(&model, PP_TOKENS + TG_TOKENS)?;
    let (prompt, decode) = tokens.split_at(PP_TOKENS);
    let sets = tap_sets(n_layer);
    // One context for every configuration: idle contexts' thread pools would otherwise
    // compete for the cores with the one being measured.
    let mut engine = Engine::new(
        model.clone(),
        EngineConfig {
            n_ctx: 1024,
            n_batch: 512,
            max_sessions: 1,
            taps: Vec::new(),
            threads: None,
        },
    )
    .context("creating the bench engine")?;
    // This bench prices the taps themselves (graph splits and row copies), so every
    // configuration runs the whole graph; `bench guard` shows what stopping early saves.
    engine.set_exit_after_taps(false);
    let mut pp = vec![Vec::new(); sets.len()];
    let mut tg = vec![Vec::new(); sets.len()];
    // Warm-up, then interleave configurations so drift affects them all alike.
    one_run(&mut engine, prompt, &decode[..8])?;
    for _ in 0..repetitions.max(1) {
        for (i, taps) in sets.iter().enumerate() {
            engine.set_taps(taps)?;
            let (p, t) = one_run(&mut engine, prompt, decode)?;
            pp[i].push(p);
            tg[i].push(t);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let pp: Vec<f64> = pp.iter_mut().map(med).collect();
    let tg: Vec<f64> = tg.iter_mut().map(med).collect();
    let cost = |base: f64, with: f64| 1.0 - with / base;
    Ok(EngineBench {
        model: model.info().path.display().to_string(),
        repetitions,
        pp_tps_off: pp[0],
        pp_tps_1: pp[1],
        pp_tps_4: pp[2],
        tg_tps_off: tg[0],
        tg_tps_1: tg[1],
        tg_tps_4: tg[2],
        pp_cost_1: cost(pp[0], pp[1]),
        pp_cost_4: cost(pp[0], pp[2]),
        tg_cost_1: cost(tg[0], tg[1]),
        tg_cost_4: cost(tg[0], tg[2]),
    })
}

/// One prompt-processing pass and one token-by-token decode pass; tokens/s for each.
fn one_run(engine: &mut Engine, prompt: &[i32], decode: &[i32]) -> Result<(f64, f64)> {
    engine.close_session("bench");
    // The sink touches every row, as a probe would, so the copy cannot be skipped.
    let mut checksum = 0.0f32;
    let mut sink = |tap: &limbic_engine::TokenTap<'_>| {
        for (_, row) in tap.rows.iter() {
            checksum += row[0];
        }
    };
    let start = Instant::now();
    engine.append_tokens("bench", prompt, &mut sink)?;
    let pp = prompt.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for token in decode {
        engine.append_tokens("bench", std::slice::from_ref(token), &mut sink)?;
    }
    let tg = decode.len() as f64 / start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    Ok((pp, tg))
}

fn print_engine_bench(b: &EngineBench, model_path: &Path) {
    println!(
        "engine bench on {} ({} repetitions, medians)",
        model_path.display(),
        b.repetitions
    );
    println!("                      taps off     1 layer      4 layers");
    println!(
        "prompt ({PP_TOKENS} tok)  {:>9.1} t/s {:>9.1} t/s {:>9.1} t/s   cost {:+.2}% / {:+.2}%",
        b.pp_tps_off,
        b.pp_tps_1,
        b.pp_tps_4,
        100.0 * b.pp_cost_1,
        100.0 * b.pp_cost_4
    );
    println!(
        "decode ({TG_TOKENS} tok)  {:>9.1} t/s {:>9.1} t/s {:>9.1} t/s   cost {:+.2}% / {:+.2}%",
        b.tg_tps_off,
        b.tg_tps_1,
        b.tg_tps_4,
        100.0 * b.tg_cost_1,
        100.0 * b.tg_cost_4
    );
}

/// `limbic bench guard`: step latency through the whole guard (render, decode with taps,
/// probes, tracker, policy, audit commit) for sessions of growing length, against plain
/// prompt processing of the same tokens with taps off, in the same run.
#[derive(Debug, Serialize)]
pub struct GuardBench {
    pub sessions: Vec<SessionBench>,
    /// Median over all steps: guard latency less its audit commit / plain decode.
    pub ratio_scoring_vs_plain: f64,
    /// Median over all steps: full guard latency (with the fsync'd audit commit) / plain decode.
    pub ratio_full_vs_plain: f64,
}

#[derive(Debug, Serialize)]
pub struct SessionBench {
    pub steps: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Steps per second through the guard alone (the baseline's time excluded).
    pub steps_per_s: f64,
    /// Median latency of the last 10% of steps over the first 10% (≈1 when cost is flat).
    pub late_over_early: f64,
    pub plain_p50_ms: f64,
}

/// A guard built as `limbic check` builds it (scorer, policy), auditing to a throwaway log.
fn bench_guard(config: &limbic_guard::GuardConfig, db: &Path) -> Result<limbic_guard::Guard> {
    let audit = limbic_audit::AuditLog::open(db, limbic_audit::AuditOptions::default())?;
    Ok(limbic_guard::Guard::new(
        Ok(config.build_scorer()?),
        limbic_guard::PolicySource::load(config.policy.as_deref(), false)?,
        Some(audit),
    ))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    percentile(&s, 0.5)
}

fn run_guard_bench(
    config: &limbic_guard::GuardConfig,
    texts: &[limbic_guard::StepRequest],
    lengths: &[usize],
) -> Result<GuardBench> {
    let dir = tempfile::tempdir().context("temp dir for the bench audit log")?;
    let mut guard = bench_guard(config, &dir.path().join("bench.db"))?;
    let model = guard
        .scorer()
        .ok_or_else(|| anyhow::anyhow!("the guard has no scorer"))?
        .model()
        .clone();
    let frame = limbic_guard::render::TurnFrame::for_model(&model)?;
    let mut sessions = Vec::new();
    let (mut all_full, mut all_scoring, mut all_plain) = (Vec::new(), Vec::new(), Vec::new());
    for &n in lengths {
        let id = format!("bench-{n}");
        let mut full = Vec::with_capacity(n);
        let mut plain_ms = Vec::with_capacity(n);
        for i in 0..n {
            let mut step = texts[i % texts.len()].clone();
            step.session = id.clone();
            step.step = Some(i as u64 + 1);
            // The same tokens through the guard and with taps off, alternately, so both
            // sessions grow alike and drift affects both.
            let outcome = guard.check(&step)?;
            full.push(outcome.latency_ms);
            all_scoring.push(outcome.latency_ms - outcome.audit_ms);
            let tokens = frame
                .render(&model, &step.text, Some(&step.action.text()))?
                .tokens;
            // The baseline runs on the guard's own context (taps off, its own session), so
            // no second thread pool competes for the cores.
            let engine = guard
                .scorer_mut()
                .ok_or_else(|| anyhow::anyhow!("the guard has no scorer"))?
                .engine_mut();
            let taps = engine.tapped_layers().to_vec();
            engine.set_taps(&[])?;
            let t = Instant::now();
            let appended = engine.append_tokens(&format!("plain-{n}"), &tokens, &mut |_| {});
            plain_ms.push(t.elapsed().as_secs_f64() * 1e3);
            engine.set_taps(&taps)?;
            appended?;
        }
        let mut sorted = full.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let tenth = (n / 10).max(1);
        sessions.push(SessionBench {
            steps: n,
            p50_ms: percentile(&sorted, 0.5),
            p95_ms: percentile(&sorted, 0.95),
            steps_per_s: n as f64 * 1e3 / full.iter().sum::<f64>(),
            late_over_early: median(&full[n - tenth..]) / median(&full[..tenth]),
            plain_p50_ms: median(&plain_ms),
        });
        if let Some(last) = sessions.last() {
            // Progress for long runs: each session's line as soon as it is done.
            eprintln!(
                "session of {} steps: p50 {:.1} ms, p95 {:.1} ms, plain p50 {:.1} ms",
                last.steps, last.p50_ms, last.p95_ms, last.plain_p50_ms
            );
        }
        all_full.extend(full);
        all_plain.extend(plain_ms);
    }
    Ok(GuardBench {
        sessions,
        ratio_scoring_vs_plain: median(&all_scoring) / median(&all_plain),
        ratio_full_vs_plain: median(&all_full) / median(&all_plain),
    })
}

fn print_guard_bench(b: &GuardBench) {
    println!(
        "guard bench (each step through the guard, then the same tokens with taps off on the same context)"
    );
    println!(" steps   p50 ms   p95 ms   steps/s   late/early   plain p50 ms");
    for s in &b.sessions {
        println!(
            "{:>6} {:>8.2} {:>8.2} {:>9.1} {:>12.2} {:>14.2}",
            s.steps, s.p50_ms, s.p95_ms, s.steps_per_s, s.late_over_early, s.plain_p50_ms
        );
    }
    println!(
        "step latency / plain prompt processing of the same tokens: {:.3} (probes + policy), {:.3} (with the audit commit)",
        b.ratio_scoring_vs_plain, b.ratio_full_vs_plain
    );
}

/// `limbic bench engine`.
pub fn engine(model: Option<&str>, repetitions: usize, json: bool) -> Result<ExitCode> {
    let model = limbic_guard::models::load_model(model)?;
    let path = model.info().path.clone();
    let result = run_engine_bench(model, repetitions)?;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print_engine_bench(&result, &path);
    }
    Ok(ExitCode::SUCCESS)
}

/// `limbic bench guard`.
pub fn guard(
    config: &limbic_guard::GuardConfig,
    steps: &Path,
    lengths: &[usize],
    json: bool,
) -> Result<ExitCode> {
    let texts: Vec<limbic_guard::StepRequest> = limbic_guard::read_jsonl(steps)?;
    let result = run_guard_bench(config, &texts, lengths)?;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print_guard_bench(&result);
    }
    Ok(ExitCode::SUCCESS)
}

/// `limbic bench load`: closed-loop concurrent sessions through the guard as the daemon's
/// worker runs them (every waiting step checked together, up to `MAX_BATCH` at a time),
/// against one session alone in the same run.
#[derive(Debug, Serialize)]
pub struct LoadBench {
    pub rows: Vec<LoadRow>,
}

#[derive(Debug, Serialize)]
pub struct LoadRow {
    pub sessions: usize,
    pub steps: usize,
    pub steps_per_s: f64,
    /// Throughput over the single-session run's.
    pub speedup: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

pub fn load(
    config: &limbic_guard::GuardConfig,
    steps_file: &Path,
    sessions: &[usize],
    steps_per_session: usize,
    json: bool,
) -> Result<ExitCode> {
    use std::collections::VecDeque;
    let texts: Vec<limbic_guard::StepRequest> = limbic_guard::read_jsonl(steps_file)?;
    let dir = tempfile::tempdir().context("temp dir for the bench audit log")?;
    let mut rows: Vec<LoadRow> = Vec::new();
    let mut baseline = None;
    let mut runs: Vec<usize> = vec![1];
    runs.extend(sessions.iter().copied().filter(|&n| n != 1));
    for (run, &n) in runs.iter().enumerate() {
        let mut guard = bench_guard(config, &dir.path().join(format!("load-{run}.db")))?;
        let mut next = vec![0usize; n];
        let mut queue: VecDeque<(usize, Instant)> = (0..n).map(|s| (s, Instant::now())).collect();
        let mut latencies = Vec::with_capacity(n * steps_per_session);
        let started = Instant::now();
        while !queue.is_empty() {
            let batch: Vec<(usize, Instant)> = queue
                .drain(..queue.len().min(limbic_server::MAX_BATCH))
                .collect();
            let requests: Vec<limbic_guard::StepRequest> = batch
                .iter()
                .map(|&(s, _)| {
                    let mut step = texts[(s * 7 + next[s]) % texts.len()].clone();
                    step.session = format!("load-{n}-{s}");
                    step.step = None;
                    step
                })
                .collect();
            let items: Vec<(&limbic_guard::StepRequest, Option<Instant>)> =
                requests.iter().map(|r| (r, None)).collect();
            for r in guard.check_many(&items) {
                r?;
            }
            let done = Instant::now();
            for (s, enqueued) in batch {
                latencies.push(done.duration_since(enqueued).as_secs_f64() * 1e3);
                next[s] += 1;
                if next[s] < steps_per_session {
                    queue.push_back((s, done));
                }
            }
        }
        let total = started.elapsed().as_secs_f64();
        latencies.sort_by(|a, b| a.total_cmp(b));
        let steps_per_s = latencies.len() as f64 / total;
        let base = *baseline.get_or_insert(steps_per_s);
        let row = LoadRow {
            sessions: n,
            steps: latencies.len(),
            steps_per_s,
            speedup: steps_per_s / base,
            p50_ms: percentile(&latencies, 0.5),
            p95_ms: percentile(&latencies, 0.95),
            p99_ms: percentile(&latencies, 0.99),
        };
        eprintln!(
            "{:>4} sessions: {:.2} steps/s ({:.2}x), p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            row.sessions, row.steps_per_s, row.speedup, row.p50_ms, row.p95_ms, row.p99_ms
        );
        if run == 0 && !sessions.contains(&1) {
            baseline = Some(steps_per_s);
        } else {
            rows.push(row);
        }
    }
    if let Some(b) = baseline {
        if !sessions.contains(&1) {
            eprintln!("(baseline: one session alone, {b:.2} steps/s)");
        }
    }
    let result = LoadBench { rows };
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(" sessions   steps   steps/s   vs 1 session   p50 ms   p95 ms   p99 ms");
        for r in &result.rows {
            println!(
                "{:>9} {:>7} {:>9.2} {:>13.2}x {:>8.0} {:>8.0} {:>8.0}",
                r.sessions, r.steps, r.steps_per_s, r.speedup, r.p50_ms, r.p95_ms, r.p99_ms
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
