//! `POST /v1/steps` and `GET /health`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use limbic_guard::api::ErrorBody;
use limbic_guard::StepRequest;
use serde_json::json;
use tokio::sync::oneshot;

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
    let (reply_tx, reply_rx) = oneshot::channel();
    if state.jobs.send((input, reply_tx)).await.is_err() {
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

pub(crate) async fn health_handler(State(state): State<Arc<AppState>>) -> Response {
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
