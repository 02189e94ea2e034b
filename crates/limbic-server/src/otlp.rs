//! Streaming each committed decision to an OpenTelemetry collector (OTLP/HTTP, JSON
//! encoding), behind the `otlp` cargo feature.
//!
//! The guard hands every step's audit row to [`Exporter::sink`] right after the commit; the
//! sink only pushes onto a bounded queue (dropping the oldest row when full), so the step
//! path never waits for the network. A background thread POSTs batches to
//! `<endpoint>/v1/traces` with a minimal HTTP/1.1 client over `std::net::TcpStream` (plain
//! `http://` only: no TLS stack — point it at a local collector), retrying with backoff.
//! The spans are `limbic_audit::otlp::traces_request`, identical to `audit export --format
//! otlp-json`, so a span seen live can be found again in the log.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use limbic_audit::StepRow;

use crate::metrics::Metrics;

/// Rows per POST.
const BATCH: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At shutdown, how long queued rows may still take to reach the collector.
const FLUSH: Duration = Duration::from_secs(3);

/// Where the traces go: `http://host[:port][/base]`, POSTed to `<base>/v1/traces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, for connecting and the `Host` header.
    pub authority: String,
    /// Request path, ending in `/v1/traces`.
    pub path: String,
}

impl Endpoint {
    /// Parses the `--otlp-endpoint` value. As the OTel exporters do, `/v1/traces` is added
    /// to a base URL, and a URL that already names it is used as it is.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let Some(rest) = url.strip_prefix("http://") else {
            if url.starts_with("https://") {
                bail!(
                    "{url}: https is not supported (limbic carries no TLS stack); send to a \
                     collector on this host or network over http:// and let it forward"
                );
            }
            bail!("{url}: expected http://host[:port][/path]");
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            || base.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            bail!("{url}: expected http://host[:port][/path]");
        }
        // 4318 is the OTLP/HTTP port.
        let authority = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:4318")
        } else {
            authority.to_string()
        };
        let base = base.trim_end_matches('/');
        let path = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        Ok(Endpoint { authority, path })
    }
}

/// Bytes the queued rows may hold (about): arguments reach 64 KiB a step, so the count
/// alone would not bound memory on a small device.
const MAX_QUEUE_BYTES: usize = 64 << 20;

struct Queue {
    /// (id, approximate size, row), oldest first.
    rows: VecDeque<(u64, usize, StepRow)>,
    bytes: usize,
    next_id: u64,
    closing: bool,
}

impl Queue {
    fn pop_oldest(&mut self) -> bool {
        match self.rows.pop_front() {
            Some((_, size, _)) => {
                self.bytes -= size;
                true
            }
            None => false,
        }
    }
}

