//! `limbic serve`: the guard as a local HTTP daemon (TCP on loopback, and a Unix socket).
//!
//! The guard (model, sessions, audit) lives on one worker thread; HTTP handlers send it
//! steps over a channel and await the answer, so concurrent sessions are serialised onto
//! the model safely and every answer follows its committed audit row.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::guard::{GuardArgs, StepInput, StepOutcome, MAX_ACTION_ARGS, MAX_STEP_TEXT};

pub const DEFAULT_ADDR: &str = "127.0.0.1:7370";
/// Request bodies above this are refused with 413 before parsing.
pub const MAX_BODY: usize = MAX_STEP_TEXT + MAX_ACTION_ARGS + 4096;

#[derive(Args)]
pub struct ServeArgs {
    /// TCP address to listen on (loopback by default; the API has no authentication).
    #[arg(long, env = "LIMBIC_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Also listen on this Unix socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Reload the policy file when it changes (a broken edit keeps the last good policy).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch_policy: bool,
    #[command(flatten)]
    guard: GuardArgs,
}

type Job = (StepInput, oneshot::Sender<Result<StepOutcome, String>>);

/// Latency histogram buckets (seconds).
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Metrics {
    steps: AtomicU64,
    errors: AtomicU64,
    bad_requests: AtomicU64,
    decisions: Mutex<std::collections::BTreeMap<String, u64>>,
    latency_buckets: [AtomicU64; 12],
    latency_sum_us: AtomicU64,
    llama: Mutex<limbic_engine::PerfStats>,
}

struct AppState {
    jobs: mpsc::Sender<Job>,
    metrics: Metrics,
    health: serde_json::Value,
    policy: Option<limbic_policy::PolicyHandle>,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let mut guard = args
        .guard
        .build(args.watch_policy && args.guard.policy.is_some())?;
    let scorer_error = guard.scorer_error().map(str::to_string);
    if let Some(reason) = &scorer_error {
        eprintln!(
            "warning: probes unavailable, deciding by fail mode ({}): {reason}",
            guard.policy().fail_mode().as_str()
        );
    }
    let model = guard.scorer().map(|s| {
        let i = s.model().info();
        json!({"path": i.path, "sha256": i.sha256, "arch": i.arch, "n_layer": i.n_layer})
    });
    let health = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "model": model,
        "probes": scorer_error.is_none(),
        "probes_error": scorer_error,
        "audit": args.guard.audit_path()?,
    });
    let policy = guard.policy_handle();

    let (tx, mut rx) = mpsc::channel::<Job>(64);
    let perf = Arc::new(Mutex::new(limbic_engine::PerfStats::default()));
    let perf_worker = perf.clone();
    // The model worker: one thread owns the guard; steps are handled in arrival order.
    let worker = std::thread::Builder::new()
        .name("limbic-guard".into())
        .spawn(move || {
            while let Some((input, reply)) = rx.blocking_recv() {
                let result = guard.check(&input).map_err(|e| format!("{e:#}"));
                if let Some(s) = guard.scorer() {
                    if let Ok(mut p) = perf_worker.lock() {
                        *p = s.engine().perf();
                    }
                }
                // The client may have gone away; the step is recorded either way.
                let _ = reply.send(result);
            }
        })
        .context("starting the guard thread")?;

    let state = Arc::new(AppState {
        jobs: tx,
        metrics: Metrics::default(),
        health,
        policy,
    });
    let app = Router::new()
        .route("/v1/steps", post(post_step))
        .route("/health", get(health_handler))
        .route("/metrics", get(metrics_handler))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone());
    let perf_for_metrics = perf.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Keep llama.cpp timings fresh for /metrics.
        let metrics_state = state.clone();
        tokio::spawn(async move {
            loop {
                if let (Ok(src), Ok(mut dst)) =
                    (perf_for_metrics.lock(), metrics_state.metrics.llama.lock())
                {
                    *dst = *src;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let tcp = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        eprintln!("limbic serve: listening on http://{}", tcp.local_addr()?);
        let mut servers = Vec::new();
        let tcp_app = app.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(tcp, tcp_app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }));
        if let Some(path) = &args.socket {
            if path.exists() {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing stale socket {}", path.display()))?;
            }
            let unix = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("listening on {}", path.display()))?;
            eprintln!("limbic serve: listening on unix:{}", path.display());
            let unix_app = app.clone();
            servers.push(tokio::spawn(async move {
                axum::serve(unix, unix_app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }));
        }
        for s in servers {
            s.await.context("server task")?.context("server")?;
        }
        anyhow::Ok(())
    })?;
    drop(worker);
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn post_step(
    State(state): State<Arc<AppState>>,
    body: Result<Json<StepInput>, JsonRejection>,
) -> Response {
    let input = match body {
        Ok(Json(input)) => input,
        Err(rejection) => {
            state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            return error(rejection.status(), rejection.body_text());
        }
    };
    if let Err(e) = input.validate() {
        state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}"));
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    if state.jobs.send((input, reply_tx)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the guard worker has stopped",
        );
    }
    match reply_rx.await {
        Ok(Ok(outcome)) => {
            let m = &state.metrics;
            m.steps.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut d) = m.decisions.lock() {
                *d.entry(outcome.decision.clone()).or_default() += 1;
            }
            let secs = outcome.latency_ms / 1e3;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    m.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            m.latency_sum_us
                .fetch_add((outcome.latency_ms * 1e3) as u64, Ordering::Relaxed);
            Json(outcome).into_response()
        }
        Ok(Err(message)) => {
            state.metrics.errors.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::INTERNAL_SERVER_ERROR, message)
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the guard worker has stopped",
        ),
    }
}

