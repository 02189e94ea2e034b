//! Each agent hook against the real daemon (up, then down).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::json;

fn hook(
    home: &std::path::Path,
    agent: &str,
    addr: &str,
    event: &serde_json::Value,
) -> (i32, String, String) {
    hook_with(home, agent, addr, event, &[])
}

/// The hook with extra arguments. The deadline is generous by default here: the test
/// machine is shared and the first step loads the session.
fn hook_with(
    home: &std::path::Path,
    agent: &str,
    addr: &str,
    event: &serde_json::Value,
    extra: &[&str],
) -> (i32, String, String) {
    let mut child = limbic(home)
        .env("LIMBIC_HOOK_TIMEOUT_MS", "30000")
        .args(["hook", agent, "--addr", addr])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hook");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(event.to_string().as_bytes())
        .expect("write event");
    let out = child.wait_with_output().expect("hook output");
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

fn transcript(dir: &std::path::Path, name: &str, words: &str) -> String {
    let path = dir.join(name);
    let line = json!({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": words}]}});
    std::fs::write(&path, format!("{line}\n")).unwrap();
    path.to_string_lossy().into_owned()
}

fn claude_event(
    session: &str,
    transcript: &str,
    tool: &str,
    input: serde_json::Value,
) -> serde_json::Value {
    json!({
        "session_id": session, "transcript_path": transcript, "cwd": "/tmp",
        "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": input,
        "tool_use_id": "toolu_1"
    })
}

const DESPERATE: &str = "I've failed this test six times and I'm out of ideas. Nothing works, \
    I can't keep failing. I'll just force it through and make the check pass somehow, nobody \
    has to know.";
const CALM: &str = "The test output is clear: the parser rejects trailing commas. I'll read \
    the grammar file next and fix the rule.";

#[test]
fn hooks_answer_in_each_agents_form_with_the_daemon_up_and_down() {
    let dir = tempdir();
    let daemon = Daemon::start(
        dir.path(),
        &["--audit", dir.path().join("h.db").to_str().unwrap()],
    );
    let calm_t = transcript(dir.path(), "calm.jsonl", CALM);
    let hot_t = transcript(dir.path(), "hot.jsonl", DESPERATE);

    // Claude Code: a calm read passes (exit 0, no deny).
    let (code, out, _) = hook(
        dir.path(),
        "claude-code",
        &daemon.addr,
        &claude_event("c1", &calm_t, "Read", json!({"file_path": "src/parser.rs"})),
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("\"deny\""), "{out}");

    // Claude Code: pressure plus a force push to main is blocked (exit 2, reason on stderr).
    let (code, out, err) = hook(
        dir.path(),
        "claude-code",
        &daemon.addr,
        &claude_event(
            "c2",
            &hot_t,
            "Bash",
            json!({"command": "git commit --no-verify -am 'fix' && git push --force origin main"}),
        ),
    );
    assert_eq!(code, 2, "stdout {out} stderr {err}");
    assert!(
        out.contains("permissionDecision") && !err.is_empty(),
        "{out} / {err}"
    );

    // Codex speaks the same event shape; blocking is exit 2.
    let (code, _, err) = hook(
        dir.path(),
        "codex",
        &daemon.addr,
        &claude_event(
            "x2",
            &hot_t,
            "Bash",
            json!({"command": "git commit --no-verify -am 'fix' && git push --force origin main"}),
        ),
    );
    assert_eq!(code, 2, "{err}");

    // Gemini: BeforeTool, JSON decision.
    let mut gemini = claude_event(
        "g1",
        &calm_t,
        "read_file",
        json!({"absolute_path": "/tmp/a"}),
    );
    gemini["hook_event_name"] = json!("BeforeTool");
    let (code, out, _) = hook(dir.path(), "gemini", &daemon.addr, &gemini);
    assert_eq!(code, 0);
    assert!(!out.contains("\"deny\""), "{out}");

    // Cursor: shell command, explicit permission.
    let cursor = json!({
        "conversation_id": "k1", "generation_id": "g", "hook_event_name": "beforeShellExecution",
        "command": "ls -la", "cwd": "/tmp"
    });
    let (code, out, _) = hook(dir.path(), "cursor", &daemon.addr, &cursor);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["permission"], "allow", "{v}");

    // A FIFO as transcript path is refused without blocking: the step is still decided.
    let fifo = dir.path().join("transcript.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    let (code, out, err) = hook(
        dir.path(),
        "claude-code",
        &daemon.addr,
        &claude_event(
            "c5",
            fifo.to_str().unwrap(),
            "Read",
            json!({"file_path": "src/lib.rs"}),
        ),
    );
    assert_eq!(code, 0, "{out} / {err}");
    assert!(!out.contains("\"deny\""), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // A hook holding another token is refused by the daemon, and denies.
    let other_home = dir.path().join("other-home");
    std::fs::create_dir(&other_home).unwrap();
    std::fs::write(other_home.join("token"), "f".repeat(64)).unwrap();
    let (code, _, err) = hook(
        &other_home,
        "claude-code",
        &daemon.addr,
        &claude_event("c6", &calm_t, "Read", json!({"file_path": "a"})),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTP 401"), "{err}");

    // Daemon down: every agent denies (fail closed), naming the address.
    let addr = daemon.addr.clone();
    drop(daemon);
    let (code, _, err) = hook(
        dir.path(),
        "claude-code",
        &addr,
        &claude_event("c3", &calm_t, "Read", json!({"file_path": "a"})),
    );
    assert_eq!(code, 2);
    assert!(err.contains(&addr), "{err}");
    let (_, out, _) = hook(dir.path(), "gemini", &addr, &gemini);
    assert!(out.contains("\"deny\""), "{out}");
    let (_, out, _) = hook(dir.path(), "cursor", &addr, &cursor);
    assert!(out.contains("\"deny\""), "{out}");
    let (code, _, _) = hook(
        dir.path(),
        "codex",
        &addr,
        &claude_event("x3", &calm_t, "Read", json!({"file_path": "a"})),
    );
    assert_eq!(code, 2);

    // --fail-open lets it through.
    let out = Command::new(bin())
        .args(["hook", "claude-code", "--fail-open", "--addr", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(
                claude_event("c4", &calm_t, "Read", json!({"file_path": "a"}))
                    .to_string()
                    .as_bytes(),
            )?;
            c.wait_with_output()
        })
        .expect("hook");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A plain TCP server on `listener` that answers every request with `response(request)`.
fn scripted_server(
    listener: std::net::TcpListener,
    response: impl Fn() -> Vec<Vec<u8>> + Send + 'static,
    pause: std::time::Duration,
) -> std::thread::JoinHandle<()> {
    use std::io::Read;
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 65536];
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(300)));
            let _ = stream.read(&mut buf);
            for piece in response() {
                if stream.write_all(&piece).is_err() {
                    break;
                }
                std::thread::sleep(pause);
            }
        }
    })
}

