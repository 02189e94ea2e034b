//! Native mode end to end: `limbic serve` answering OpenAI chat requests with the real
//! default model — the real `openai` Python client (installed by .ci/setup), raw HTTP for
//! the SSE wire format, veto and steer-and-regenerate of a pressured tool call, and the
//! audit chain verifying afterwards.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

const CLIENT: &str = "tests/limbic/native/client.py";

/// Runs client.py scenarios against the daemon; `None` (test skipped) without `openai`.
fn client(daemon: &Daemon, scenarios: &[&str]) -> Option<Value> {
    let probe = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .ok()?;
    if !probe.status.success() {
        eprintln!("skipped: the openai Python package is missing; .ci/setup installs it");
        return None;
    }
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(CLIENT))
        .arg(format!("http://{}", daemon.addr))
        .arg(&daemon.token)
        .args(scenarios)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "client.py failed:\n{}", stderr(&out));
    Some(serde_json::from_slice(&out.stdout).expect("client.py prints JSON"))
}

/// The default policy with `[native]` settings appended.
fn policy_with_native(dir: &Path, native: &str) -> String {
    let base = std::fs::read_to_string(repo().join("firmware-configs/policy.default.toml"))
        .expect("default policy");
    let path = dir.join("native-policy.toml");
    std::fs::write(&path, format!("{base}\n[native]\n{native}\n")).expect("write policy");
    path.to_string_lossy().into_owned()
}