async fn health_handler(State(state): State<Arc<AppState>>) -> Response {
    let mut health = state.health.clone();
    if let Some(handle) = &state.policy {
        let policy = handle.current();
        health["policy"] = json!({
            "origin": policy.origin(), "hash": policy.hash(),
            "reloads": handle.reload_count(),
            "last_error": handle.last_error().map(|e| e.to_string()),
        });
    }
    Json(health).into_response()
}

/// Appends one Prometheus metric family with a single unlabelled sample.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    use std::fmt::Write;
    let m = &state.metrics;
    let mut out = String::new();
    let steps = m.steps.load(Ordering::Relaxed);
    metric(
        &mut out,
        "limbic_steps_total",
        "counter",
        "Steps decided.",
        steps,
    );
    metric(
        &mut out,
        "limbic_step_errors_total",
        "counter",
        "Steps that failed (not decided).",
        m.errors.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "limbic_bad_requests_total",
        "counter",
        "Requests refused as malformed or too large.",
        m.bad_requests.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP limbic_decisions_total Decisions by kind.");
    let _ = writeln!(out, "# TYPE limbic_decisions_total counter");
    if let Ok(d) = m.decisions.lock() {
        for kind in ["allow", "warn", "veto", "reroute"] {
            let count = d.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "limbic_decisions_total{{decision=\"{kind}\"}} {count}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP limbic_step_latency_seconds Time to decide a step."
    );
    let _ = writeln!(out, "# TYPE limbic_step_latency_seconds histogram");
    for (i, b) in BUCKETS.iter().enumerate() {
        let count = m.latency_buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "limbic_step_latency_seconds_bucket{{le=\"{b}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "limbic_step_latency_seconds_bucket{{le=\"+Inf\"}} {steps}"
    );
    let sum = m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "limbic_step_latency_seconds_sum {sum}");
    let _ = writeln!(out, "limbic_step_latency_seconds_count {steps}");
    if let Ok(p) = m.llama.lock() {
        let llama = [
            (
                "limbic_llama_prompt_tokens_total",
                "Tokens llama.cpp processed in batches.",
                p.prompt_tokens as f64,
            ),
            (
                "limbic_llama_prompt_seconds_total",
                "Time llama.cpp spent on batches.",
                p.prompt_ms / 1e3,
            ),
            (
                "limbic_llama_eval_tokens_total",
                "Tokens llama.cpp decoded one at a time.",
                p.eval_tokens as f64,
            ),
            (
                "limbic_llama_eval_seconds_total",
                "Time llama.cpp spent decoding single tokens.",
                p.eval_ms / 1e3,
            ),
        ];
        for (name, help, value) in llama {
            metric(&mut out, name, "counter", help, value);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
