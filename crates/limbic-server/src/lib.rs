//! limbic-server: the guard as a local HTTP daemon (TCP on loopback, and a Unix socket).
//!
//! The guard (model, sessions, audit) lives on one worker thread; HTTP handlers send it
//! steps over a channel and await the answer, so concurrent sessions are serialised onto
//! the model safely and every answer follows its committed audit row.
//!
//! Every route but `GET /health` needs the token (`Authorization: Bearer`, see
//! `limbic_guard::auth`); the `Host` header must name loopback or the bound address (DNS
//! rebinding); connections are capped and must send their headers and body in time
//! (slowloris). On SIGTERM/Ctrl-C the daemon stops accepting, lets answers in flight finish,
//! and checkpoints the audit WAL so `audit.db` alone holds every row.
//!
//! A changed policy, vector pack or profile file is applied by the worker between steps
//! (`limbic_guard::ReloadStatus`, shown on `/health`). With the `otlp` feature each committed
//! decision is also streamed to an OpenTelemetry collector (`otlp.rs`).

#![forbid(unsafe_code)]

mod access;
mod metrics;
mod openai;
#[cfg(feature = "otlp")]
mod otlp;
mod routes;
mod worker;
pub use worker::MAX_BATCH;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use limbic_guard::api::{DaemonAddr, HEALTH_PATH, MAX_DEADLINE_MS, STEPS_PATH};
use limbic_guard::GuardConfig;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::metrics::Metrics;

/// Default cap on open connections (each holds a task and a socket; a local client needs
/// one per concurrent step).
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default time a client has to send its request headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default interval between WAL checkpoints.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// Native mode's OpenAI-compatible routes (as llama-server names them).
pub const CHAT_PATH: &str = "/v1/chat/completions";
pub const MODELS_PATH: &str = "/v1/models";
pub const PROPS_PATH: &str = "/props";
/// Default bound of the OTLP queue (decisions).
pub const DEFAULT_OTLP_QUEUE: usize = 4096;
/// How long shutdown waits for answers in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen: `host[:port]`, `http://host[:port]` or `unix:/path` (as the hook).
    pub addr: String,
    /// Also listen on this Unix socket.
    pub socket: Option<PathBuf>,
    /// Reload the policy file, the vector pack and the profile file when they change.
    pub watch_policy: bool,
    pub guard: GuardConfig,
    /// The token file; `None`: `$LIMBIC_HOME/token` (created at first start).
    pub token_file: Option<PathBuf>,
    /// Open connections above this are closed at once.
    pub max_connections: usize,
    /// Time a client has to send its request headers (and, twice it, its body).
    pub header_timeout: Duration,
    /// Interval between WAL checkpoints of the audit log.
    pub checkpoint_every: Duration,
    /// Where to write a signed anchor of the verified chain head after every checkpoint
    /// (and at shutdown); `None`: no periodic anchors.
    pub anchor_out: Option<PathBuf>,
    /// The anchor's ed25519 key; `None`: `<audit>.key`, created 0600 if missing.
    pub anchor_key: Option<PathBuf>,
    /// Stream every committed decision as OTLP/HTTP JSON traces to this collector
    /// (`http://host[:port][/base]`); needs the `otlp` feature.
    pub otlp_endpoint: Option<String>,
    /// Decisions queued for the collector before the oldest is dropped.
    pub otlp_queue: usize,
}

/// Whether this build can stream to an OpenTelemetry collector (the `otlp` feature).
pub const OTLP_BUILT: bool = cfg!(feature = "otlp");

impl ServerConfig {
    /// A configuration with the default limits.
    pub fn new(addr: String, socket: Option<PathBuf>, guard: GuardConfig) -> ServerConfig {
        ServerConfig {
            addr,
            socket,
            watch_policy: true,
            guard,
            token_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            anchor_out: None,
            anchor_key: None,
            otlp_endpoint: None,
            otlp_queue: DEFAULT_OTLP_QUEUE,
        }
    }
}

pub(crate) struct AppState {
    pub(crate) jobs: mpsc::Sender<worker::Work>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: serde_json::Value,
    pub(crate) policy: Option<limbic_policy::PolicyHandle>,
    pub(crate) reload: Option<limbic_guard::ReloadStatus>,
    pub(crate) token: String,
    /// Lowercase host names a `Host` header may carry (port stripped).
    pub(crate) hosts: BTreeSet<String>,
    pub(crate) body_timeout: Duration,
    pub(crate) seen_nonces: access::SeenNonces,
}

