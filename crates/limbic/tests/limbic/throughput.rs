//! Long steps, deadlines and concurrent sessions (issue: every step scored, in time).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// A POST with extra headers (and the daemon's token when it has one).
fn post_with(
    home: &Path,
    addr: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Ok(token) = std::fs::read_to_string(home.join("token")) {
        head.push_str(&format!("Authorization: Bearer {}\r\n", token.trim()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Code-like file content of about `bytes` bytes.
fn source_file(bytes: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(&format!(
            "pub fn handler_{i}(req: &Request) -> Response {{\n    let id = req.param(\"id\");\n    Response::ok(format!(\"item {{id}}\"))\n}}\n\n"
        ));
        i += 1;
    }
    out
}

#[test]
fn long_calm_steps_are_scored_and_allowed() {
    let dir = tempdir();
    let input = dir.path().join("long.jsonl");
    let audit = dir.path().join("audit.db");
    let long_words = "I read the module and the tests again and everything lines up with the plan we agreed on. "
        .repeat(70); // ~6 KB of calm words: more tokens than one session window
    let lines = [
        step_json(
            "long",
            "Writing the generated API client module, as planned in the design note.",
            "Write",
            json!({"file_path": "src/client.rs", "content": source_file(20_000)}),
        ),
        step_json(
            "long",
            &long_words,
            "Bash",
            json!({"command": "cargo build"}),
        ),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = run(limbic(dir.path())
        .args(["check", "--input"])
        .arg(&input)
        .arg("--audit")
        .arg(&audit)
        .args(["--n-ctx", "2048", "--max-sessions", "4"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&stdout(&out));
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(row.get("unscored").is_none(), "scored: {row}");
        assert_eq!(row["decision"], "allow", "{row}");
        assert!(row["latency_ms"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn a_step_past_its_deadline_is_decided_by_the_fail_mode_and_recorded_as_late() {
    let dir = tempdir();
    let audit = dir.path().join("deadline.db");
    let daemon = Daemon::start(dir.path(), &["--audit", audit.to_str().unwrap()]);
    let body = step_json(
        "late",
        "Building the release before the deploy.",
        "Bash",
        json!({"command": "cargo build --release"}),
    );
    let (status, answer) = post_with(
        dir.path(),
        &daemon.addr,
        "/v1/steps",
        &body,
        &[("X-Limbic-Deadline-Ms", "0")],
    );
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let why = answer["unscored"].as_str().unwrap_or_default();
    assert!(why.contains("deadline"), "{answer}");
    // fail_mode = closed in the default policy: an unscored step is not allowed.
    assert_ne!(answer["decision"], "allow", "{answer}");
    drop(daemon);
    let sqlite = Command::new("sqlite3")
        .arg(&audit)
        .arg("SELECT delivery FROM decisions ORDER BY rowid DESC LIMIT 1")
        .output()
        .expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&sqlite.stdout).trim(), "late");
}

#[test]
fn concurrent_sessions_are_all_answered_and_numbered_per_session() {
    let dir = tempdir();
    let audit = dir.path().join("load.db");
    let daemon = Daemon::start(
        dir.path(),
        &["--audit", audit.to_str().unwrap(), "--max-sessions", "4"],
    );
    let home = dir.path().to_path_buf();
    let threads: Vec<_> = (0..12)
        .map(|s| {
            let addr = daemon.addr.clone();
            let home = home.clone();
            std::thread::spawn(move || {
                (1..=3)
                    .map(|i| {
                        let body = step_json(
                            &format!("agent-{s}"),
                            &format!("Step {i}: reading the next file of the refactor."),
                            "Read",
                            json!({"file_path": format!("src/mod_{i}.rs")}),
                        );
                        post_with(&home, &addr, "/v1/steps", &body, &[])
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (s, t) in threads.into_iter().enumerate() {
        let answers = t.join().unwrap();
        for (i, (status, body)) in answers.iter().enumerate() {
            assert_eq!(*status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["session"], format!("agent-{s}"));
            assert_eq!(v["step"], i as u64 + 1);
            assert!(v.get("unscored").is_none(), "{v}");
        }
    }
    // A step number that goes backwards is refused, not renumbered.
    let stale = json!({"session": "agent-0", "step": 2, "text": "again",
                       "action": {"tool": "Read", "args": {}}})
    .to_string();
    let (status, body) = post_with(dir.path(), &daemon.addr, "/v1/steps", &stale, &[]);
    assert_eq!(status, 409, "{body}");
}
