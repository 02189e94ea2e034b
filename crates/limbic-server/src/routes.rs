//! `POST /v1/steps` and `GET /health`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use limbic_guard::api::{ErrorBody, DEADLINE_HEADER, DEFAULT_DEADLINE_MS, MAX_DEADLINE_MS};
use limbic_guard::StepRequest;
use serde_json::json;
use tokio::sync::oneshot;

use crate::worker::{Job, Work};
use crate::AppState;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

pub(crate) async fn post_step(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<StepRequest>, JsonRejection>,
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
    // The client's own deadline (the hook sends what is left of its budget), else the
    // default: a step that cannot be answered in time is decided by the fail mode.
    let budget_ms = headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_DEADLINE_MS)
        .min(MAX_DEADLINE_MS);
    let now = Instant::now();
    let (reply_tx, reply_rx) = oneshot::channel();
    let job = Job {
        request: input,
        deadline: now + Duration::from_millis(budget_ms),
        enqueued: now,
        reply: reply_tx,
    };
    if state.jobs.send(Work::Step(job)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the guard worker has stopped",
        );
    }
    match reply_rx.await {
        Ok(Ok(outcome)) => {
            state.metrics.record(outcome.decision, outcome.latency_ms);
            Json(outcome).into_response()
        }
        Ok(Err(e)) if e.status == 409 => {
            state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::CONFLICT, e.message)
        }
        Ok(Err(e)) => {
            state.metrics.errors.fetch_add(1, Ordering::Relaxed);
            error(StatusCode::INTERNAL_SERVER_ERROR, e.message)
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the guard worker has stopped",
        ),
    }
}

pub(crate) async fn health_handler(State(state): State<Arc<AppState>>) -> Response {
    let mut health = state.health.clone();
    health["queue"] = json!({
        "depth": state.metrics.queue_depth.load(Ordering::Relaxed),
        "last_wait_ms": state.metrics.last_queue_wait_us.load(Ordering::Relaxed) as f64 / 1e3,
    });
    let mut problems = Vec::new();
    if let Some(reason) = state.health["probes_error"].as_str() {
        problems.push(format!(
            "probes unavailable (deciding by fail mode): {reason}"
        ));
    }
    if let Some(handle) = &state.policy {
        if let Some(e) = handle.last_error() {
            problems.push(format!(
                "the policy file failed to load (the last good policy is in force): {e}"
            ));
        }
        let policy = handle.current();
        health["policy"] = json!({
            "origin": policy.origin(), "hash": policy.hash(),
            "reloads": handle.reload_count(),
            "last_error": handle.last_error().map(|e| e.to_string()),
        });
    }
    if let Some(reload) = &state.reload {
        problems.extend(reload.problems());
        health["reload"] = json!(reload.state());
    }
    // Still 200: the daemon answers (by fail mode if need be); `status` tells a monitor.
    if !problems.is_empty() {
        health["status"] = json!("degraded");
        health["problems"] = json!(problems);
    }
    Json(health).into_response()
}