/// Runs the daemon until SIGINT/SIGTERM.
pub fn serve(config: ServerConfig) -> Result<()> {
    let addr = DaemonAddr::parse(&config.addr)
        .map_err(|e| anyhow::anyhow!("--addr `{}`: {e}", config.addr))?;
    let mut sockets = Vec::new();
    let tcp_authority = match &addr {
        DaemonAddr::Tcp(authority) => Some(authority.clone()),
        DaemonAddr::Unix(path) => {
            sockets.push(path.clone());
            None
        }
    };
    sockets.extend(config.socket.clone());
    // Checked before the model loads: a wrong path fails at once, and nothing is deleted.
    for path in &sockets {
        clear_stale_socket(path)?;
    }
    let token_path = match &config.token_file {
        Some(p) => p.clone(),
        None => limbic_guard::auth::default_token_path()?,
    };
    let token = limbic_guard::auth::load_or_create_token(&token_path)
        .with_context(|| format!("preparing the daemon token {}", token_path.display()))?;

    // Checked before the model loads, like the sockets.
    #[cfg(feature = "otlp")]
    let otlp_endpoint = otlp_endpoint(config.otlp_endpoint.as_deref())?;
    #[cfg(not(feature = "otlp"))]
    refuse_otlp_endpoint(config.otlp_endpoint.as_deref())?;
    let mut guard = config
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
        let e = s.engine();
        json!({"path": i.path, "sha256": i.sha256, "arch": i.arch, "n_layer": i.n_layer,
               "name": guard.model_name(), "chat_template": i.chat_template,
               "n_ctx_per_session": e.session_window(), "max_sessions": e.max_resident_sessions()})
    });
    let health = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "model": model,
        "probes": scorer_error.is_none(),
        "probes_error": scorer_error,
        "audit": config.guard.audit_path()?,
        "token_file": token_path,
    });
    let policy = guard.policy_handle();
    let reload = if config.watch_policy {
        Some(guard.watch_config(&config.guard)?)
    } else {
        None
    };

    let perf = Arc::new(Mutex::new(limbic_engine::PerfStats::default()));
    let metrics = Arc::new(Metrics::default());
    // The anchor key is loaded before the first step, so a bad key stops the start.
    let anchor = match &config.anchor_out {
        Some(out) => {
            let db = config.guard.audit_path()?;
            let key_path = config
                .anchor_key
                .clone()
                .unwrap_or_else(|| limbic_audit::AnchorKey::default_path(&db));
            let key = limbic_audit::AnchorKey::load_or_create(&key_path)
                .with_context(|| format!("anchor key {}", key_path.display()))?;
            Some(worker::Anchoring {
                db,
                key,
                out: out.clone(),
            })
        }
        None => None,
    };
    #[cfg(feature = "otlp")]
    let exporter = match otlp_endpoint {
        Some(endpoint) => {
            eprintln!(
                "limbic serve: streaming decisions to http://{}{}",
                endpoint.authority, endpoint.path
            );
            let e = otlp::Exporter::start(endpoint, config.otlp_queue, metrics.clone())?;
            guard.set_commit_sink(e.sink());
            Some(e)
        }
        None => None,
    };
    let (tx, worker) = worker::spawn(guard, anchor, perf.clone(), metrics.clone())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = rt.block_on(run_listeners(
        config,
        tcp_authority,
        sockets,
        AppParts {
            jobs: tx,
            metrics,
            health,
            policy,
            reload,
            token,
        },
        perf,
    ));
    // Every sender to the worker lives in tasks of this runtime: dropping it lets the
    // worker drain its queue, checkpoint the WAL and stop.
    rt.shutdown_timeout(DRAIN);
    let joined = worker.join();
    // After the worker: every committed decision has been queued by now.
    #[cfg(feature = "otlp")]
    if let Some(e) = exporter {
        e.shutdown();
    }
    if joined.is_err() {
        bail!("the guard worker panicked");
    }
    served
}

#[cfg(feature = "otlp")]
fn otlp_endpoint(url: Option<&str>) -> Result<Option<otlp::Endpoint>> {
    url.map(|u| otlp::Endpoint::parse(u).context("--otlp-endpoint"))
        .transpose()
}

#[cfg(not(feature = "otlp"))]
fn refuse_otlp_endpoint(url: Option<&str>) -> Result<()> {
    match url {
        Some(u) => bail!(
            "--otlp-endpoint {u}: this limbic was built without OTLP streaming; rebuild with              `cargo build --release -p limbic --features otlp` (or export the log later with              `limbic audit export --format otlp-json`)"
        ),
        None => Ok(()),
    }
}

struct AppParts {
    jobs: mpsc::Sender<worker::Work>,
    metrics: Arc<Metrics>,
    health: serde_json::Value,
    policy: Option<limbic_policy::PolicyHandle>,
    reload: Option<limbic_guard::ReloadStatus>,
    token: String,
}