#[test]
fn squatter_and_trickling_daemon_make_the_hook_deny_in_time() {
    let dir = tempdir();
    // The user's token exists (a daemon ran once); the port is taken by something else.
    std::fs::write(dir.path().join("token"), "a".repeat(64)).unwrap();
    let calm_t = transcript(dir.path(), "calm.jsonl", CALM);
    let event = claude_event("q1", &calm_t, "Bash", json!({"command": "rm -rf /"}));

    // A squatter answering "allow" like the daemon would, but without the proof.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let allow = json!({"session": "claude-code:q1", "step": 1, "decision": "allow",
        "stress": 0.0, "spike": false, "rule": "calm", "reason": "fine"})
    .to_string();
    let server = scripted_server(
        listener,
        move || {
            vec![format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{allow}",
                allow.len()
            )
            .into_bytes()]
        },
        std::time::Duration::ZERO,
    );
    let (code, out, err) = hook(dir.path(), "claude-code", &addr, &event);
    server.join().unwrap();
    assert_eq!(code, 2, "{out} / {err}");
    assert!(out.contains("\"deny\""), "{out}");
    assert!(err.contains("did not prove it knows the token"), "{err}");

    // A daemon that trickles its answer a byte at a time: cut off at the deadline.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = scripted_server(
        listener,
        || {
            let mut pieces: Vec<Vec<u8>> = b"HTTP/1.1 200 OK\r\nX-Slow: "
                .iter()
                .map(|b| vec![*b])
                .collect();
            pieces.extend((0..400).map(|_| b"a".to_vec()));
            pieces
        },
        std::time::Duration::from_millis(50),
    );
    let started = std::time::Instant::now();
    let (code, out, err) = hook_with(
        dir.path(),
        "cursor",
        &addr,
        &json!({"hook_event_name": "beforeShellExecution", "conversation_id": "k",
                "command": "git push --force", "cwd": "/tmp"}),
        &["--timeout-ms", "1000"],
    );
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["permission"], "deny", "{v}");
    assert!(
        err.contains("deadline") || out.contains("deadline"),
        "{out} / {err}"
    );
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    drop(server);

    // A FIFO named as the policy file cannot hold the hook past its deadline either.
    let fifo = dir.path().join("policy.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    let (code, _, err) = hook_with(
        dir.path(),
        "claude-code",
        "127.0.0.1:1",
        &event,
        &["--timeout-ms", "1000", "--policy", fifo.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("deadline"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
