//! The daemon client: a minimal HTTP/1.1 exchange over TCP or a Unix socket.
use super::*;

// ---------------------------------------------------------------------------
// Talking to the daemon
// ---------------------------------------------------------------------------

/// Where the daemon is: the address syntax `limbic serve` accepts too.
pub(super) use limbic_guard::api::DaemonAddr as Endpoint;

/// What the hook needs to ask the daemon: its token and when the answer must be in.
pub(super) struct Ask<'a> {
    pub(super) token: &'a str,
    /// The network exchange (connect, send, read) must end by then.
    pub(super) deadline: Instant,
}

/// Posts the step; `Err` is a sentence for the user naming the address and problem.
pub(super) fn ask_daemon(
    endpoint: &Endpoint,
    addr: &str,
    step: &StepRequest,
    ask: &Ask<'_>,
) -> Result<StepAnswer, String> {
    let body =
        serde_json::to_string(step).map_err(|e| format!("could not encode the step: {e}"))?;
    let nonce = limbic_guard::auth::new_nonce().map_err(|e| format!("{e:#}"))?;
    let unreachable = |e: io::Error| format!("limbic daemon unreachable at {addr}: {e}");
    let response = match endpoint {
        Endpoint::Tcp(authority) => {
            let stream = connect_tcp(authority, ask.deadline).map_err(unreachable)?;
            let request = request_bytes(authority, &body, ask, &nonce);
            exchange(stream, &request, ask.deadline)
        }
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(unreachable)?;
            let request = request_bytes("localhost", &body, ask, &nonce);
            exchange(stream, &request, ask.deadline)
        }
    }
    .map_err(|e| format!("limbic daemon at {addr} gave no usable answer: {e}"))?;
    interpret(response, ask.token, &nonce).map_err(|e| format!("limbic daemon at {addr} {e}"))
}

/// A stream whose blocking calls can be bounded (TCP and Unix sockets).
pub(super) trait Timed: Read + Write {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl Timed for UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

/// Time left before `deadline`; `TimedOut` when none is.
pub(super) fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the hook's deadline passed",
        ));
    }
    Ok(left)
}

