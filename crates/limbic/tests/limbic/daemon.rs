//! The daemon over HTTP: concurrent sessions, health, metrics, refusals, hot reload.

use crate::common::*;
use serde_json::json;

#[test]
fn daemon_serves_concurrent_sessions_and_refuses_bad_requests() {
    let dir = tempdir();
    let audit = dir.path().join("daemon.db");
    let daemon = Daemon::start(dir.path(), &["--audit", audit.to_str().unwrap()]);
    let (status, body) = http(&daemon.addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["probes"], true, "{health}");

    // Four sessions at once, three steps each, from four threads.
    let handles: Vec<_> = (0..4)
        .map(|s| {
            let addr = daemon.addr.clone();
            std::thread::spawn(move || {
                (1..=3)
                    .map(|i| {
                        let body = step_json(
                            &format!("agent-{s}"),
                            &format!("Step {i}: reading the build log for module {s}."),
                            "Read",
                            json!({"file_path": format!("build/{s}/log-{i}.txt")}),
                        );
                        let (status, body) =
                            http(&addr, "POST", "/v1/steps", Some(body.as_bytes()));
                        assert_eq!(status, 200, "{body}");
                        serde_json::from_str::<serde_json::Value>(&body).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (s, h) in handles.into_iter().enumerate() {
        let answers = h.join().expect("client thread");
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(a["session"], format!("agent-{s}"));
            assert_eq!(a["step"], (i + 1) as u64, "steps stay in order per session");
            assert_eq!(a["scores"].as_object().unwrap().len(), 6);
        }
    }

    let (status, body) = http(&daemon.addr, "POST", "/v1/steps", Some(b"{not json"));
    assert_eq!(status, 400, "malformed JSON: {body}");
    assert!(body.contains("error"));
    let (status, body) = http(
        &daemon.addr,
        "POST",
        "/v1/steps",
        Some(
            json!({"session": "x", "text": "no action"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(status, 422, "missing field: {body}");
    let huge = step_json("x", &"a".repeat(200_000), "Read", json!({}));
    let (status, _) = http(&daemon.addr, "POST", "/v1/steps", Some(huge.as_bytes()));
    assert_eq!(status, 413, "oversized step");

    let (status, metrics) = http(&daemon.addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("limbic_steps_total 12"), "{metrics}");
    assert!(metrics.contains("limbic_step_latency_seconds_bucket"));
    assert!(metrics.contains("limbic_decisions_total{decision=\"allow\"}"));
    assert!(metrics.contains("limbic_llama_prompt_tokens_total"));
    drop(daemon);

    let verify = run(limbic(dir.path())
        .args(["audit", "verify", "--audit"])
        .arg(&audit));
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).contains("ok:"));
}

#[test]
fn broken_policy_on_hot_reload_keeps_the_last_good_one() {
    let dir = tempdir();
    let policy = dir.path().join("policy.toml");
    let good =
        std::fs::read_to_string(repo().join("firmware-configs/policy.default.toml")).unwrap();
    std::fs::write(&policy, &good).unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            dir.path().join("a.db").to_str().unwrap(),
        ],
    );
    let hash_before =
        serde_json::from_str::<serde_json::Value>(&http(&daemon.addr, "GET", "/health", None).1)
            .unwrap()["policy"]["hash"]
            .clone();
    assert!(hash_before.is_string());
    std::fs::write(&policy, "this is [not toml").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let health = loop {
        let h: serde_json::Value =
            serde_json::from_str(&http(&daemon.addr, "GET", "/health", None).1).unwrap();
        if !h["policy"]["last_error"].is_null() || std::time::Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        health["policy"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("policy.toml"),
        "{health}"
    );
    assert_eq!(
        health["policy"]["hash"], hash_before,
        "the last good policy stays in force"
    );
    let (status, body) = http(
        &daemon.addr,
        "POST",
        "/v1/steps",
        Some(
            step_json(
                "s",
                "Reading the log.",
                "Read",
                json!({"file_path": "x.log"}),
            )
            .as_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn only_token_holders_are_served_and_answers_are_signed() {
    let dir = tempdir();
    let audit = dir.path().join("auth.db");
    // The hook's address syntax is accepted by serve too.
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--addr",
            "http://127.0.0.1:0/",
            "--audit",
            audit.to_str().unwrap(),
            "--anchor-out",
            dir.path().join("auth.anchor.json").to_str().unwrap(),
        ],
    );
    assert!(daemon.token.len() >= 32, "token {:?}", daemon.token);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let step = step_json(
        "s",
        "Reading the log.",
        "Read",
        json!({"file_path": "x.log"}),
    );

    // /health is open.
    let (status, _, body) = http_raw(&daemon.addr, "GET", "/health", None, &[]);
    assert_eq!(status, 200, "{body}");
    // Everything else needs the token.
    for (path, method, body) in [
        ("/v1/steps", "POST", Some(step.as_bytes())),
        ("/metrics", "GET", None),
    ] {
        let (status, _, answer) = http_raw(&daemon.addr, method, path, body, &[]);
        assert_eq!(status, 401, "{path} without a token: {answer}");
        assert!(answer.contains("\"error\""), "{answer}");
        let wrong = format!("Bearer {}", "0".repeat(64));
        let (status, _, _) = http_raw(
            &daemon.addr,
            method,
            path,
            body,
            &[("Authorization", &wrong)],
        );
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    // A DNS-rebinding page reaches the daemon with a foreign Host: refused, token or not.
    let auth = format!("Bearer {}", daemon.token);
    let (status, _, body) = http_raw(
        &daemon.addr,
        "POST",
        "/v1/steps",
        Some(step.as_bytes()),
        &[("Host", "evil.example:7370"), ("Authorization", &auth)],
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = http_raw(
        &daemon.addr,
        "GET",
        "/health",
        None,
        &[("Host", "attacker.test")],
    );
    assert_eq!(status, 403);
    // With the token (and `localhost` as Host) the step is decided, and the answer carries
    // the proof for the client's nonce.
    let nonce = limbic_guard::auth::new_nonce().unwrap();
    let port = daemon.addr.rsplit_once(':').unwrap().1.to_string();
    let (status, head, body) = http_raw(
        &daemon.addr,
        "POST",
        "/v1/steps",
        Some(step.as_bytes()),
        &[
            ("Host", &format!("localhost:{port}")),
            ("Authorization", &auth),
            ("X-Limbic-Nonce", &nonce),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let proof = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-limbic-proof:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no proof header in {head}"));
    assert!(limbic_guard::auth::proof_matches(
        &daemon.token,
        &nonce,
        body.as_bytes(),
        &proof
    ));

    // The hook's way: the token proven by a signature over time, nonce and body, never
    // sent. A signed request is accepted once; a replay, a stale time or another token is not.
    let signed = |time: u64, nonce: &str, token: &str| {
        let sig = limbic_guard::auth::request_signature(
            token,
            time,
            nonce,
            "POST",
            "/v1/steps",
            step.as_bytes(),
        );
        http_raw(
            &daemon.addr,
            "POST",
            "/v1/steps",
            Some(step.as_bytes()),
            &[
                ("X-Limbic-Time", &time.to_string()),
                ("X-Limbic-Nonce", nonce),
                ("X-Limbic-Signature", &sig),
            ],
        )
    };
    let now = limbic_guard::auth::now_unix_ms();
    let nonce = limbic_guard::auth::new_nonce().unwrap();
    let (status, _, body) = signed(now, &nonce, &daemon.token);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = signed(now, &nonce, &daemon.token);
    assert_eq!(status, 401, "replayed: {body}");
    assert!(body.contains("already used"), "{body}");
    let stale = limbic_guard::auth::new_nonce().unwrap();
    let (status, _, _) = signed(now - 10 * 60_000, &stale, &daemon.token);
    assert_eq!(status, 401, "stale");
    let other = limbic_guard::auth::new_nonce().unwrap();
    let (status, _, _) = signed(now, &other, &"f".repeat(64));
    assert_eq!(status, 401, "another token");

    // SIGTERM: a clean exit, and the WAL is checkpointed into audit.db.
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    let wal = std::fs::metadata(dir.path().join("auth.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0, "the WAL is checkpointed on shutdown");
    // audit.db alone (no WAL copied) holds the step.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(&audit, copy.join("auth.db")).unwrap();
    let verify = run(limbic(dir.path())
        .args(["audit", "verify", "--audit"])
        .arg(copy.join("auth.db")));
    assert!(verify.status.success(), "{}", stderr(&verify));
    // The shutdown anchor names the last row: the copy extends it...
    let anchor = dir.path().join("auth.anchor.json");
    let with_anchor = |db: &std::path::Path| {
        run(limbic(dir.path())
            .args(["audit", "verify", "--audit"])
            .arg(db)
            .arg("--anchor")
            .arg(&anchor)
            .arg("--key")
            .arg(dir.path().join("auth.db.key")))
    };
    let anchored = with_anchor(&copy.join("auth.db"));
    assert!(anchored.status.success(), "{}", stderr(&anchored));
    // ...and a copy cut back by its last row no longer does.
    let cut = dir.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    std::fs::copy(&audit, cut.join("auth.db")).unwrap();
    let deleted = std::process::Command::new("sqlite3")
        .arg(cut.join("auth.db"))
        .arg("DELETE FROM decisions WHERE rowid = (SELECT max(rowid) FROM decisions)")
        .status()
        .expect("sqlite3");
    assert!(deleted.success());
    assert!(!with_anchor(&cut.join("auth.db")).status.success());
    let show = run(limbic(dir.path())
        .args(["audit", "show", "--audit"])
        .arg(copy.join("auth.db")));
    assert!(
        stdout(&show).contains("s step   1") && stdout(&show).contains("s step   2"),
        "{}",
        stdout(&show)
    );
}

#[test]
fn slow_clients_are_cut_off_connections_capped_health_degraded_and_files_kept() {
    use std::io::{Read, Write};
    let dir = tempdir();
    // A file that is not a model: the daemon still answers (fail mode) but says so.
    let bad_model = dir.path().join("broken.gguf");
    std::fs::write(&bad_model, b"GGUF but not really").unwrap();

    // --socket never deletes a file that is not a socket.
    let precious = dir.path().join("notes.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let refused = run(limbic(dir.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--model",
        bad_model.to_str().unwrap(),
        "--socket",
        precious.to_str().unwrap(),
    ]));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not a socket"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    let daemon = Daemon::start(
        dir.path(),
        &[
            "--model",
            bad_model.to_str().unwrap(),
            "--audit",
            dir.path().join("s.db").to_str().unwrap(),
            "--socket",
            dir.path().join("limbic.sock").to_str().unwrap(),
            "--max-connections",
            "2",
            "--header-timeout-ms",
            "2000",
        ],
    );
    let (status, body) = http(&daemon.addr, "GET", "/health", None);
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["problems"][0]
            .as_str()
            .unwrap_or_default()
            .contains("probes unavailable"),
        "{health}"
    );

    // The Unix socket speaks the same API under the same rules.
    let over_unix = |request: &str| {
        let mut s =
            std::os::unix::net::UnixStream::connect(dir.path().join("limbic.sock")).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    let answer = over_unix("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = over_unix("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // Two clients that never finish their headers fill the cap; a third is closed at once.
    let connected = std::time::Instant::now();
    let slow: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&daemon.addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: loc").unwrap();
            s
        })
        .collect();
    // Time for the daemon to accept both (the machine may be busy), well within 2 s.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let mut third = std::net::TcpStream::connect(&daemon.addr).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut buf = Vec::new();
    let _ = third.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "over the cap: {}",
        String::from_utf8_lossy(&buf)
    );
    // The slow ones are dropped after the header timeout (hyper answers 408 or closes).
    for mut s in slow {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    assert!(
        connected.elapsed() < std::time::Duration::from_secs(8),
        "slow clients held for {:?}",
        connected.elapsed()
    );
    // Slots are free again.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (status, _) = http(&daemon.addr, "GET", "/health", None);
    assert_eq!(status, 200);
    let (_, metrics) = http(&daemon.addr, "GET", "/metrics", None);
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("limbic_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "{metrics}");
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_decision_and_trackers_resume() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempdir();
    let audit = dir.path().join("chaos.db");
    let audit_arg = audit.to_str().unwrap().to_string();
    let sessions: Vec<String> = (0..4).map(|i| format!("chaos-{i}")).collect();
    let acknowledged: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    // A cheap varying kill point (no RNG dependency): the clock's nanoseconds.
    let jitter = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()) % 2000)
            .unwrap_or(700)
    };
    for round in 0..2 {
        let daemon = Daemon::start(dir.path(), &["--audit", &audit_arg]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = sessions
            .iter()
            .map(|session| {
                let (addr, session) = (daemon.addr.clone(), session.clone());
                let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let body = step_json(
                            &session,
                            &format!("Round {round}, step {i}: checking the build output again."),
                            "Read",
                            json!({"file_path": format!("build/{i}.log")}),
                        );
                        match try_http(&addr, "POST", "/v1/steps", body.as_bytes()) {
                            Some((200, answer)) => {
                                let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                                let step = v["step"].as_u64().unwrap();
                                acknowledged.lock().unwrap().push((session.clone(), step));
                            }
                            Some((status, answer)) => panic!("{status}: {answer}"),
                            None => break, // killed mid-request: not acknowledged
                        }
                    }
                })
            })
            .collect();
        // Long enough for several answers on a loaded machine (a first step takes ~1.5 s).
        std::thread::sleep(std::time::Duration::from_millis(4000 + jitter()));
        drop(daemon); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client");
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty(), "the load ran");

    let verify = run(limbic(dir.path())
        .args(["audit", "verify", "--audit"])
        .arg(&audit));
    assert!(verify.status.success(), "{}", stderr(&verify));
    let mut logged: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for session in &sessions {
        let show = run(limbic(dir.path())
            .args([
                "audit",
                "show",
                "--json",
                "--limit",
                "100000",
                "--session",
                session,
            ])
            .arg("--audit")
            .arg(&audit));
        let steps: Vec<u64> = json_lines(&stdout(&show))
            .iter()
            .map(|r| r["step_index"].as_u64().unwrap())
            .collect();
        assert!(
            steps.windows(2).all(|w| w[0] < w[1]),
            "{session}: steps increase without duplicates across the kill: {steps:?}"
        );
        logged.insert(session.clone(), steps);
    }
    for (session, step) in &acknowledged {
        assert!(
            logged[session].contains(step),
            "acknowledged {session} step {step} is missing from the log"
        );
    }
    // After a restart each session continues after its last logged step.
    let daemon = Daemon::start(dir.path(), &["--audit", &audit_arg]);
    for session in &sessions {
        let body = step_json(
            session,
            "Reading one more log.",
            "Read",
            json!({"file_path": "x"}),
        );
        let (status, answer) = http(&daemon.addr, "POST", "/v1/steps", Some(body.as_bytes()));
        assert_eq!(status, 200, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let last = logged[session].last().copied().unwrap_or(0);
        assert_eq!(v["step"].as_u64(), Some(last + 1), "{session}");
    }
}

/// Without the `otlp` feature the flag exists (so `--help` explains it) but is refused at
/// start, naming the feature, before any model is loaded.
#[test]
fn otlp_endpoint_without_the_feature_is_refused_naming_it() {
    if cfg!(feature = "otlp") {
        return;
    }
    let dir = tempdir();
    let err = serve_refused(dir.path(), &["--otlp-endpoint", "http://127.0.0.1:4318"]);
    assert!(err.contains("--features otlp"), "{err}");
}
