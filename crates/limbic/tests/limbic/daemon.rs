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
