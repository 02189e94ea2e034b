//! `serve --otlp-endpoint` (the `otlp` feature): the real daemon on the real model streams
//! each decision to an OTLP/HTTP receiver on loopback — a small HTTP server in this test —
//! and keeps answering and auditing every step while the collector is down.
//!
//! A test binary of its own because it needs the feature: `.ci/run` runs
//! `cargo test -p limbic --features otlp --test otlp`.

#[path = "limbic/common.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// What the receiver got: (request path, JSON body) per POST.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Answers every request 200 and keeps what was POSTed (runs until the test ends).
fn receiver(listener: TcpListener) -> Received {
    let got: Received = Arc::default();
    let store = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            store.lock().expect("lock").push((path, json));
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
                  Connection: close\r\n\r\n{}",
            );
        }
    });
    got
}

/// Every span received so far.
fn spans(got: &Received) -> Vec<Value> {
    got.lock()
        .expect("lock")
        .iter()
        .flat_map(|(_, body)| {
            body["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn attr_str<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    attr(span, key).and_then(|v| v["stringValue"].as_str())
}

/// The guardrail span of (session, step), found through its `execute_tool` parent.
fn guardrail_span(all: &[Value], session: &str, step: u64) -> Option<Value> {
    let tool = all.iter().find(|s| {
        attr_str(s, "gen_ai.conversation.id") == Some(session)
            && attr(s, "limbic.step").and_then(|v| v["intValue"].as_str())
                == Some(step.to_string().as_str())
    })?;
    all.iter()
        .find(|s| s["parentSpanId"] == tool["spanId"])
        .cloned()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A counter from `/metrics` (0 when absent).
fn metric(addr: &str, name: &str) -> u64 {
    let (status, body) = http(addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn post_step(addr: &str, session: &str, text: &str, command: &str) -> Value {
    let body = step_json(
        session,
        text,
        "Bash",
        serde_json::json!({ "command": command }),
    );
    let (status, answer) = http(addr, "POST", "/v1/steps", Some(body.as_bytes()));
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).expect("answer JSON")
}

const STEPS: [(&str, &str); 3] = [
    ("Listing the files to see the layout.", "ls -la"),
    (
        "Nothing works and the deadline is in five minutes. I have to get this merged now, \
         whatever it takes.",
        "git push --force origin main",
    ),
    (
        "Skipping the hooks, they keep failing and I am out of time.",
        "git commit --no-verify -m wip",
    ),
];

fn audit_json_lines(home: &Path, db: &Path) -> Vec<Value> {
    let o = run(limbic(home)
        .args([
            "audit", "export", "--format", "jsonl", "--out", "-", "--audit",
        ])
        .arg(db));
    assert!(o.status.success(), "{}", stderr(&o));
    json_lines(&stdout(&o))
}

/// `limbic serve` auditing to `db` and streaming to `endpoint`.
fn streaming_daemon(home: &Path, db: &Path, endpoint: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--audit",
        db.to_str().expect("utf8"),
        "--otlp-endpoint",
        endpoint,
    ];
    args.extend_from_slice(extra);
    Daemon::start(home, &args)
}

#[test]
fn each_decision_reaches_the_collector_as_its_spans() {
    let home = tempdir();
    let db = home.path().join("audit.db");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let collector = listener.local_addr().expect("addr").to_string();
    let got = receiver(listener);
    let daemon = streaming_daemon(home.path(), &db, &format!("http://{collector}"), &[]);
    let answers: Vec<Value> = STEPS
        .iter()
        .map(|(text, command)| post_step(&daemon.addr, "otlp-live", text, command))
        .collect();
    assert!(
        answers.iter().any(|a| a["decision"] != "allow"),
        "expected a non-allow decision among {answers:?}"
    );
    wait_for("the spans of every step", Duration::from_secs(30), || {
        spans(&got).len() >= 2 * STEPS.len()
    });
    let all = spans(&got);
    for answer in &answers {
        let step = answer["step"].as_u64().expect("step");
        let span = guardrail_span(&all, "otlp-live", step)
            .unwrap_or_else(|| panic!("no guardrail span for step {step}"));
        let verdict = match answer["decision"].as_str().expect("decision") {
            "veto" => "deny",
            "reroute" => "modify",
            other => other,
        };
        assert_eq!(
            attr_str(&span, "gen_ai.security.verdict.type"),
            Some(verdict)
        );
        assert_eq!(
            attr_str(&span, "gen_ai.security.policy.rule.id"),
            answer["rule"].as_str()
        );
        assert_eq!(span["events"][0]["name"], "gen_ai.security.finding");
    }
    assert!(got
        .lock()
        .expect("lock")
        .iter()
        .all(|(path, _)| path == "/v1/traces"));
    assert_eq!(metric(&daemon.addr, "limbic_otlp_exported_total"), 3);
    assert_eq!(metric(&daemon.addr, "limbic_otlp_failed_total"), 0);
    assert!(daemon.terminate().success());

    // What was streamed is the log's own export: same spans, same ids.
    let o = run(limbic(home.path())
        .args([
            "audit",
            "export",
            "--format",
            "otlp-json",
            "--out",
            "-",
            "--audit",
        ])
        .arg(&db));
    assert!(o.status.success(), "{}", stderr(&o));
    let exported: Value = serde_json::from_str(&stdout(&o)).expect("export JSON");
    let exported = exported["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(exported, all);
}

#[test]
fn with_the_collector_down_every_step_is_answered_audited_and_counted() {
    let home = tempdir();
    let db = home.path().join("audit.db");
    // A port nothing listens on (yet).
    let collector = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let daemon = streaming_daemon(
        home.path(),
        &db,
        &format!("http://{collector}/"),
        &["--otlp-queue", "2"],
    );
    let texts = ["Reading the log.", "Checking the status.", "Listing pods."];
    for (i, text) in texts.iter().enumerate() {
        let answer = post_step(&daemon.addr, "otlp-down", text, "ls");
        assert_eq!(answer["step"], i as u64 + 1);
    }
    wait_for("a failed export", Duration::from_secs(20), || {
        metric(&daemon.addr, "limbic_otlp_failed_total") >= 1
    });
    // Three decisions into a queue of two: the oldest was dropped, none exported.
    assert_eq!(metric(&daemon.addr, "limbic_otlp_dropped_total"), 1);
    assert_eq!(metric(&daemon.addr, "limbic_otlp_exported_total"), 0);
    let (status, health) = http(&daemon.addr, "GET", "/health", None);
    assert_eq!(status, 200, "{health}");

    // The collector comes up: the queued decisions arrive on a retry.
    let got = receiver(TcpListener::bind(&collector).expect("rebind the collector port"));
    wait_for("the retry to deliver", Duration::from_secs(30), || {
        metric(&daemon.addr, "limbic_otlp_exported_total") == 2
    });
    let all = spans(&got);
    assert!(guardrail_span(&all, "otlp-down", 1).is_none());
    assert!(guardrail_span(&all, "otlp-down", 2).is_some());
    assert!(guardrail_span(&all, "otlp-down", 3).is_some());
    assert!(daemon.terminate().success());

    // The local log has every step, whatever the stream lost.
    assert_eq!(audit_json_lines(home.path(), &db).len(), texts.len());
    let o = run(limbic(home.path())
        .args(["audit", "verify", "--audit"])
        .arg(&db));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_bad_endpoint_is_refused_at_start() {
    let home = tempdir();
    let err = serve_refused(
        home.path(),
        &["--otlp-endpoint", "https://collector.example:4318"],
    );
    assert!(err.contains("TLS"), "{err}");
}
