//! Prometheus `/metrics`: step counts, decisions by kind, latency, llama.cpp counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use limbic_guard::api::DECISION_KINDS;
use limbic_policy::DecisionKind;

use crate::AppState;

/// Latency histogram buckets (seconds).
pub(crate) const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) steps: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
    /// Requests refused for a wrong `Host` or a missing/wrong token.
    pub(crate) access_refused: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub(crate) connections_refused: AtomicU64,
    pub(crate) decisions: Mutex<std::collections::BTreeMap<DecisionKind, u64>>,
    pub(crate) latency_buckets: [AtomicU64; 12],
    pub(crate) latency_sum_us: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    pub(crate) queue_wait_sum_us: AtomicU64,
    pub(crate) queue_waits: AtomicU64,
    pub(crate) last_queue_wait_us: AtomicU64,
    pub(crate) llama: Mutex<limbic_engine::PerfStats>,
    /// Native mode (`/v1/chat/completions`).
    pub(crate) chat_requests: AtomicU64,
    pub(crate) chat_prompt_tokens: AtomicU64,
    pub(crate) chat_predicted_tokens: AtomicU64,
    pub(crate) chat_regenerations: AtomicU64,
    pub(crate) chat_withheld: AtomicU64,
    pub(crate) otlp: OtlpCounters,
}

/// The OTLP stream's counters (shown only when a stream is configured).
#[derive(Default)]
pub(crate) struct OtlpCounters {
    pub(crate) enabled: std::sync::atomic::AtomicBool,
    /// Decisions the collector accepted.
    pub(crate) exported: AtomicU64,
    /// Decisions dropped: queue full (oldest first) or refused by the collector.
    pub(crate) dropped: AtomicU64,
    /// Export requests that failed (unreachable, timeout, error status).
    pub(crate) failed: AtomicU64,
    /// Decisions waiting to be sent.
    pub(crate) queued: AtomicU64,
}

impl Metrics {
    /// Records how long one step waited for the worker.
    pub(crate) fn record_queue_wait(&self, wait: std::time::Duration) {
        let us = wait.as_micros() as u64;
        self.queue_wait_sum_us.fetch_add(us, Ordering::Relaxed);
        self.queue_waits.fetch_add(1, Ordering::Relaxed);
        self.last_queue_wait_us.store(us, Ordering::Relaxed);
    }

    /// Counts one decided step.
    pub(crate) fn record(&self, decision: DecisionKind, latency_ms: f64) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.decisions.lock() {
            *d.entry(decision).or_default() += 1;
        }
        let secs = latency_ms / 1e3;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_us
            .fetch_add((latency_ms * 1e3) as u64, Ordering::Relaxed);
    }
}

/// Appends one Prometheus metric family with a single unlabelled sample.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

pub(crate) async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
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
    metric(
        &mut out,
        "limbic_access_refused_total",
        "counter",
        "Requests refused for a wrong Host header or a missing or wrong token.",
        m.access_refused.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "limbic_connections_refused_total",
        "counter",
        "Connections closed at once because the connection cap was reached.",
        m.connections_refused.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP limbic_decisions_total Decisions by kind.");
    let _ = writeln!(out, "# TYPE limbic_decisions_total counter");
    if let Ok(d) = m.decisions.lock() {
        for kind in DECISION_KINDS {
            let count = d.get(&kind).copied().unwrap_or(0);
            let name = kind.as_str();
            let _ = writeln!(out, "limbic_decisions_total{{decision=\"{name}\"}} {count}");
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
    metric(
        &mut out,
        "limbic_queue_depth",
        "gauge",
        "Steps waiting for the model worker.",
        m.queue_depth.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "limbic_queue_wait_seconds_total",
        "counter",
        "Time steps spent waiting for the model worker (add to step latency for the client's view).",
        m.queue_wait_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
    metric(
        &mut out,
        "limbic_queue_waits_total",
        "counter",
        "Steps that waited for the model worker.",
        m.queue_waits.load(Ordering::Relaxed),
    );
    let chat = [
        (
            "limbic_chat_requests_total",
            "Chat completion requests received (native mode), malformed ones included.",
            &m.chat_requests,
        ),
        (
            "limbic_chat_prompt_tokens_total",
            "Prompt tokens of answered chat requests.",
            &m.chat_prompt_tokens,
        ),
        (
            "limbic_chat_tokens_predicted_total",
            "Tokens generated in delivered answers.",
            &m.chat_predicted_tokens,
        ),
        (
            "limbic_chat_regenerations_total",
            "Turns rolled back and generated again under steering.",
            &m.chat_regenerations,
        ),
        (
            "limbic_chat_withheld_tool_calls_total",
            "Tool calls the model wrote that were not passed on.",
            &m.chat_withheld,
        ),
    ];
    for (name, help, value) in chat {
        metric(
            &mut out,
            name,
            "counter",
            help,
            value.load(Ordering::Relaxed),
        );
    }
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
    if m.otlp.enabled.load(Ordering::Relaxed) {
        let otlp = [
            (
                "limbic_otlp_exported_total",
                "counter",
                "Decisions the OTLP collector accepted.",
                &m.otlp.exported,
            ),
            (
                "limbic_otlp_dropped_total",
                "counter",
                "Decisions not streamed: queue full (oldest dropped) or refused by the collector (all are in the audit log).",
                &m.otlp.dropped,
            ),
            (
                "limbic_otlp_failed_total",
                "counter",
                "OTLP export requests that failed (collector unreachable, timeout, error status); retried with backoff.",
                &m.otlp.failed,
            ),
            (
                "limbic_otlp_queue_depth",
                "gauge",
                "Decisions waiting to be streamed to the OTLP collector.",
                &m.otlp.queued,
            ),
        ];
        for (name, kind, help, value) in otlp {
            metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
