//! `limbic hook <agent>`: the bridge between a coding agent's pre-tool hook and the
//! `limbic serve` daemon.
//!
//! The agent runs `limbic hook <agent>` before each tool call with one JSON event on
//! stdin. The hook turns it into a step (the tool call plus the agent's latest words,
//! read from its transcript), posts it to the daemon (`POST /v1/steps`) and answers in
//! the agent's own hook dialect.
//!
//! Two rules shape every answer:
//! * Anything that goes wrong (unreadable event, daemon down, daemon error) becomes an
//!   explicit "unavailable" outcome that blocks the action unless the user chose
//!   fail-open: a guard that silently disappears is worse than one that is in the way.
//! * limbic only ever takes permissions away. Where an agent reads a hook's "allow" as
//!   "skip the user's own permission prompt" (Claude Code, Codex, Gemini CLI), an allow
//!   from limbic is answered with no decision at all, so the agent's normal permission
//!   flow still applies.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use limbic_guard::api::{
    Action, StepAnswer, StepRequest, DEADLINE_HEADER, DEFAULT_ADDR, NONCE_HEADER, PROOF_HEADER,
    SIGNATURE_HEADER, STEPS_PATH, TIME_HEADER,
};
use limbic_policy::{DecisionKind, Reroute};
use serde_json::{json, Map, Value};

mod answer;
mod client;
mod event;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod test_support;
mod transcript;
mod verdict;

use answer::*;
use client::*;
use event::*;
use transcript::*;
use verdict::*;

