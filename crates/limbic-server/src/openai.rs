//! llama-server's OpenAI-compatible surface (native mode): `POST /v1/chat/completions`
//! (JSON or SSE), `GET /v1/models`, `GET /props`. The model worker writes the turn; a
//! turn that offers tools is decided before any of it is sent, so a withheld tool call
//! never leaves the server.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use limbic_guard::native::wire::{chunk, fingerprint};
use limbic_guard::native::{ChatAnswer, ChatError, ChatRequest, OpenAiError};
use serde_json::json;
use tokio::sync::mpsc;

use crate::worker::{ChatEvent, ChatJob, Work};
use crate::AppState;

/// SSE comment sent when the stream has been silent this long (proxies and clients
/// then know the server is still writing).
const PING_EVERY: Duration = Duration::from_secs(5);

/// Routes whose clients expect OpenAI's shapes (errors included).
pub(crate) fn is_openai_path(path: &str) -> bool {
    path.starts_with("/v1/chat/")
        || path.starts_with(crate::MODELS_PATH)
        || path == crate::PROPS_PATH
}

pub(crate) fn openai_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(OpenAiError::new(status.as_u16(), kind, message)),
    )
        .into_response()
}

fn chat_error(e: &ChatError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    openai_error(status, e.kind(), e.message())
}

pub(crate) async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    state.metrics.chat_requests.fetch_add(1, Ordering::Relaxed);
    // Parsed whatever the Content-Type, as llama-server does.
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            return openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("the request body is not a valid chat request: {e}"),
            );
        }
    };
    let stream = request.stream.unwrap_or(false);
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let tools_offered = request.tools.as_ref().is_some_and(|t| !t.is_empty());
    let (tx, mut events) = mpsc::unbounded_channel();
    let job = ChatJob {
        request,
        events: tx,
    };
    if state.jobs.send(Work::Chat(Box::new(job))).await.is_err() {
        return openai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            "the model worker has stopped",
        );
    }
    // The first event says whether the request was accepted: errors before generation
    // starts are answered with their status, not inside a stream.
    match events.recv().await {
        Some(ChatEvent::Accepted) => {}
        Some(ChatEvent::Done(result)) => return finish_plain(&state, *result),
        Some(ChatEvent::Text(_)) | None => {
            return openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the model worker stopped before answering",
            )
        }
    }
    if !stream {
        loop {
            match events.recv().await {
                Some(ChatEvent::Done(result)) => return finish_plain(&state, *result),
                Some(_) => continue,
                None => {
                    return openai_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "the model worker stopped before answering",
                    )
                }
            }
        }
    }
    let metrics = state.metrics.clone();
    let model = state.health["model"]["name"]
        .as_str()
        .unwrap_or("limbic")
        .to_string();
    let stream = async_sse(events, metrics, model, include_usage, tools_offered);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not start the stream",
            )
        })
}

fn finish_plain(state: &AppState, result: Result<ChatAnswer, ChatError>) -> Response {
    match result {
        Ok(answer) => {
            count_answer(&state.metrics, &answer);
            Json(answer.completion()).into_response()
        }
        Err(e) => {
            count_error(state, &e);
            chat_error(&e)
        }
    }
}

