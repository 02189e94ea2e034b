//! Who may use the daemon: the `Host` check (DNS rebinding), the bearer token, a bounded
//! time to send the body, and the proof that signs answers to clients that ask for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use limbic_guard::api::{HEALTH_PATH, MAX_BODY, NONCE_HEADER, PROOF_HEADER};
use limbic_guard::auth;

use crate::routes::error;
use crate::AppState;

/// Largest answer signed (a decision or the metrics page is far smaller).
const MAX_SIGNED_BODY: usize = 4 * 1024 * 1024;

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

pub(crate) async fn check_access(
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
    if !auth::bearer_matches(authorization, &state.token) {
        state.metrics.access_refused.fetch_add(1, Ordering::Relaxed);
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <token>` with the token \
             from the daemon's token file ($LIMBIC_HOME/token)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
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