/// `limbic hook <agent>` options.
#[derive(clap::Args, Debug)]
pub struct HookArgs {
    /// Which agent's hook protocol to speak.
    pub agent: Agent,
    /// The daemon's address (host:port, http://host:port or unix:/path).
    #[arg(long, env = "LIMBIC_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Allow the action when the daemon cannot be reached (default: deny).
    #[arg(long)]
    pub fail_open: bool,
    /// Take the fail mode from this policy file's `fail_mode` instead. A policy that
    /// cannot be read makes the hook deny (it never fails open by accident).
    #[arg(long, env = "LIMBIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// One deadline for the whole hook (reading the event and transcript, connecting,
    /// sending, waiting): when it passes the answer is a deny (or allow with --fail-open).
    /// Keep the agent's own hook timeout above it.
    #[arg(long, env = "LIMBIC_HOOK_TIMEOUT_MS", default_value_t = DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// The daemon's token file (default: $LIMBIC_HOME/token, created by `limbic serve`).
    #[arg(long, env = "LIMBIC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// The hook's default overall deadline: well under Cursor-style 5 s hook timeouts.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;

/// How one hook run asks the daemon.
pub struct HookOptions {
    pub addr: String,
    pub fail_open: bool,
    /// The daemon's token, or why it could not be read (then the hook cannot ask: deny).
    pub token: Result<String, String>,
    /// When the answer must be written.
    pub deadline: Instant,
}

/// Runs the hook on this process's stdin/stdout/stderr. Every failure inside the hook
/// becomes a deny in the agent's own format, never an exit the agent reads as "go on";
/// so does the deadline passing, wherever the hook is stuck.
pub fn run(args: HookArgs) -> std::process::ExitCode {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let deadline = Instant::now() + timeout;
    // Whoever answers first (the hook or the watchdog) answers alone. The watchdog starts
    // before anything that reads a file (a policy path may name a FIFO); it honours only
    // the command line's fail-open, since the policy's may never be read.
    let answered = Arc::new(Mutex::new(false));
    spawn_watchdog(
        args.agent,
        args.fail_open,
        timeout,
        deadline,
        answered.clone(),
    );
    let policy_fail_open = match &args.policy {
        None => Ok(false),
        Some(path) => limbic_policy::Policy::load(path)
            .map(|p| p.fail_mode() == limbic_policy::FailMode::Open)
            .map_err(|e| format!("limbic could not load the policy {}: {e}", path.display())),
    };
    let fail_open = args.fail_open || matches!(policy_fail_open, Ok(true));

    let answer = match policy_fail_open {
        Ok(_) => {
            let token = match &args.token_file {
                Some(path) => Ok(path.clone()),
                None => limbic_guard::auth::default_token_path(),
            }
            .and_then(|path| {
                limbic_guard::auth::read_token(&path).with_context(|| {
                    format!(
                        "limbic could not read the daemon's token {} (start `limbic serve` \
                         once to create it)",
                        path.display()
                    )
                })
            })
            .map_err(|e| format!("{e:#}"));
            let options = HookOptions {
                addr: args.addr.clone(),
                fail_open,
                token,
                // The network exchange ends a little before the deadline so its own
                // error, not the watchdog's, names the cause.
                deadline: deadline - (timeout / 10).min(Duration::from_millis(200)),
            };
            answer_hook(args.agent, &options, &mut std::io::stdin().lock())
        }
        Err(problem) => render(args.agent, verdict(Outcome::Unavailable(problem), false)),
    };
    let Ok(mut done) = answered.lock() else {
        return std::process::ExitCode::from(EXIT_BLOCK);
    };
    if *done {
        // The watchdog is answering and will end the process.
        drop(done);
        loop {
            std::thread::park();
        }
    }
    *done = true;
    let code = emit(
        &answer,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::ExitCode::from(code)
}

/// When the deadline passes before the hook has answered, answers "unavailable" (deny
/// unless fail-open) and ends the process.
fn spawn_watchdog(
    agent: Agent,
    fail_open: bool,
    timeout: Duration,
    deadline: Instant,
    answered: Arc<Mutex<bool>>,
) {
    let watchdog = move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let Ok(mut done) = answered.lock() else {
            return;
        };
        if *done {
            return;
        }
        *done = true;
        let problem = format!(
            "limbic gave no decision within the hook's deadline of {} ms",
            timeout.as_millis()
        );
        let answer = render(agent, verdict(Outcome::Unavailable(problem), fail_open));
        let code = emit(
            &answer,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
        std::process::exit(i32::from(code));
    };
    if let Err(e) = std::thread::Builder::new()
        .name("limbic-hook-deadline".into())
        .spawn(watchdog)
    {
        // The socket deadlines still bound the exchange.
        eprintln!("limbic hook: could not start the deadline watchdog: {e}");
    }
}

/// Step text sent when the transcript holds no words from the agent (no transcript
/// path, missing or unreadable file, or no assistant text yet). A fixed neutral
/// placeholder keeps the daemon's input well-formed, and the tool call alone is still
/// classified by the policy.
pub const NO_WORDS: &str = "(no words)";

/// Only the end of a transcript matters, and transcripts grow to many megabytes.
const TRANSCRIPT_TAIL_BYTES: u64 = 256 * 1024;
/// A single-document transcript (Gemini CLI) cannot be parsed from its tail, so it is
/// read whole up to this size.
const TRANSCRIPT_WHOLE_DOC_MAX: u64 = 8 * 1024 * 1024;
/// Latest words kept for the step (the daemon accepts 32 KiB of text).
const MAX_WORDS_BYTES: usize = 16 * 1024;
/// Tool arguments kept for the step (the daemon accepts 64 KiB of JSON).
const MAX_ARGS_BYTES: usize = 48 * 1024;
/// Largest hook event read from stdin (a Write call carries a whole file).
const MAX_EVENT_BYTES: u64 = 32 * 1024 * 1024;
/// Largest daemon response read (a decision is well under a kilobyte).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The agents whose hook dialects `limbic hook` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Agent {
    /// Claude Code `PreToolUse` hooks.
    ClaudeCode,
    /// OpenAI Codex CLI `PreToolUse` hooks.
    Codex,
    /// Gemini CLI `BeforeTool` hooks.
    Gemini,
    /// Cursor `beforeShellExecution` / `beforeMCPExecution` / `beforeReadFile` /
    /// `preToolUse` hooks.
    Cursor,
}

impl Agent {
    /// The name used on the command line and in session ids (`<agent>:<session>`).
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::Cursor => "cursor",
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads one hook event from `input`, asks the daemon, writes the agent's answer to
/// `stdout`/`stderr`, returns the process exit code.
///
/// `options.addr` is `host:port`, `http://host:port` or `unix:/path/to.sock`. With
/// `fail_open` the action goes ahead when limbic cannot decide (bad event, daemon down or
/// failing, deadline passed); without it such actions are blocked.
#[cfg(test)]
pub fn run_hook(
    agent: Agent,
    options: &HookOptions,
    input: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let answer = answer_hook(agent, options, input);
    emit(&answer, stdout, stderr)
}

fn answer_hook(agent: Agent, options: &HookOptions, input: &mut dyn Read) -> HookAnswer {
    let outcome = decide(agent, options, input);
    render(agent, verdict(outcome, options.fail_open))
}

fn decide(agent: Agent, options: &HookOptions, input: &mut dyn Read) -> Outcome {
    let addr = options.addr.as_str();
    let event = match read_event(agent, input) {
        Ok(event) => event,
        Err(e) => {
            return Outcome::Unavailable(format!(
                "limbic could not read the {agent} hook event: {e:#}"
            ))
        }
    };
    let endpoint = match Endpoint::parse(addr) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            return Outcome::Unavailable(format!(
                "limbic daemon address `{addr}` is not usable: {e}"
            ))
        }
    };
    let token = match &options.token {
        Ok(token) => token,
        Err(problem) => return Outcome::Unavailable(problem.clone()),
    };
    let words = event
        .transcript
        .as_deref()
        .map(latest_words)
        .unwrap_or_default();
    let body = step_body(agent, &event, &words);
    let ask = Ask {
        token,
        deadline: options.deadline,
    };
    match ask_daemon(&endpoint, addr, &body, &ask) {
        Ok(answer) => outcome_of(answer),
        Err(problem) => Outcome::Unavailable(problem),
    }
}

