//! Who may use the daemon: the `Host` check (DNS rebinding), the bearer token, a bounded
//! time to send the body, and the proof that signs answers to clients that ask for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use limbic_guard::api::{
    HEALTH_PATH, MAX_BODY, NONCE_HEADER, PROOF_HEADER, SIGNATURE_HEADER, TIME_HEADER,
};
use limbic_guard::auth;

use crate::routes::error;
use crate::AppState;

/// Largest answer signed (a decision or the metrics page is far smaller).
const MAX_SIGNED_BODY: usize = 4 * 1024 * 1024;
/// Most nonces of signed requests remembered (a minute of traffic at any sane rate).
const MAX_SEEN_NONCES: usize = 200_000;

/// Nonces of signed requests seen within the time window: a captured signed request
/// cannot be replayed.
#[derive(Default)]
pub(crate) struct SeenNonces(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl SeenNonces {
    /// Records `nonce`; false when it was seen already (or the table is full).
    fn first_use(&self, nonce: &str, now_ms: u64) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return false;
        };
        if seen.len() >= MAX_SEEN_NONCES {
            // Entries older than twice the window can no longer pass the time check.
            let horizon = now_ms.saturating_sub(2 * auth::REQUEST_WINDOW_MS);
            seen.retain(|_, t| *t >= horizon);
            if seen.len() >= MAX_SEEN_NONCES {
                return false;
            }
        }
        seen.insert(nonce.to_string(), now_ms).is_none()
    }
}

fn unauthorized(state: &AppState, why: &str) -> Response {
    state.metrics.access_refused.fetch_add(1, Ordering::Relaxed);
    let mut response = error(StatusCode::UNAUTHORIZED, why);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Checks a signed request (the hook's way: the token is proven, never sent); `Err` says
/// why it is refused.
fn check_signature(
    state: &AppState,
    parts: &axum::http::request::Parts,
    nonce: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(nonce)) = (header(SIGNATURE_HEADER), nonce) else {
        return Err("a signed request needs a nonce".into());
    };
    let Some(time_ms) = header(TIME_HEADER).and_then(|t| t.trim().parse::<u64>().ok()) else {
        return Err(format!(
            "a signed request needs {TIME_HEADER} (Unix milliseconds)"
        ));
    };
    let now = auth::now_unix_ms();
    if now.abs_diff(time_ms) > auth::REQUEST_WINDOW_MS {
        return Err("the signed request's time is too far from the daemon's clock".into());
    }
    let method = parts.method.as_str();
    let path = parts.uri.path();
    if !auth::request_signature_matches(&state.token, time_ms, nonce, method, path, body, signature)
    {
        return Err("wrong request signature (the client's token is not the daemon's)".into());
    }
    if !state.seen_nonces.first_use(nonce, now) {
        return Err("this signed request was already used".into());
    }
    Ok(())
}

/// The host part of a `Host` header or `host:port` authority (`[v6]` keeps its brackets).
pub(crate) fn host_of(authority: &str) -> &str {
    let authority = authority.trim();
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Whether a `Host` header names this daemon. A browser tricked by DNS rebinding sends the
/// attacker's name, which is not loopback and not the bound address. No header (HTTP/1.0
/// tools) is allowed: a browser always sends one.
pub(crate) fn host_allowed(state: &AppState, host: Option<&HeaderValue>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = host_of(host).trim_end_matches('.').to_ascii_lowercase();
    state.hosts.contains(&name)
}

/// [`check_access_inner`], with refusals on the OpenAI-compatible routes in OpenAI's error
/// shape (`{"error": {"code", "message", "type"}}`), which OpenAI clients parse.
pub(crate) async fn check_access(
    state: State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let openai = crate::openai::is_openai_path(request.uri().path());
    let response = check_access_inner(state, request, next).await;
    if !openai || response.status().as_u16() < 400 {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_SIGNED_BODY).await.unwrap_or_default();
    match serde_json::from_slice::<limbic_guard::api::ErrorBody>(&bytes) {
        Ok(plain) => {
            let kind = match parts.status {
                StatusCode::UNAUTHORIZED => "authentication_error",
                StatusCode::FORBIDDEN => "permission_error",
                _ => "invalid_request_error",
            };
            let mut shaped = crate::openai::openai_error(parts.status, kind, plain.error);
            if let Some(v) = parts.headers.get(header::WWW_AUTHENTICATE) {
                shaped
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, v.clone());
            }
            shaped
        }
        // Already OpenAI-shaped (the handler's own error).
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

async fn check_access_inner(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !host_allowed(&state, request.headers().get(header::HOST)) {
        state.metrics.access_refused.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::FORBIDDEN,
            "the Host header names neither loopback nor this daemon's address",
        );
    }
    if request.uri().path() == HEALTH_PATH {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let bearer = auth::bearer_matches(authorization, &state.token);
    if !bearer && !request.headers().contains_key(SIGNATURE_HEADER) {
        return unauthorized(
            &state,
            "missing or wrong token: send `Authorization: Bearer <token>` with the token \
             from the daemon's token file ($LIMBIC_HOME/token)",
        );
    }
    let nonce = match request.headers().get(NONCE_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(n)) if auth::nonce_is_valid(n) => Some(n.to_string()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{NONCE_HEADER} must be {}..={} of A-Z a-z 0-9 - _",
                    auth::MIN_NONCE_LEN,
                    auth::MAX_NONCE_LEN
                ),
            )
        }
    };
    // The body must arrive in bounded time: a client trickling it would hold a connection.
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(state.body_timeout, to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {MAX_BODY} bytes or broken"),
            );
        }
        Err(_) => {
            state.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    state.body_timeout.as_millis()
                ),
            );
        }
    };
    if !bearer {
        if let Err(why) = check_signature(&state, &parts, nonce.as_deref(), &bytes) {
            return unauthorized(&state, &why);
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    match nonce {
        Some(nonce) => sign(response, &state.token, &nonce).await,
        None => response,
    }
}

/// Adds the proof header over the whole response body.
async fn sign(response: Response, token: &str, nonce: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_SIGNED_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer could not be signed",
            )
        }
    };
    if let Ok(value) = HeaderValue::from_str(&auth::proof(token, nonce, &bytes)) {
        parts.headers.insert(PROOF_HEADER, value);
    }
    Response::from_parts(parts, Body::from(bytes)).into_response()
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_part_of_authorities() {
        assert_eq!(host_of("127.0.0.1:7370"), "127.0.0.1");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
        assert_eq!(host_of("evil.example:7370"), "evil.example");
    }
}