pub(super) fn connect_tcp(authority: &str, deadline: Instant) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, time_left(deadline)?) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{authority}` resolves to no address"),
        )
    }))
}

/// The request. The token itself is never sent: the request is signed with it (time, nonce,
/// method, path, body), so a program squatting on the port learns nothing it could reuse.
pub(super) fn request_bytes(host: &str, body: &str, ask: &Ask<'_>, nonce: &str) -> Vec<u8> {
    // The daemon decides by fail mode rather than answer after the hook has given up.
    let budget_ms = ask
        .deadline
        .saturating_duration_since(Instant::now())
        .as_millis();
    let time_ms = limbic_guard::auth::now_unix_ms();
    let signature = limbic_guard::auth::request_signature(
        ask.token,
        time_ms,
        nonce,
        "POST",
        STEPS_PATH,
        body.as_bytes(),
    );
    let mut request = format!(
        "POST {STEPS_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: limbic-hook/{}\r\n\
         {TIME_HEADER}: {time_ms}\r\n{NONCE_HEADER}: {nonce}\r\n{SIGNATURE_HEADER}: {signature}\r\n\
         {DEADLINE_HEADER}: {budget_ms}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HttpResponse {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    /// The daemon's proof that it knows the token (`PROOF_HEADER`).
    pub(super) proof: Option<String>,
}

/// Sends `request` and reads one response, stopping as soon as it is complete (a
/// server that keeps the connection open despite `Connection: close` cannot stall us).
/// Every blocking call is bounded by what is left until `deadline`, so a daemon that
/// trickles bytes cannot hold the hook past it.
pub(super) fn exchange<S: Timed>(
    mut stream: S,
    request: &[u8],
    deadline: Instant,
) -> Result<HttpResponse, String> {
    let late = |what: &str| format!("no answer within the hook's deadline ({what})");
    let mut sent = 0;
    while sent < request.len() {
        let left = time_left(deadline).map_err(|_| late("while sending the step"))?;
        stream
            .set_timeouts(left)
            .map_err(|e| format!("sending the step failed: {e}"))?;
        match stream.write(&request[sent..]) {
            Ok(0) => return Err("sending the step failed: the connection closed".into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late("while sending the step"))
            }
            Err(e) => return Err(format!("sending the step failed: {e}")),
        }
    }
    let _ = stream.flush();
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = time_left(deadline).map_err(|_| late("is the model overloaded?"))?;
        stream
            .set_timeouts(left)
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late("is the model overloaded?"))
            }
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        };
        received.extend_from_slice(&chunk[..n]);
        if received.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        if let Some(response) = parse_response(&received, n == 0)? {
            return Ok(response);
        }
    }
}

/// Parses an HTTP/1.x response. `Ok(None)` means more bytes are needed; `eof` says
/// the peer closed, which completes a close-delimited body or makes a short one an
/// error.
pub(super) fn parse_response(buf: &[u8], eof: bool) -> Result<Option<HttpResponse>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if eof {
            Err("the connection closed before the response headers ended".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "the response headers are not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let mut content_length = None;
    let mut chunked = false;
    let mut proof = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed response header `{line}`"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length `{value}`"))?;
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case(PROOF_HEADER) {
            proof = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .split(',')
                .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let body = &buf[head_end + 4..];
    let body = if chunked {
        decode_chunked(body, eof)?
    } else if let Some(length) = content_length {
        if body.len() >= length {
            Some(body[..length].to_vec())
        } else if eof {
            return Err(format!(
                "the response body ended after {} of {length} bytes",
                body.len()
            ));
        } else {
            None
        }
    } else if eof {
        Some(body.to_vec())
    } else {
        None
    };
    Ok(body.map(|body| HttpResponse {
        status,
        body,
        proof,
    }))
}

pub(super) fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("not an HTTP/1.x status line: `{line}`"));
    }
    code.parse()
        .map_err(|_| format!("not an HTTP/1.x status line: `{line}`"))
}

/// Decodes a chunked body; `Ok(None)` when the final chunk has not arrived yet.
pub(super) fn decode_chunked(body: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
    let incomplete = || {
        if eof {
            Err("the connection closed inside a chunked body".to_string())
        } else {
            Ok(None)
        }
    };
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_len) = find(&body[pos..], b"\r\n") else {
            return incomplete();
        };
        let size_line = std::str::from_utf8(&body[pos..pos + line_len])
            .map_err(|_| "a chunk size line is not UTF-8".to_string())?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size `{size_hex}`"))?;
        pos += line_len + 2;
        if size == 0 {
            // The body ends at the blank line after any trailers (which carry nothing
            // the hook needs); a peer that closes before it has still sent every byte.
            let rest = &body[pos..];
            let ended = rest.starts_with(b"\r\n") || find(rest, b"\r\n\r\n").is_some();
            return if ended || eof {
                Ok(Some(out))
            } else {
                Ok(None)
            };
        }
        let end = pos
            .checked_add(size)
            .ok_or_else(|| format!("chunk size `{size_hex}` is too large"))?;
        if body.len() < end.saturating_add(2) {
            return incomplete();
        }
        out.extend_from_slice(&body[pos..end]);
        if &body[end..end + 2] != b"\r\n" {
            return Err("a chunk is not followed by CRLF".into());
        }
        pos = end + 2;
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The decision in a 2xx answer that carries the proof for `nonce`; `Err` completes
/// "limbic daemon at ADDR ...".
pub(super) fn interpret(
    response: HttpResponse,
    token: &str,
    nonce: &str,
) -> Result<StepAnswer, String> {
    if !(200..300).contains(&response.status) {
        let detail = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&response.body);
                head_str(text.trim(), 300).to_string()
            });
        let hint = if response.status == 401 {
            " (the hook's token file does not hold the daemon's token)"
        } else {
            ""
        };
        return Err(format!(
            "refused the step with HTTP {}: {detail}{hint}",
            response.status
        ));
    }
    let proven = response.proof.as_deref().is_some_and(|proof| {
        limbic_guard::auth::proof_matches(token, nonce, &response.body, proof)
    });
    if !proven {
        return Err(format!(
            "did not prove it knows the token (no valid {PROOF_HEADER} header): another \
             program may be listening on limbic's address"
        ));
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| format!("answered with something that is not a decision: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";
    const NONCE: &str = "0123456789abcdef0123";

    // --- HTTP ---------------------------------------------------------------

    #[test]
    fn endpoints_parse() {
        let tcp = |s: &str| Endpoint::Tcp(s.into());
        assert_eq!(Endpoint::parse("127.0.0.1:7370"), Ok(tcp("127.0.0.1:7370")));
        assert_eq!(
            Endpoint::parse(" http://localhost:9000/ "),
            Ok(tcp("localhost:9000"))
        );
        assert_eq!(
            Endpoint::parse("http://localhost:9000/v1"),
            Ok(tcp("localhost:9000"))
        );
        assert_eq!(Endpoint::parse("localhost"), Ok(tcp("localhost:7370")));
        assert_eq!(Endpoint::parse("[::1]:8000"), Ok(tcp("[::1]:8000")));
        assert_eq!(Endpoint::parse("[::1]"), Ok(tcp("[::1]:7370")));
        assert_eq!(
            Endpoint::parse("unix:/run/limbic.sock"),
            Ok(Endpoint::Unix("/run/limbic.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:///run/limbic.sock"),
            Ok(Endpoint::Unix("/run/limbic.sock".into()))
        );
        assert!(Endpoint::parse("unix:")
            .unwrap_err()
            .contains("socket path"));
        assert!(Endpoint::parse("https://x:1")
            .unwrap_err()
            .contains("https"));
        assert!(Endpoint::parse("").unwrap_err().contains("empty"));
    }

    #[test]
    fn parses_content_length_response_and_waits_for_the_body() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 5\r\n\r\nhello";
        let response = parse_response(raw, false).unwrap().unwrap();
        assert_eq!(
            response,
            HttpResponse {
                status: 200,
                body: b"hello".to_vec(),
                proof: None,
            }
        );
        assert_eq!(parse_response(&raw[..raw.len() - 1], false), Ok(None));
        assert!(parse_response(&raw[..raw.len() - 1], true)
            .unwrap_err()
            .contains("ended after 4 of 5 bytes"));
    }

    #[test]
    fn parses_chunked_and_close_delimited_responses() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let response = parse_response(chunked, false).unwrap().unwrap();
        assert_eq!(response.body, b"Wikipedia");
        let close = b"HTTP/1.0 503 Service Unavailable\r\nServer: x\r\n\r\n{\"error\":\"busy\"}";
        assert_eq!(parse_response(close, false), Ok(None));
        let response = parse_response(close, true).unwrap().unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.body, b"{\"error\":\"busy\"}");
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", true)
            .unwrap_err()
            .contains("not an HTTP/1.x status line"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", true)
            .unwrap_err()
            .contains("malformed response header"));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", true)
                .unwrap_err()
                .contains("bad Content-Length")
        );
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            true
        )
        .unwrap_err()
        .contains("bad chunk size"));
        assert!(parse_response(b"HTTP/1.1 200", true)
            .unwrap_err()
            .contains("before the response headers ended"));
    }

    #[test]
    fn error_statuses_carry_the_daemons_message() {
        let response = HttpResponse {
            status: 422,
            body: br#"{"error":"step text is 40000 bytes; the limit is 32768"}"#.to_vec(),
            proof: None,
        };
        assert_eq!(
            interpret(response, TOKEN, NONCE).unwrap_err(),
            "refused the step with HTTP 422: step text is 40000 bytes; the limit is 32768"
        );
        let response = HttpResponse {
            status: 502,
            body: b"Bad gateway".to_vec(),
            proof: None,
        };
        assert_eq!(
            interpret(response, TOKEN, NONCE).unwrap_err(),
            "refused the step with HTTP 502: Bad gateway"
        );
        let response = HttpResponse {
            status: 200,
            body: b"{}".to_vec(),
            proof: Some(limbic_guard::auth::proof(TOKEN, NONCE, b"{}")),
        };
        assert!(interpret(response, TOKEN, NONCE)
            .unwrap_err()
            .contains("not a decision"));
    }
}