async fn run_listeners(
    config: ServerConfig,
    tcp_authority: Option<String>,
    sockets: Vec<PathBuf>,
    parts: AppParts,
    perf: Arc<Mutex<limbic_engine::PerfStats>>,
) -> Result<()> {
    let tcp = match &tcp_authority {
        Some(authority) => Some(
            tokio::net::TcpListener::bind(authority)
                .await
                .with_context(|| format!("listening on {authority}"))?,
        ),
        None => None,
    };
    let mut hosts: BTreeSet<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .into_iter()
        .map(String::from)
        .collect();
    if let Some(authority) = &tcp_authority {
        hosts.insert(access::host_of(authority).to_ascii_lowercase());
    }
    if let Some(local) = tcp.as_ref().and_then(|t| t.local_addr().ok()) {
        hosts.insert(local.ip().to_string());
        hosts.insert(format!("[{}]", local.ip()));
    }
    let state = Arc::new(AppState {
        jobs: parts.jobs.clone(),
        metrics: parts.metrics.clone(),
        health: parts.health,
        policy: parts.policy,
        reload: parts.reload.clone(),
        token: parts.token,
        hosts,
        body_timeout: config.header_timeout * 2,
        seen_nonces: access::SeenNonces::default(),
    });
    let app = Router::new()
        .route(STEPS_PATH, post(routes::post_step))
        .route(HEALTH_PATH, get(routes::health_handler))
        .route("/metrics", get(metrics::metrics_handler))
        .route(CHAT_PATH, post(openai::chat_completions))
        .route(MODELS_PATH, get(openai::models))
        .route(PROPS_PATH, get(openai::props))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::check_access,
        ))
        .with_state(state.clone());
    drop(state);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("limbic serve: shutting down");
        let _ = stop_tx.send(true);
    });
    // Keep llama.cpp timings fresh for /metrics, checkpoint the WAL now and then, and wake
    // the worker for a changed policy, pack or profile (it applies them between steps).
    let metrics = parts.metrics.clone();
    let reload = parts.reload;
    let mut stop = stop_rx.clone();
    let jobs = parts.jobs;
    let every = config.checkpoint_every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut last_checkpoint = tokio::time::Instant::now();
        loop {
            if let (Ok(src), Ok(mut dst)) = (perf.lock(), metrics.llama.lock()) {
                *dst = *src;
            }
            if last_checkpoint.elapsed() >= every {
                last_checkpoint = tokio::time::Instant::now();
                let _ = jobs.try_send(worker::Work::Checkpoint);
            }
            if reload.as_ref().is_some_and(|r| r.pending()) {
                let _ = jobs.try_send(worker::Work::Reload);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => break,
            }
        }
    });

    let limits = Limits {
        max_connections: config.max_connections.max(1),
        header_timeout: config.header_timeout,
        metrics: parts.metrics,
    };
    let limits = Arc::new(limits);
    // Every listener is bound before any is announced: whoever waits for the first
    // "listening" line can use all of them.
    let mut unix_listeners = Vec::new();
    for path in &sockets {
        let unix = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listening on {}", path.display()))?;
        unix_listeners.push((path, unix));
    }
    let mut servers = Vec::new();
    for (path, unix) in unix_listeners {
        eprintln!("limbic serve: listening on unix:{}", path.display());
        servers.push(tokio::spawn(accept_loop(
            unix,
            app.clone(),
            limits.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(tcp) = tcp {
        eprintln!("limbic serve: listening on http://{}", tcp.local_addr()?);
        servers.push(tokio::spawn(accept_loop(
            tcp,
            app.clone(),
            limits.clone(),
            stop_rx.clone(),
        )));
    }
    drop(app);
    for s in servers {
        s.await.context("server task")?;
    }
    for path in &sockets {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

struct Limits {
    max_connections: usize,
    header_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Accepts connections until shutdown, at most `max_connections` at once; each must send its
/// headers within `header_timeout` and is closed after the longest deadline a step may ask.
async fn accept_loop<L>(
    mut listener: L,
    app: Router,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open = Arc::new(Semaphore::new(limits.max_connections));
    // The longest a step may wait for the model, plus time to send and read.
    let lifetime = Duration::from_millis(MAX_DEADLINE_MS) + limits.header_timeout * 3;
    loop {
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            _ = stop.changed() => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Over the cap: close at once rather than queue (a client retries or fails
            // closed; a flood cannot pin the daemon's memory).
            limits
                .metrics
                .connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(io);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let header_timeout = limits.header_timeout;
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                // One request per connection: an idle keep-alive connection would hold a slot.
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = tokio::time::timeout(lifetime, conn.as_mut()) => {}
                _ = stop.changed() => {
                    // Let the answer in flight finish, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
            drop(permit);
        });
    }
    // Wait (bounded) for connections still answering.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, open.acquire_many(all)).await;
}

/// Removes a stale socket file at `path` so it can be bound again; refuses anything that is
/// not a socket (a `--socket` typo must not delete a file) and a socket a daemon answers on.
fn clear_stale_socket(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it (choose another --socket path)",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "{} is in use by a running daemon; stop it first or choose another path",
            path.display()
        );
    }
    std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
