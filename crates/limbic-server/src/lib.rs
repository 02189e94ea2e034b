//! limbic-server: the guard as a local HTTP daemon (TCP on loopback, and a Unix socket).
//!
//! The guard (model, sessions, audit) lives on one worker thread; HTTP handlers send it
//! steps over a channel and await the answer, so concurrent sessions are serialised onto
//! the model safely and every answer follows its committed audit row.

#![forbid(unsafe_code)]

mod metrics;
mod routes;
mod worker;
pub use worker::MAX_BATCH;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use limbic_guard::api::{MAX_BODY, STEPS_PATH};
use limbic_guard::GuardConfig;
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP address to listen on.
    pub addr: String,
    /// Also listen on this Unix socket.
    pub socket: Option<PathBuf>,
    /// Reload the policy file when it changes.
    pub watch_policy: bool,
    pub guard: GuardConfig,
}

pub(crate) struct AppState {
    pub(crate) jobs: mpsc::Sender<worker::Job>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: serde_json::Value,
    pub(crate) policy: Option<limbic_policy::PolicyHandle>,
}

/// Runs the daemon until SIGINT/SIGTERM.
pub fn serve(config: ServerConfig) -> Result<()> {
    let guard = config
        .guard
        .build(config.watch_policy && config.guard.policy.is_some())?;
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
        "audit": config.guard.audit_path()?,
    });
    let policy = guard.policy_handle();

    let perf = Arc::new(Mutex::new(limbic_engine::PerfStats::default()));
    let metrics = Arc::new(Metrics::default());
    let (tx, worker) = worker::spawn(guard, perf.clone(), metrics.clone())?;

    let state = Arc::new(AppState {
        jobs: tx,
        metrics,
        health,
        policy,
    });
    let app = Router::new()
        .route(STEPS_PATH, post(routes::post_step))
        .route("/health", get(routes::health_handler))
        .route("/metrics", get(metrics::metrics_handler))
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
        let tcp = tokio::net::TcpListener::bind(&config.addr)
            .await
            .with_context(|| format!("listening on {}", config.addr))?;
        eprintln!("limbic serve: listening on http://{}", tcp.local_addr()?);
        let mut servers = Vec::new();
        let tcp_app = app.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(tcp, tcp_app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }));
        if let Some(path) = &config.socket {
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
    Ok(())
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