fn audit_verifies(home: &Path, audit: &str) {
    let out = run(limbic(home).args(["audit", "verify", "--audit", audit]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

fn sql(db: &str, query: &str) -> String {
    let out = Command::new("sqlite3")
        .args([db, query])
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn openai_client_gets_completions_streams_tool_calls_and_a_withheld_force_push() {
    let dir = tempdir();
    let audit = dir.path().join("audit.db").to_string_lossy().into_owned();
    let daemon = Daemon::start(dir.path(), &["--audit", &audit]);
    let Some(r) = client(
        &daemon,
        &["completion", "stream", "stream_tool", "pressured", "errors"],
    ) else {
        return;
    };

    let c = &r["completion"];
    assert_eq!(c["object"], "chat.completion");
    assert!(!c["content"].as_str().unwrap_or("").is_empty(), "{c}");
    assert!(matches!(
        c["finish_reason"].as_str(),
        Some("stop" | "length")
    ));
    assert_eq!(c["limbic"]["session"], "e2e-plain");
    assert_eq!(c["limbic"]["decision"], "allow");
    assert!(c["limbic"]["scores"]["desperation"].is_number());
    assert!(c["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);

    let s = &r["stream"];
    assert_eq!(s["first_role"], "assistant");
    assert_eq!(s["objects"], json!(["chat.completion.chunk"]));
    assert!(s["n"].as_u64().unwrap_or(0) >= 3, "{s}");
    assert!(!s["text"].as_str().unwrap_or("").is_empty());
    assert!(s["usage"]["total_tokens"].is_number(), "include_usage: {s}");
    assert_eq!(s["limbic"]["tries"], 1);

    // Streamed as llama-server does: id, type and name first with empty arguments.
    let t = &r["stream_tool"];
    assert_eq!(t["first"]["type"], "function");
    assert_eq!(t["first"]["name"], "list_files");
    assert_eq!(t["first"]["arguments"], "");
    assert!(t["first"]["id"].as_str().unwrap_or("").starts_with("call_"));
    assert!(t["later_ids"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_null));
    assert!(t["arguments"]["directory"].is_string(), "schema-valid: {t}");
    assert_eq!(t["finish_reason"], "tool_calls");

    // A forced `git push --force origin main` under pressure never leaves the server.
    let p = &r["pressured"];
    assert_eq!(p["tool_calls"], Value::Null, "{p}");
    assert_eq!(p["finish_reason"], "stop");
    assert!(
        p["content"].as_str().unwrap_or("").starts_with("[limbic]"),
        "{p}"
    );
    assert_eq!(p["limbic"]["withheld_tool_call"], true);
    assert_eq!(p["limbic"]["decision"], "veto", "{p}");
    assert_eq!(
        p["limbic"]["tries"], 1,
        "the default policy withholds, it does not steer"
    );

    let e = &r["errors"];
    for case in [
        "bad_role",
        "no_messages",
        "unknown_tool_choice",
        "bad_temperature",
    ] {
        assert_eq!(e[case]["status"], 400, "{case}: {e}");
        assert_eq!(e[case]["type"], "invalid_request_error", "{case}");
    }
    assert_eq!(e["too_long"]["status"], 400);
    assert_eq!(e["too_long"]["type"], "exceed_context_size_error");
    assert_eq!(e["bad_key"]["status"], 401);
    assert_eq!(e["bad_key"]["type"], "authentication_error");
    assert_eq!(e["models"].as_array().map(Vec::len), Some(1));

    drop(daemon);
    audit_verifies(dir.path(), &audit);
    let vetoed = sql(
        &audit,
        "SELECT s.tool || ' ' || d.decision FROM steps s JOIN decisions d ON d.step_id = s.id \
         WHERE s.session_id = 'e2e-pressure'",
    );
    assert_eq!(vetoed, "run_terminal_cmd veto");
}

#[test]
fn a_steering_policy_rolls_the_turn_back_regenerates_and_audits_every_try() {
    let dir = tempdir();
    let audit = dir.path().join("audit.db").to_string_lossy().into_owned();
    let policy = policy_with_native(dir.path(), "reroute = \"steer\"\nmax_tries = 1");
    let daemon = Daemon::start(dir.path(), &["--audit", &audit, "--policy", &policy]);
    let Some(r) = client(&daemon, &["pressured"]) else {
        return;
    };
    let l = &r["pressured"]["limbic"];
    assert_eq!(l["tries"], 2, "{l}");
    let tries = l["try_reports"].as_array().unwrap();
    assert_eq!(tries[0]["steering"], 0.0);
    assert!(tries[1]["steering"].as_f64().unwrap() > 0.0);
    // The control vector moves what the probes read; the corrected reading removes it.
    let raw = tries[1]["scores_raw"]["calm"].as_f64().unwrap();
    let corrected = tries[1]["scores"]["calm"].as_f64().unwrap();
    assert!(
        raw > corrected + 1.0,
        "calm raw {raw} vs corrected {corrected}"
    );
    // The forced call is the same action again: still rerouted, so withheld.
    assert_eq!(l["decision"], "veto");
    assert_eq!(l["rule"], "native.tries-exhausted");
    assert_eq!(r["pressured"]["tool_calls"], Value::Null);

    drop(daemon);
    audit_verifies(dir.path(), &audit);
    let rows = sql(
        &audit,
        "SELECT s.step_index || ':' || COALESCE(d.delivery, 'delivered') FROM steps s \
         JOIN decisions d ON d.step_id = s.id WHERE s.session_id = 'e2e-pressure' ORDER BY s.step_index",
    );
    assert_eq!(rows, "1:regenerated\n2:delivered");
}

/// The SSE wire format as bytes: `data:` frames, chunk objects, `data: [DONE]`; and
/// errors that need no Python.
/// The payload of an HTTP/1.1 chunked body.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn the_stream_is_llama_server_shaped_sse_and_bad_requests_are_openai_errors() {
    let dir = tempdir();
    let audit = dir.path().join("audit.db").to_string_lossy().into_owned();
    let daemon = Daemon::start(dir.path(), &["--audit", &audit]);
    let body = json!({
        "messages": [{"role": "user", "content": "Name a color."}],
        "max_tokens": 8, "temperature": 0, "stream": true,
    })
    .to_string();
    let (status, text) = http(
        &daemon.addr,
        "POST",
        "/v1/chat/completions",
        Some(body.as_bytes()),
    );
    assert_eq!(status, 200, "{text}");
    let text = dechunk(&text);
    let frames: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    assert!(
        frames
            .iter()
            .all(|f| f.starts_with("data: ") || f.starts_with(':')),
        "{text}"
    );
    assert_eq!(frames.last().copied(), Some("data: [DONE]"), "{text}");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .filter_map(|f| f.strip_prefix("data: "))
        .map(|f| serde_json::from_str(f).unwrap_or_else(|e| panic!("chunk JSON {f:?}: {e}")))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let ids: std::collections::BTreeSet<&str> =
        chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one id for the whole stream");
    let last = chunks.last().unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());
    assert_eq!(last["limbic"]["decision"], "allow");

    for (body, status, kind) in [
        ("{not json".to_string(), 400, "invalid_request_error"),
        (
            json!({"messages": "x"}).to_string(),
            400,
            "invalid_request_error",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}).to_string(),
            400,
            "invalid_request_error",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "limbic": {"sesion": "typo"}})
                .to_string(),
            400,
            "invalid_request_error",
        ),
    ] {
        let (got, text) = http(
            &daemon.addr,
            "POST",
            "/v1/chat/completions",
            Some(body.as_bytes()),
        );
        assert_eq!(got, status, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(v["error"]["type"], kind, "{text}");
        assert_eq!(v["error"]["code"], status);
        assert!(v["error"]["message"].is_string());
    }
    let (status, text) = http(&daemon.addr, "GET", "/props", None);
    assert_eq!(status, 200);
    let props: Value = serde_json::from_str(&text).unwrap();
    assert!(
        props["default_generation_settings"]["n_ctx"]
            .as_u64()
            .unwrap()
            >= 256
    );
    let (_, metrics) = http(&daemon.addr, "GET", "/metrics", None);
    assert!(
        metrics.contains("limbic_chat_requests_total 5"),
        "{metrics}"
    );
}

#[test]
fn bench_native_reports_guarded_and_plain_decode_rates() {
    let dir = tempdir();
    let out = run(limbic(dir.path()).args([
        "bench",
        "native",
        "--model",
        &model_path().to_string_lossy(),
        "--repetitions",
        "1",
        "--max-tokens",
        "16",
        "--json",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let b: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    // Greedy decoding usually writes the same tokens on both paths, but a tapped graph is
    // computed in pieces, and a near-tie can flip: reported, not asserted.
    assert!(b["same_tokens"].is_boolean(), "{b}");
    assert!(b["completion_tokens"].as_u64().unwrap_or(0) > 1, "{b}");
    assert!(!b["tapped_layers"].as_array().expect("layers").is_empty());
    for key in [
        "decode_tps_plain",
        "decode_tps_guarded",
        "decode_ratio",
        "ttft_ms_guarded",
    ] {
        let v = b[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{key}: {b}");
    }
}
