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
    let mut child = limbic(home)
        .args(["hook", agent, "--addr", addr])
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