fn emit(answer: &HookAnswer, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    if let Err(e) = writeln!(stdout, "{}", answer.stdout).and_then(|()| stdout.flush()) {
        // The exit code still carries a block (exit 2) for the agents that read it.
        let _ = writeln!(
            stderr,
            "limbic hook: could not write the answer to stdout: {e}"
        );
    }
    if let Some(message) = &answer.stderr {
        let _ = writeln!(stderr, "{message}").and_then(|()| stderr.flush());
    }
    answer.exit
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    // --- end to end ---------------------------------------------------------

    /// Reads one HTTP request (headers + Content-Length body) the way a server would.
    fn read_request(stream: impl Read) -> (String, Value) {
        let mut reader = io::BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (head, serde_json::from_slice(&body).unwrap())
    }

    const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

    /// The nonce the hook sent, from a request head.
    fn nonce_of(head: &str) -> String {
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix(&format!("{NONCE_HEADER}:"))
                    .map(|v| v.trim().to_string())
            })
            .expect("the hook sends a nonce")
    }

    /// A 200 answer signed as the real daemon signs it (the proof over the body).
    fn http_ok(body: &Value) -> impl FnOnce(&str) -> String + Send + 'static {
        let body = body.to_string();
        move |head: &str| {
            let proof = limbic_guard::auth::proof(TOKEN, &nonce_of(head), body.as_bytes());
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{PROOF_HEADER}: {proof}\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    }

    /// A one-shot fake daemon on 127.0.0.1:0 answering `respond(request head)`; it hands
    /// back the request it received. It tests the client, not the model.
    fn fake_daemon(
        respond: impl FnOnce(&str) -> String + Send + 'static,
    ) -> (String, thread::JoinHandle<(String, Value)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(stream.try_clone().unwrap());
            stream.write_all(respond(&request.0).as_bytes()).unwrap();
            request
        });
        (addr, handle)
    }

    fn options(addr: &str, fail_open: bool) -> HookOptions {
        HookOptions {
            addr: addr.to_string(),
            fail_open,
            token: Ok(TOKEN.to_string()),
            deadline: Instant::now() + Duration::from_secs(20),
        }
    }

    fn run_with(agent: Agent, options: &HookOptions, event: &str) -> (u8, Value, String) {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let code = run_hook(
            agent,
            options,
            &mut event.as_bytes(),
            &mut stdout,
            &mut stderr,
        );
        let stdout: Value = serde_json::from_slice(&stdout).unwrap();
        (code, stdout, String::from_utf8(stderr).unwrap())
    }

    fn run(agent: Agent, addr: &str, fail_open: bool, event: &str) -> (u8, Value, String) {
        run_with(agent, &options(addr, fail_open), event)
    }

    #[test]
    fn squatter_without_the_proof_is_not_believed() {
        let allow = json!({"session": "claude-code:abc123", "step": 1, "decision": "allow",
            "stress": 0.0, "spike": false, "rule": "r", "reason": "fine"})
        .to_string();
        let unsigned = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{allow}",
            allow.len()
        );
        let (addr, server) = fake_daemon(move |_| unsigned);
        let (code, stdout, stderr) = run(Agent::ClaudeCode, &addr, false, &claude_event("/x"));
        server.join().unwrap();
        assert_eq!(code, EXIT_BLOCK);
        assert_eq!(stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        assert!(
            stderr.contains("did not prove it knows the token"),
            "{stderr}"
        );

        // A proof made with another token (or for another nonce) is no proof either.
        let allow2 = allow.clone();
        let (addr, server) = fake_daemon(move |head| {
            let proof =
                limbic_guard::auth::proof(&"x".repeat(40), &nonce_of(head), allow2.as_bytes());
            format!(
                "HTTP/1.1 200 OK\r\n{PROOF_HEADER}: {proof}\r\ncontent-length: {}\r\n\r\n{allow2}",
                allow2.len()
            )
        });
        let (code, _, stderr) = run(Agent::ClaudeCode, &addr, false, &claude_event("/x"));
        server.join().unwrap();
        assert_eq!(code, EXIT_BLOCK, "{stderr}");
        assert!(stderr.contains("did not prove"), "{stderr}");
    }

    #[test]
    fn trickling_daemon_is_cut_off_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = read_request(stream.try_clone().unwrap());
            // One byte every 50 ms: each read succeeds, the answer never ends.
            let mut bytes = b"HTTP/1.1 200 OK\r\nX-Slow: "
                .iter()
                .chain(std::iter::repeat(&b'a'));
            for _ in 0..200 {
                let byte = [*bytes.next().unwrap()];
                if stream.write_all(&byte).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let mut opts = options(&addr, false);
        opts.deadline = Instant::now() + Duration::from_millis(800);
        let started = Instant::now();
        let (code, stdout, stderr) = run_with(Agent::ClaudeCode, &opts, &claude_event("/x"));
        let took = started.elapsed();
        assert_eq!(code, EXIT_BLOCK);
        assert_eq!(stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        assert!(stderr.contains("deadline"), "{stderr}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        server.join().unwrap();
    }

    #[test]
    fn unreadable_token_denies_without_asking() {
        let mut opts = options("127.0.0.1:1", false);
        opts.token = Err("limbic could not read the daemon's token /nope".into());
        let (code, _, stderr) = run_with(Agent::ClaudeCode, &opts, &claude_event("/x"));
        assert_eq!(code, EXIT_BLOCK);
        assert!(stderr.contains("token /nope"), "{stderr}");
    }

    #[test]
    fn end_to_end_claude_code_veto_over_tcp() {
        let transcript = write_temp(&jsonl(&[json!({"type": "assistant", "message": {
            "role": "assistant", "content": [{"type": "text", "text": "Deadline. Forcing it."}]}})]));
        let decision = json!({
            "session": "claude-code:abc123", "step": 7, "decision": "veto", "stress": 2.4,
            "spike": true, "scores": {}, "rule": "no-force-push-under-stress",
            "reason": "force push while desperate", "classes": ["force_push"], "latency_ms": 20.0,
        });
        let (addr, server) = fake_daemon(http_ok(&decision));
        let event = claude_event(transcript.path().to_str().unwrap());
        let (code, stdout, stderr) =
            run(Agent::ClaudeCode, &format!("http://{addr}"), false, &event);

        let (head, body) = server.join().unwrap();
        assert!(head.starts_with("POST /v1/steps HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: close"));
        // The token is proven, never sent (the daemon's e2e tests check the signature).
        assert!(!head.contains(TOKEN), "{head}");
        let field = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix(&format!("{name}:"))
                        .map(|v| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in {head}"))
        };
        let time: u64 = field(TIME_HEADER).parse().unwrap();
        assert!(limbic_guard::auth::now_unix_ms().abs_diff(time) < 60_000);
        assert_eq!(field(SIGNATURE_HEADER).len(), 64);
        assert!(head.contains(&format!("{DEADLINE_HEADER}: ")), "{head}");
        assert_eq!(
            body,
            json!({"session": "claude-code:abc123", "text": "Deadline. Forcing it.",
                   "action": {"tool": "Bash", "args": {"command": "git push --force origin main",
                                                       "description": "Push"}}})
        );
        assert_eq!(code, 2);
        assert_eq!(stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        let reason = stdout["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap();
        assert!(reason.contains("force push while desperate"));
        assert!(reason.contains("no-force-push-under-stress"));
        assert_eq!(stderr.trim_end(), reason);
    }

    #[test]
    fn end_to_end_cursor_substitute_with_chunked_answer() {
        let decision = json!({"session": "cursor:c", "step": 1, "decision": "reroute",
            "reroute": {"kind": "substitute", "suggestion": "git push --force-with-lease"},
            "stress": 1.2, "spike": false, "rule": "r", "reason": "risky"})
        .to_string();
        let (addr, server) = fake_daemon(move |head| {
            let proof = limbic_guard::auth::proof(TOKEN, &nonce_of(head), decision.as_bytes());
            format!(
                "HTTP/1.1 200 OK\r\n{PROOF_HEADER}: {proof}\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {:x}\r\n{decision}\r\n0\r\n\r\n",
                decision.len()
            )
        });
        let event = json!({"hook_event_name": "beforeShellExecution", "conversation_id": "c1",
                           "generation_id": "g", "command": "git push -f", "cwd": "/r"});
        let (code, stdout, _) = run(Agent::Cursor, &addr, false, &event.to_string());
        let (_, body) = server.join().unwrap();
        assert_eq!(body["session"], "cursor:c1");
        assert_eq!(body["text"], NO_WORDS);
        assert_eq!(
            body["action"],
            json!({"tool": "Bash", "args": {"command": "git push -f", "cwd": "/r"}})
        );
        assert_eq!(code, 0);
        assert_eq!(stdout["permission"], "deny");
        assert!(stdout["agent_message"]
            .as_str()
            .unwrap()
            .contains("limbic suggests instead: git push --force-with-lease"));
    }

    #[test]
    fn end_to_end_daemon_error_fails_closed_with_its_message() {
        let body = r#"{"error":"the guard worker has stopped"}"#;
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (addr, server) = fake_daemon(move |_| response);
        let event = json!({"hook_event_name": "BeforeTool", "session_id": "g", "tool_name": "write_file",
                           "tool_input": {"file_path": "a", "content": "b"}});
        let (code, stdout, _) = run(Agent::Gemini, &addr, false, &event.to_string());
        server.join().unwrap();
        assert_eq!(code, 0);
        assert_eq!(stdout["decision"], "deny");
        let reason = stdout["reason"].as_str().unwrap();
        assert!(reason.contains(&format!(
            "limbic daemon at {addr} refused the step with HTTP 503"
        )));
        assert!(reason.contains("the guard worker has stopped"));
    }

    #[test]
    fn end_to_end_over_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limbic.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let decision = json!({"session": "claude-code:s", "step": 1, "decision": "reroute",
            "reroute": {"kind": "confirm"}, "stress": 0.5, "spike": false, "rule": "r",
            "reason": "rm -rf"});
        let response = http_ok(&decision);
        let (tx, rx) = mpsc::channel();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(stream.try_clone().unwrap());
            let answer = response(&request.0);
            tx.send(request).unwrap();
            stream.write_all(answer.as_bytes()).unwrap();
        });
        let event = claude_event("/nonexistent/transcript.jsonl");
        let addr = format!("unix:{}", path.display());
        let (code, stdout, stderr) = run(Agent::ClaudeCode, &addr, false, &event);
        server.join().unwrap();
        let (head, body) = rx.recv().unwrap();
        assert!(head.contains("Host: localhost\r\n"));
        assert_eq!(body["text"], NO_WORDS);
        assert_eq!(code, 0);
        assert_eq!(stdout["hookSpecificOutput"]["permissionDecision"], "ask");
        assert_eq!(stderr, "");
    }

    fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        addr
    }

    #[test]
    fn daemon_down_denies_unless_fail_open() {
        let addr = closed_port();
        let event = claude_event("/nonexistent");
        let (code, stdout, stderr) = run(Agent::ClaudeCode, &addr, false, &event);
        assert_eq!(code, 2);
        assert_eq!(stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        assert!(
            stderr.contains(&format!("limbic daemon unreachable at {addr}")),
            "{stderr}"
        );

        let (code, stdout, stderr) = run(Agent::ClaudeCode, &addr, true, &event);
        assert_eq!(code, 0);
        assert!(stdout["hookSpecificOutput"]
            .get("permissionDecision")
            .is_none());
        assert!(stdout["systemMessage"]
            .as_str()
            .unwrap()
            .contains("fail-open"));
        assert_eq!(stderr, "");

        let cursor =
            json!({"hook_event_name": "beforeShellExecution", "command": "ls"}).to_string();
        let (code, stdout, _) = run(Agent::Cursor, &addr, false, &cursor);
        assert_eq!((code, stdout["permission"].as_str()), (0, Some("deny")));
        let (code, stdout, _) = run(Agent::Cursor, &addr, true, &cursor);
        assert_eq!((code, stdout["permission"].as_str()), (0, Some("allow")));
    }

    #[test]
    fn malformed_input_is_treated_like_an_unavailable_daemon() {
        // No daemon is contacted: the address is never used.
        let (code, stdout, stderr) = run(Agent::Codex, "127.0.0.1:1", false, "{oops");
        assert_eq!(code, 2);
        assert_eq!(stdout["hookSpecificOutput"]["permissionDecision"], "deny");
        assert!(stderr.contains(
            "limbic could not read the codex hook event: stdin is not a JSON hook event"
        ));
        let (code, stdout, _) = run(Agent::Codex, "127.0.0.1:1", true, "{oops");
        assert_eq!(code, 0);
        assert!(stdout["systemMessage"]
            .as_str()
            .unwrap()
            .contains("fail-open"));
    }

    #[test]
    fn bad_address_is_reported() {
        let event = claude_event("/nonexistent");
        let (code, _, stderr) = run(Agent::ClaudeCode, "https://x:1", false, &event);
        assert_eq!(code, 2);
        assert!(stderr.contains("limbic daemon address `https://x:1` is not usable"));
    }

    #[test]
    fn silent_daemon_that_closes_early_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let _ = read_request(stream.try_clone().unwrap());
            drop(stream);
        });
        let (code, _, stderr) = run(Agent::ClaudeCode, &addr, false, &claude_event("/x"));
        server.join().unwrap();
        assert_eq!(code, 2);
        assert!(stderr.contains("gave no usable answer"), "{stderr}");
    }

    // --- properties ---------------------------------------------------------

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn json_leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                ".{0,3000}".prop_map(Value::String),
            ]
        }

        fn json_value() -> impl Strategy<Value = Value> {
            json_leaf().prop_recursive(3, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z]{1,8}", inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn chunked_bodies_round_trip(body in prop::collection::vec(any::<u8>(), 0..3000),
                                         chunk in 1usize..500) {
                let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for piece in body.chunks(chunk) {
                    raw.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
                    raw.extend_from_slice(piece);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0\r\n\r\n");
                let parsed = parse_response(&raw, false).unwrap().unwrap();
                prop_assert_eq!(parsed.body, body);
                // No strict prefix is mistaken for the whole response.
                for cut in [raw.len() - 1, raw.len() / 2, 10] {
                    prop_assert_eq!(parse_response(&raw[..cut], false), Ok(None));
                }
            }

            #[test]
            fn content_length_bodies_round_trip(body in prop::collection::vec(any::<u8>(), 0..3000),
                                                cut in any::<prop::sample::Index>()) {
                let mut raw = format!("HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                let head_len = raw.len();
                raw.extend_from_slice(&body);
                let parsed = parse_response(&raw, false).unwrap().unwrap();
                prop_assert_eq!(parsed.status, 201);
                prop_assert_eq!(&parsed.body, &body);
                let cut = head_len + cut.index(body.len().max(1));
                if cut < raw.len() {
                    prop_assert_eq!(parse_response(&raw[..cut], false), Ok(None));
                    prop_assert!(parse_response(&raw[..cut], true).is_err());
                }
            }

            #[test]
            fn tail_str_is_a_bounded_suffix(text in ".{0,200}", max in 0usize..300) {
                let tail = tail_str(&text, max);
                prop_assert!(text.ends_with(tail));
                prop_assert!(tail.len() <= max || text.len() <= max);
                prop_assert!(tail.len() + 3 >= max.min(text.len()));
                let head = head_str(&text, max);
                prop_assert!(text.starts_with(head));
                prop_assert!(head.len() <= max);
            }

            #[test]
            fn shrunk_args_always_fit(args in json_value(), limit in 64usize..4096) {
                let shrunk = shrink_args(&args, limit);
                prop_assert!(json_len(&shrunk) <= limit, "{} > {limit}", json_len(&shrunk));
                if json_len(&args) <= limit {
                    prop_assert_eq!(shrunk, args);
                }
            }

            #[test]
            fn transcript_text_never_panics(lines in prop::collection::vec(".{0,80}", 0..20),
                                            truncated in any::<bool>()) {
                let _ = words_from_text(&lines.join("\n"), truncated);
            }

            #[test]
            fn any_json_event_gets_an_answer(event in json_value()) {
                // Whatever the agent sends, the hook answers in valid JSON and never
                // panics; with no daemon reachable it blocks (Claude Code exit 2).
                let mut stdout = Vec::new();
                let mut stderr = Vec::new();
                let raw = event.to_string();
                let options = HookOptions {
                    addr: "unix:/nonexistent/limbic.sock".into(),
                    fail_open: false,
                    token: Ok("t".repeat(40)),
                    deadline: Instant::now() + Duration::from_secs(5),
                };
                let code = run_hook(Agent::ClaudeCode, &options,
                                    &mut raw.as_bytes(), &mut stdout, &mut stderr);
                prop_assert_eq!(code, EXIT_BLOCK);
                prop_assert!(serde_json::from_slice::<Value>(&stdout).is_ok());
            }
        }
    }
}