fn count_error(state: &AppState, e: &ChatError) {
    let counter = if e.status() < 500 {
        &state.metrics.bad_requests
    } else {
        &state.metrics.errors
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts a delivered answer in `/metrics`.
fn count_answer(m: &crate::metrics::Metrics, answer: &ChatAnswer) {
    m.chat_prompt_tokens
        .fetch_add(answer.prompt_tokens as u64, Ordering::Relaxed);
    m.chat_predicted_tokens
        .fetch_add(answer.completion_tokens as u64, Ordering::Relaxed);
    m.chat_regenerations.fetch_add(
        answer.limbic.tries.saturating_sub(1) as u64,
        Ordering::Relaxed,
    );
    if answer.limbic.withheld_tool_call {
        m.chat_withheld.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(kind) = serde_json::from_value(json!(answer.limbic.decision)) {
        m.record(kind, answer.latency_ms);
    }
}

fn frame(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The SSE body: live text chunks (when nothing can be withheld), pings on silence, then
/// the closing chunks, `data: [DONE]`.
fn async_sse(
    events: mpsc::UnboundedReceiver<ChatEvent>,
    metrics: Arc<crate::metrics::Metrics>,
    model: String,
    include_usage: bool,
    tools_offered: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    struct S {
        events: mpsc::UnboundedReceiver<ChatEvent>,
        id: String,
        created: u64,
        started: bool,
        done: bool,
    }
    let created = (limbic_audit::now_unix_ms().max(0) / 1000) as u64;
    let state = S {
        events,
        id: format!("chatcmpl-{}", limbic_audit::now_unix_ms()),
        created,
        started: false,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut s| {
        let metrics = metrics.clone();
        let model = model.clone();
        async move {
            if s.done {
                return None;
            }
            let mut out = Vec::new();
            if !s.started {
                // llama-server opens with the role.
                s.started = true;
                out.extend_from_slice(&frame(&chunk(
                    &s.id,
                    s.created,
                    &model,
                    json!({"role": "assistant", "content": null}),
                    None,
                )));
                return Some((Ok(Bytes::from(out)), s));
            }
            match tokio::time::timeout(PING_EVERY, s.events.recv()).await {
                Err(_) => Some((Ok(Bytes::from_static(b": ping\n\n")), s)),
                Ok(Some(ChatEvent::Text(piece))) => {
                    let c = chunk(&s.id, s.created, &model, json!({"content": piece}), None);
                    Some((Ok(frame(&c)), s))
                }
                Ok(Some(ChatEvent::Accepted)) => Some((Ok(Bytes::new()), s)),
                Ok(Some(ChatEvent::Done(done))) => match *done {
                    Ok(mut answer) => {
                        s.done = true;
                        // One id and timestamp for the whole stream.
                        answer.id = s.id.clone();
                        answer.created = s.created;
                        answer.model = model.clone();
                        count_answer(&metrics, &answer);
                        for c in answer.closing_chunks(tools_offered, include_usage) {
                            out.extend_from_slice(&frame(&c));
                        }
                        out.extend_from_slice(b"data: [DONE]\n\n");
                        Some((Ok(Bytes::from(out)), s))
                    }
                    Err(e) => {
                        s.done = true;
                        metrics.errors.fetch_add(1, Ordering::Relaxed);
                        let body = OpenAiError::new(e.status(), e.kind(), e.message());
                        let value = serde_json::to_value(body).unwrap_or_default();
                        Some((Ok(frame(&value)), s))
                    }
                },
                Ok(None) => {
                    s.done = true;
                    let body = OpenAiError::new(500, "server_error", "the model worker stopped");
                    let value = serde_json::to_value(body).unwrap_or_default();
                    Some((Ok(frame(&value)), s))
                }
            }
        }
    })
}

/// `GET /v1/models`: the one model this daemon serves.
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.health["model"];
    let id = m["name"].as_str().unwrap_or("limbic");
    Json(json!({
        "object": "list",
        "data": [{
            "id": id,
            "object": "model",
            "created": 0,
            "owned_by": "limbic",
            "meta": { "sha256": m["sha256"], "arch": m["arch"], "n_layer": m["n_layer"],
                      "n_ctx_per_session": m["n_ctx_per_session"] },
        }],
    }))
    .into_response()
}

/// `GET /props`: llama-server's server properties, the fields limbic has.
pub(crate) async fn props(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.health["model"];
    Json(json!({
        "default_generation_settings": {
            "n_ctx": m["n_ctx_per_session"],
            "params": { "temperature": 0.8, "top_p": 0.95,
                        "n_predict": limbic_guard::native::wire::DEFAULT_COMPLETION_TOKENS },
        },
        "total_slots": m["max_sessions"],
        "model_path": m["path"],
        "chat_template": m["chat_template"],
        "modalities": { "vision": false, "audio": false },
        "build_info": fingerprint(),
    }))
    .into_response()
}