/// Roughly what a row costs in memory (what its spans carry).
fn weight(row: &StepRow) -> usize {
    512 + row.args.to_string().len()
        + row.reason.len()
        + row.tool.len()
        + row.session_id.len()
        + 64 * row.scores.len()
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    capacity: usize,
    max_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn new(capacity: usize, max_bytes: usize, metrics: Arc<Metrics>) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                rows: VecDeque::new(),
                bytes: 0,
                next_id: 0,
                closing: false,
            }),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            max_bytes,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, row: StepRow) {
        let size = weight(&row);
        let mut q = self.lock();
        while (q.rows.len() >= self.capacity || q.bytes + size > self.max_bytes) && q.pop_oldest() {
            self.metrics.otlp.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let id = q.next_id;
        q.next_id += 1;
        q.bytes += size;
        q.rows.push_back((id, size, row));
        self.metrics
            .otlp
            .queued
            .store(q.rows.len() as u64, Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
    }

    /// Removes the rows up to and including `last` (sent, or refused for good).
    fn remove_through(&self, last: u64) -> usize {
        let mut q = self.lock();
        let before = q.rows.len();
        while q.rows.front().is_some_and(|(id, _, _)| *id <= last) {
            q.pop_oldest();
        }
        self.metrics
            .otlp
            .queued
            .store(q.rows.len() as u64, Ordering::Relaxed);
        before - q.rows.len()
    }
}

/// The running exporter: a queue and the thread that empties it.
pub struct Exporter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Starts the sender thread. Nothing is sent until rows arrive; an unreachable collector
    /// is not an error here (it is logged, retried and counted).
    pub fn start(endpoint: Endpoint, capacity: usize, metrics: Arc<Metrics>) -> Result<Exporter> {
        metrics.otlp.enabled.store(true, Ordering::Relaxed);
        let shared = Arc::new(Shared::new(capacity, MAX_QUEUE_BYTES, metrics));
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("limbic-otlp".into())
            .spawn(move || send_loop(&worker, &endpoint))
            .context("starting the OTLP exporter thread")?;
        Ok(Exporter {
            shared,
            thread: Some(thread),
        })
    }

    /// The function the guard calls with each committed row: never blocks on the network.
    pub fn sink(&self) -> limbic_guard::CommitSink {
        let shared = Arc::clone(&self.shared);
        Box::new(move |row: &StepRow| {
            // The spans carry neither the agent's words nor the tracker state.
            shared.push(StepRow {
                text: None,
                tracker_state: None,
                ..row.clone()
            })
        })
    }

    /// Gives the queue a last chance to reach the collector (bounded), then stops the thread.
    pub fn shutdown(mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a POST did not deliver.
enum Failure {
    /// Worth retrying: the collector is down, slow or asks us to back off.
    Retry(String),
    /// The collector refused this request for good (e.g. 400): retrying cannot help.
    Refused(String),
}

fn send_loop(shared: &Shared, endpoint: &Endpoint) {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    let mut flush_until: Option<Instant> = None;
    loop {
        let batch: Vec<(u64, StepRow)> = {
            let mut q = shared.lock();
            while q.rows.is_empty() && !q.closing {
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            if q.rows.is_empty() {
                return;
            }
            if q.closing {
                let until = *flush_until.get_or_insert_with(|| Instant::now() + FLUSH);
                if Instant::now() >= until {
                    tracing::warn!(
                        "OTLP: {} decisions not sent at shutdown (they are in the audit log)",
                        q.rows.len()
                    );
                    return;
                }
            }
            q.rows
                .iter()
                .take(BATCH)
                .map(|(id, _, row)| (*id, row.clone()))
                .collect()
        };
        let Some(last) = batch.last().map(|(id, _)| *id) else {
            continue;
        };
        let rows: Vec<StepRow> = batch.into_iter().map(|(_, r)| r).collect();
        let body = limbic_audit::otlp::traces_request(&rows).to_string();
        let otlp = &shared.metrics.otlp;
        match post(endpoint, body.as_bytes()) {
            Ok(()) => {
                let sent = shared.remove_through(last);
                otlp.exported.fetch_add(sent as u64, Ordering::Relaxed);
                if failing {
                    tracing::info!("OTLP: collector {} reachable again", endpoint.authority);
                }
                failing = false;
                backoff = FIRST_BACKOFF;
            }
            Err(Failure::Refused(why)) => {
                otlp.failed.fetch_add(1, Ordering::Relaxed);
                let dropped = shared.remove_through(last);
                otlp.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                tracing::warn!("OTLP: collector refused {dropped} decisions, dropped: {why}");
            }
            Err(Failure::Retry(why)) => {
                otlp.failed.fetch_add(1, Ordering::Relaxed);
                // Logged when the collector goes away, not on every retry.
                if !failing {
                    tracing::warn!(
                        "OTLP: cannot reach {} ({why}); retrying with backoff, decisions \
                         queue up to the limit (oldest dropped first)",
                        endpoint.authority
                    );
                }
                failing = true;
                let q = shared.lock();
                if q.closing {
                    // Shutting down with the collector down: no point waiting for it.
                    tracing::warn!(
                        "OTLP: {} decisions not sent at shutdown (they are in the audit log)",
                        q.rows.len()
                    );
                    return;
                }
                // New rows do not cut the wait short; shutdown does.
                drop(
                    shared
                        .wake
                        .wait_timeout_while(q, backoff, |q| !q.closing)
                        .unwrap_or_else(PoisonError::into_inner),
                );
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One OTLP/HTTP JSON export request: `Ok` on a 2xx answer.
fn post(endpoint: &Endpoint, body: &[u8]) -> std::result::Result<(), Failure> {
    let retry = |what: &str, e: std::io::Error| Failure::Retry(format!("{what}: {e}"));
    let addrs = endpoint
        .authority
        .to_socket_addrs()
        .map_err(|e| retry("resolving", e))?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(match last {
            Some(e) => retry("connecting", e),
            None => Failure::Retry("no address".into()),
        });
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         User-Agent: limbic/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| retry("sending", e))?;
    // The status line is all we need; read a bounded answer.
    let mut answer = Vec::new();
    let _ = Read::by_ref(&mut stream)
        .take(16 * 1024)
        .read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Retry("no HTTP status in the answer".into()))?;
    match status {
        200..=299 => Ok(()),
        // The OTLP/HTTP spec's retryable codes.
        429 | 502 | 503 | 504 => Err(Failure::Retry(format!("HTTP {status}"))),
        _ => {
            let detail: String = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.chars().take(200).collect())
                .unwrap_or_default();
            Err(Failure::Refused(format!("HTTP {status} {detail}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, args: serde_json::Value) -> StepRow {
        let record = limbic_audit::StepRecord {
            session_id: "s".into(),
            step_index: step,
            ts_start_ms: 1,
            ts_end_ms: 2,
            tool: "Bash".into(),
            args,
            text: "words".into(),
            scores: Default::default(),
            peak: Default::default(),
            stress_signature: 0.5,
            spike: false,
            latency_ms: 1.0,
            tracker_state: None,
        };
        let decision = limbic_audit::DecisionRecord {
            decision: "allow".into(),
            reroute: None,
            rule_id: "r".into(),
            reason: "calm".into(),
            classes: Vec::new(),
            delivery: Default::default(),
            delivery_note: None,
        };
        let receipt = limbic_audit::StepReceipt {
            session_row: 1,
            step_row: 1,
            decision_row: 1,
            seq: 2,
            row_hash: "a".repeat(64),
            step_seq: 1,
            step_hash: "b".repeat(64),
        };
        StepRow::committed(&record, &decision, &receipt, true)
    }

    fn queue(capacity: usize, max_bytes: usize) -> Shared {
        Shared::new(capacity, max_bytes, Arc::default())
    }

    fn steps(q: &Shared) -> Vec<u64> {
        q.lock().rows.iter().map(|(_, _, r)| r.step_index).collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_by_count_and_by_bytes() {
        let q = queue(2, usize::MAX);
        for step in 1..=3 {
            q.push(row(step, serde_json::json!({})));
        }
        assert_eq!(steps(&q), [2, 3]);
        assert_eq!(q.metrics.otlp.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(q.metrics.otlp.queued.load(Ordering::Relaxed), 2);
        // Sent: ids up to the one of step 2 leave; later rows stay.
        assert_eq!(q.remove_through(1), 1);
        assert_eq!(steps(&q), [3]);

        let big = serde_json::json!({ "content": "x".repeat(4000) });
        let one = weight(&row(1, big.clone()));
        let q = queue(100, 2 * one + one / 2);
        for step in 1..=3 {
            q.push(row(step, big.clone()));
        }
        assert_eq!(steps(&q), [2, 3], "two rows fit the byte bound");
        assert_eq!(q.lock().bytes, 2 * one);
        assert!(q.remove_through(u64::MAX) == 2 && q.lock().bytes == 0);
    }

    #[test]
    fn endpoints_parse_like_the_otel_exporters() {
        let e = Endpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(e.authority, "127.0.0.1:4318");
        assert_eq!(e.path, "/v1/traces");
        let e = Endpoint::parse("http://collector/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("collector:4318", "/v1/traces")
        );
        let e = Endpoint::parse("http://[::1]:9000/otlp/v1/traces").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("[::1]:9000", "/otlp/v1/traces")
        );
        let e = Endpoint::parse("http://h:1/base").unwrap();
        assert_eq!(e.path, "/base/v1/traces");
        let err = Endpoint::parse("https://h:4318").unwrap_err().to_string();
        assert!(err.contains("TLS"), "{err}");
        for bad in [
            "h:4318",
            "http://",
            "http://u:p@h/",
            "http://h /x",
            "ftp://h",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
