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
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Port `limbic serve` listens on by default; used when an address names no port.
pub const DEFAULT_PORT: u16 = 7370;
/// Step text sent when the transcript holds no words from the agent (no transcript
/// path, missing or unreadable file, or no assistant text yet). A fixed neutral
/// placeholder keeps the daemon's input well-formed, and the tool call alone is still
/// classified by the policy.
pub const NO_WORDS: &str = "(no words)";

/// The local daemon either accepts at once or is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The daemon runs the model on the step before it answers.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Reads one hook event from `input`, asks the daemon at `addr`, writes the agent's
/// answer to `stdout`/`stderr`, returns the process exit code.
///
/// `addr` is `host:port`, `http://host:port` or `unix:/path/to.sock`. With `fail_open`
/// the action goes ahead when limbic cannot decide (bad event, daemon down or failing);
/// without it such actions are blocked.
pub fn run_hook(
    agent: Agent,
    addr: &str,
    fail_open: bool,
    input: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let outcome = decide(agent, addr, input);
    let answer = render(agent, verdict(outcome, fail_open));
    emit(&answer, stdout, stderr)
}

fn decide(agent: Agent, addr: &str, input: &mut dyn Read) -> Outcome {
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
    let words = event
        .transcript
        .as_deref()
        .map(latest_words)
        .unwrap_or_default();
    let body = step_body(agent, &event, &words);
    match ask_daemon(&endpoint, addr, &body) {
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

// ---------------------------------------------------------------------------
// Hook events
// ---------------------------------------------------------------------------

/// One pre-tool event, normalised across agents.
#[derive(Debug, Clone, PartialEq)]
struct HookEvent {
    /// The agent's own session id (Cursor: conversation id).
    session: String,
    tool: String,
    args: Value,
    transcript: Option<PathBuf>,
}

fn read_event(agent: Agent, input: &mut dyn Read) -> Result<HookEvent> {
    let mut raw = Vec::new();
    input
        .take(MAX_EVENT_BYTES + 1)
        .read_to_end(&mut raw)
        .context("reading the hook event from stdin")?;
    if raw.len() as u64 > MAX_EVENT_BYTES {
        bail!("the hook event on stdin is larger than {MAX_EVENT_BYTES} bytes");
    }
    parse_event(agent, &raw)
}

fn parse_event(agent: Agent, raw: &[u8]) -> Result<HookEvent> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        bail!("stdin is empty; the agent should pass one JSON hook event");
    }
    let value: Value = serde_json::from_slice(raw).context("stdin is not a JSON hook event")?;
    let Value::Object(event) = value else {
        bail!("the hook event on stdin is JSON but not an object");
    };
    let event_name = str_field(&event, "hook_event_name");
    match agent {
        Agent::ClaudeCode | Agent::Codex => {
            expect_event(agent, event_name, "PreToolUse")?;
            tool_event(&event, session_of(&event, &["session_id"]))
        }
        Agent::Gemini => {
            expect_event(agent, event_name, "BeforeTool")?;
            tool_event(&event, session_of(&event, &["session_id"]))
        }
        Agent::Cursor => cursor_event(&event, event_name),
    }
}

fn expect_event(agent: Agent, got: Option<&str>, want: &str) -> Result<()> {
    match got {
        None => Ok(()),
        Some(name) if name == want => Ok(()),
        Some(name) => bail!(
            "`limbic hook {agent}` handles `{want}` events, but `hook_event_name` is `{name}`; \
             register it under {want} in the agent's hook settings"
        ),
    }
}

fn str_field<'a>(event: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    event.get(field).and_then(Value::as_str)
}

/// The first non-empty id among `fields`; "unknown" keeps steps flowing when an agent
/// omits it (the daemon then tracks them as one session).
fn session_of(event: &Map<String, Value>, fields: &[&str]) -> String {
    fields
        .iter()
        .filter_map(|field| str_field(event, field))
        .find(|id| !id.trim().is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn transcript_of(event: &Map<String, Value>) -> Option<PathBuf> {
    str_field(event, "transcript_path")
        .filter(|path| !path.trim().is_empty())
        .map(PathBuf::from)
}

/// `tool_name` + `tool_input`, the shape Claude Code, Codex, Gemini and Cursor's
/// MCP/preToolUse events share.
fn tool_event(event: &Map<String, Value>, session: String) -> Result<HookEvent> {
    let tool = match event.get("tool_name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        Some(Value::String(_)) => bail!("field `tool_name` is empty"),
        Some(_) => bail!("field `tool_name` is not a string"),
        None => bail!("field `tool_name` is missing"),
    };
    let args = match event.get("tool_input") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        // Cursor's MCP events carry the arguments as a JSON string.
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
        Some(input) => input.clone(),
    };
    Ok(HookEvent {
        session,
        tool,
        args,
        transcript: transcript_of(event),
    })
}

fn cursor_event(event: &Map<String, Value>, event_name: Option<&str>) -> Result<HookEvent> {
    let session = session_of(event, &["conversation_id", "session_id"]);
    let shell = |event: &Map<String, Value>| -> Result<HookEvent> {
        let Some(command) = str_field(event, "command") else {
            bail!("field `command` is missing or not a string");
        };
        let mut args = Map::new();
        args.insert("command".into(), Value::String(command.to_string()));
        if let Some(cwd) = str_field(event, "cwd") {
            args.insert("cwd".into(), Value::String(cwd.to_string()));
        }
        Ok(HookEvent {
            session: session.clone(),
            tool: "Bash".into(),
            args: Value::Object(args),
            transcript: transcript_of(event),
        })
    };
    let read = |event: &Map<String, Value>| -> Result<HookEvent> {
        let Some(path) = str_field(event, "file_path") else {
            bail!("field `file_path` is missing or not a string");
        };
        // The file's content is left out: it may hold secrets and the policy judges
        // the read by its path.
        Ok(HookEvent {
            session: session.clone(),
            tool: "Read".into(),
            args: json!({ "file_path": path }),
            transcript: transcript_of(event),
        })
    };
    match event_name {
        Some("beforeShellExecution") => shell(event),
        Some("beforeMCPExecution" | "preToolUse") => tool_event(event, session.clone()),
        Some("beforeReadFile") => read(event),
        Some(other) => bail!(
            "cursor hook event `{other}` is not one limbic judges; register `limbic hook cursor` \
             under beforeShellExecution, beforeMCPExecution, beforeReadFile or preToolUse"
        ),
        None if event.contains_key("tool_name") => tool_event(event, session.clone()),
        None if event.contains_key("command") => shell(event),
        None if event.contains_key("file_path") => read(event),
        None => bail!(
            "the cursor hook event has no `hook_event_name` and none of `command`, \
             `tool_name` or `file_path`"
        ),
    }
}

/// The JSON body of `POST /v1/steps`.
fn step_body(agent: Agent, event: &HookEvent, words: &str) -> Value {
    let text = if words.trim().is_empty() {
        NO_WORDS
    } else {
        tail_str(words, MAX_WORDS_BYTES)
    };
    json!({
        "session": format!("{}:{}", agent.name(), event.session),
        "step": null,
        "text": text,
        "action": { "tool": event.tool, "args": shrink_args(&event.args, MAX_ARGS_BYTES) },
    })
}

/// The last `max` bytes of `text`, cut on a character boundary.
fn tail_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The first `max` bytes of `text`, cut on a character boundary.
fn head_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Tool arguments that fit the daemon's limit. Long strings (a whole file in a Write)
/// keep their head and tail, where the policy's patterns usually find what matters,
/// rather than the daemon refusing the step and the hook failing closed on it.
fn shrink_args(args: &Value, limit: usize) -> Value {
    if json_len(args) <= limit {
        return args.clone();
    }
    for keep in [8 * 1024, 1024, 128] {
        let shrunk = elide_strings(args, keep);
        if json_len(&shrunk) <= limit {
            return shrunk;
        }
    }
    // Too many fields to fit even with short strings: send the head of the JSON text.
    // An eighth of the limit leaves room for worst-case escaping (`\u0000` is 6 bytes).
    let text = args.to_string();
    json!({ "limbic_truncated_args": head_str(&text, limit / 8) })
}

fn json_len(value: &Value) -> usize {
    value.to_string().len()
}

fn elide_strings(value: &Value, keep: usize) -> Value {
    match value {
        Value::String(text) if text.len() > keep => {
            let head = head_str(text, keep / 2);
            let tail = tail_str(text, keep / 2);
            let elided = text.len() - head.len() - tail.len();
            Value::String(format!("{head}\n[limbic: {elided} bytes elided]\n{tail}"))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| elide_strings(v, keep)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), elide_strings(v, keep)))
                .collect(),
        ),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Transcripts
// ---------------------------------------------------------------------------

/// The agent's latest words from its transcript, or "" when there are none to read.
/// A transcript problem never blocks a step: the tool call alone is still judged.
fn latest_words(path: &Path) -> String {
    read_latest_words(path).unwrap_or_default()
}

fn read_latest_words(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let truncated = len > TRANSCRIPT_TAIL_BYTES;
    let tail = read_tail(&mut file, len, TRANSCRIPT_TAIL_BYTES)?;
    if let Some(words) = words_from_text(&tail, truncated) {
        return Ok(words);
    }
    if truncated && len <= TRANSCRIPT_WHOLE_DOC_MAX {
        let mut whole = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut whole)?;
        if let Ok(doc) = serde_json::from_slice::<Value>(&whole) {
            return Ok(words_from_document(&doc).unwrap_or_default());
        }
    }
    Ok(String::new())
}

/// The last `max` bytes of the file as text; a line cut by the start of the window is
/// dropped.
fn read_tail(file: &mut File, len: u64, max: u64) -> io::Result<String> {
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if start == 0 {
        return Ok(text);
    }
    Ok(match text.find('\n') {
        Some(newline) => text[newline + 1..].to_string(),
        None => String::new(),
    })
}

/// Words from a transcript's text: one JSON document (Gemini CLI session file) when it
/// parses as one, else JSON Lines (Claude Code, Codex, Cursor), newest line last.
fn words_from_text(text: &str, truncated: bool) -> Option<String> {
    if !truncated {
        if let Ok(doc) = serde_json::from_str::<Value>(text) {
            if let Some(words) = words_from_document(&doc) {
                return Some(words);
            }
        }
    }
    let entries: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line.trim()).ok())
        .collect();
    words_from_entries(entries.iter().rev())
}

fn words_from_document(doc: &Value) -> Option<String> {
    match doc {
        Value::Array(messages) => words_from_entries(messages.iter().rev()),
        Value::Object(fields) => {
            let messages = ["messages", "history", "contents"]
                .iter()
                .find_map(|key| fields.get(*key).and_then(Value::as_array));
            match messages {
                Some(messages) => words_from_entries(messages.iter().rev()),
                // A one-line JSON Lines transcript parses as a single entry.
                None => words_from_entries(std::iter::once(doc)),
            }
        }
        _ => None,
    }
}

/// How one transcript entry bears on "the agent's latest words".
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// Something the assistant produced; `Some` when it holds words.
    Assistant(Option<String>),
    /// A user turn or tool result: the assistant's turn before it is a different one.
    Boundary,
    /// Metadata, reasoning, events: ignored.
    Other,
}

/// Text of the newest assistant turn that has any, walking entries newest first. The
/// turn may span several entries (Claude Code writes each content block on its own
/// line), so collection runs until the user or a tool result is reached.
fn words_from_entries<'a>(newest_first: impl Iterator<Item = &'a Value>) -> Option<String> {
    let mut collected: Vec<String> = Vec::new();
    for entry in newest_first {
        match classify(entry) {
            Entry::Assistant(Some(text)) => collected.push(text),
            Entry::Assistant(None) | Entry::Other => {}
            Entry::Boundary if collected.is_empty() => {}
            Entry::Boundary => break,
        }
    }
    if collected.is_empty() {
        return None;
    }
    collected.reverse();
    Some(collected.join("\n\n"))
}

fn classify(entry: &Value) -> Entry {
    let kind = entry.get("type").and_then(Value::as_str);
    // Codex rollout: {"type":"response_item","payload":{"type":"message","role":..}}.
    if kind == Some("response_item") {
        let Some(payload) = entry.get("payload") else {
            return Entry::Other;
        };
        return match payload.get("type").and_then(Value::as_str) {
            Some("message") => by_role(payload.get("role"), payload.get("content")),
            Some(t) if t.ends_with("_output") => Entry::Boundary,
            Some(t) if t.ends_with("call") => Entry::Assistant(None),
            _ => Entry::Other,
        };
    }
    // Claude Code / Cursor: {"type"|"role": .., "message": {"role"?, "content": ..}}.
    if let Some(message) = entry.get("message").filter(|m| m.is_object()) {
        let role = message
            .get("role")
            .or_else(|| entry.get("role"))
            .or_else(|| entry.get("type"));
        return by_role(
            role,
            message.get("content").or_else(|| message.get("parts")),
        );
    }
    // Gemini CLI session file {"type":"gemini","content":..}, Gemini API
    // {"role":"model","parts":[..]}, or plain {"role":..,"content":..}.
    let role = entry.get("role").or_else(|| entry.get("type"));
    by_role(role, entry.get("content").or_else(|| entry.get("parts")))
}

fn by_role(role: Option<&Value>, content: Option<&Value>) -> Entry {
    match role.and_then(Value::as_str) {
        Some("assistant" | "model" | "gemini" | "agent") => {
            Entry::Assistant(content.and_then(text_of))
        }
        Some("user" | "tool" | "human") => Entry::Boundary,
        _ => Entry::Other,
    }
}

/// The visible text in a message's content (string, list of blocks or parts); tool
/// calls, thinking and images are not words to the user.
fn text_of(content: &Value) -> Option<String> {
    let mut parts = Vec::new();
    collect_text(content, &mut parts);
    let text = parts.join("\n");
    (!text.trim().is_empty()).then_some(text)
}

fn collect_text(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_text(item, out)),
        Value::Object(block) => {
            if block.get("thought").and_then(Value::as_bool) == Some(true) {
                return;
            }
            let is_text = matches!(
                block.get("type").and_then(Value::as_str),
                None | Some("text" | "output_text" | "input_text")
            );
            if let (true, Some(Value::String(text))) = (is_text, block.get("text")) {
                out.push(text.clone());
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Talking to the daemon
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `host:port` for both connecting and the `Host` header.
    Tcp(String),
    Unix(PathBuf),
}

impl Endpoint {
    fn parse(addr: &str) -> Result<Endpoint, String> {
        let addr = addr.trim();
        if let Some(path) = addr.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("`unix:` needs a socket path, e.g. unix:/run/limbic.sock".into());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if addr.starts_with("https://") {
            return Err(
                "https is not supported: limbic serve speaks plain HTTP on loopback; \
                 use http://host:port"
                    .into(),
            );
        }
        let rest = addr.strip_prefix("http://").unwrap_or(addr);
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(
                "the address is empty; expected host:port, http://host:port or unix:/path".into(),
            );
        }
        let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
        Ok(Endpoint::Tcp(if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{DEFAULT_PORT}")
        }))
    }
}

/// The fields of the daemon's answer the hook needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct DaemonAnswer {
    decision: Decision,
    #[serde(default)]
    reroute: Option<Reroute>,
    #[serde(default)]
    stress: Option<f32>,
    #[serde(default)]
    spike: bool,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Allow,
    Warn,
    Veto,
    Reroute,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Reroute {
    Confirm,
    Substitute { suggestion: String },
    Pause,
}

/// Posts the step; `Err` is a sentence for the user naming the address and problem.
fn ask_daemon(endpoint: &Endpoint, addr: &str, body: &Value) -> Result<DaemonAnswer, String> {
    let body = body.to_string();
    let unreachable = |e: io::Error| format!("limbic daemon unreachable at {addr}: {e}");
    let response = match endpoint {
        Endpoint::Tcp(authority) => {
            let stream = connect_tcp(authority).map_err(unreachable)?;
            configure_timeouts(
                |t| stream.set_read_timeout(t),
                |t| stream.set_write_timeout(t),
            )
            .map_err(unreachable)?;
            exchange(stream, &request_bytes(authority, &body))
        }
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(unreachable)?;
            configure_timeouts(
                |t| stream.set_read_timeout(t),
                |t| stream.set_write_timeout(t),
            )
            .map_err(unreachable)?;
            exchange(stream, &request_bytes("localhost", &body))
        }
    }
    .map_err(|e| format!("limbic daemon at {addr} gave no usable answer: {e}"))?;
    interpret(response).map_err(|e| format!("limbic daemon at {addr} {e}"))
}

fn configure_timeouts(
    set_read: impl FnOnce(Option<Duration>) -> io::Result<()>,
    set_write: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    set_read(Some(READ_TIMEOUT))?;
    set_write(Some(WRITE_TIMEOUT))
}

fn connect_tcp(authority: &str) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
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

fn request_bytes(host: &str, body: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/steps HTTP/1.1\r\nHost: {host}\r\nUser-Agent: limbic-hook/{}\r\n\
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
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

/// Sends `request` and reads one response, stopping as soon as it is complete (a
/// server that keeps the connection open despite `Connection: close` cannot stall us).
fn exchange<S: Read + Write>(mut stream: S, request: &[u8]) -> Result<HttpResponse, String> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("sending the step failed: {e}"))?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no answer within {} s (is the model overloaded?)",
                    READ_TIMEOUT.as_secs()
                ))
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
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<HttpResponse>, String> {
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
    Ok(body.map(|body| HttpResponse { status, body }))
}

fn parse_status_line(line: &str) -> Result<u16, String> {
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
fn decode_chunked(body: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The decision in a 2xx answer; `Err` completes "limbic daemon at ADDR ...".
fn interpret(response: HttpResponse) -> Result<DaemonAnswer, String> {
    if !(200..300).contains(&response.status) {
        let detail = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&response.body);
                head_str(text.trim(), 300).to_string()
            });
        return Err(format!(
            "refused the step with HTTP {}: {detail}",
            response.status
        ));
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| format!("answered with something that is not a decision: {e}"))
}

// ---------------------------------------------------------------------------
// Decisions and the agents' answers
// ---------------------------------------------------------------------------

/// What limbic concluded about the step. Strings say why, for the agent and the user.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Allow,
    Warn(String),
    Veto(String),
    Confirm(String),
    Substitute {
        why: String,
        suggestion: String,
    },
    Pause(String),
    /// limbic could not decide; the string names the problem.
    Unavailable(String),
}

fn outcome_of(answer: DaemonAnswer) -> Outcome {
    let why = explain(&answer);
    match (answer.decision, answer.reroute) {
        (Decision::Allow, _) => Outcome::Allow,
        (Decision::Warn, _) => Outcome::Warn(why),
        (Decision::Veto, _) => Outcome::Veto(why),
        (Decision::Reroute, Some(Reroute::Substitute { suggestion })) => {
            Outcome::Substitute { why, suggestion }
        }
        (Decision::Reroute, Some(Reroute::Pause)) => Outcome::Pause(why),
        // A reroute without a kind still means "not as asked": a human decides.
        (Decision::Reroute, Some(Reroute::Confirm) | None) => Outcome::Confirm(why),
    }
}

fn explain(answer: &DaemonAnswer) -> String {
    let reason = answer
        .reason
        .as_deref()
        .map(|r| r.trim().trim_end_matches('.'))
        .filter(|r| !r.is_empty())
        .unwrap_or("no reason given");
    let mut facts = Vec::new();
    if let Some(rule) = answer.rule.as_deref().filter(|r| !r.trim().is_empty()) {
        facts.push(format!("rule `{rule}`"));
    }
    if let Some(stress) = answer.stress {
        facts.push(format!("stress {stress:.2}"));
    }
    if answer.spike {
        facts.push("stress spike".to_string());
    }
    if facts.is_empty() {
        reason.to_string()
    } else {
        format!("{reason} ({})", facts.join(", "))
    }
}

/// The agent-independent answer: go on (with an optional note), ask a human, or block.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Proceed(Option<String>),
    Ask(String),
    Block(String),
}

fn verdict(outcome: Outcome, fail_open: bool) -> Verdict {
    match outcome {
        Outcome::Allow => Verdict::Proceed(None),
        Outcome::Warn(why) => Verdict::Proceed(Some(format!(
            "limbic warning: {why}. The action is allowed; double-check it before relying on it."
        ))),
        Outcome::Veto(why) => Verdict::Block(format!("limbic vetoed this action: {why}.")),
        Outcome::Confirm(why) => Verdict::Ask(format!(
            "limbic wants a human to confirm this action: {why}."
        )),
        Outcome::Substitute { why, suggestion } => Verdict::Block(format!(
            "limbic blocked this action: {why}. limbic suggests instead: {suggestion}"
        )),
        Outcome::Pause(why) => Verdict::Block(format!(
            "limbic paused this session: {why}. Stop here: do not call more tools; summarise \
             your progress so far and hand back to the user."
        )),
        Outcome::Unavailable(problem) if fail_open => Verdict::Proceed(Some(format!(
            "{problem}. limbic was unavailable, so the action is allowed (fail-open)."
        ))),
        Outcome::Unavailable(problem) => Verdict::Block(format!(
            "{problem}. The action is blocked because the limbic hook fails closed: start \
             `limbic serve`, or run the hook with --fail-open to let actions through while \
             limbic is down."
        )),
    }
}

/// What the hook process prints and returns.
#[derive(Debug, Clone, PartialEq)]
struct HookAnswer {
    /// One JSON object for stdout.
    stdout: Value,
    stderr: Option<String>,
    exit: u8,
}

/// Exit code that makes Claude Code and Codex block a tool call (stderr is the reason).
const EXIT_BLOCK: u8 = 2;

fn render(agent: Agent, verdict: Verdict) -> HookAnswer {
    match agent {
        Agent::ClaudeCode => render_claude(verdict),
        Agent::Codex => render_codex(verdict),
        Agent::Gemini => render_gemini(verdict),
        Agent::Cursor => render_cursor(verdict),
    }
}

fn proceed(stdout: Value) -> HookAnswer {
    HookAnswer {
        stdout,
        stderr: None,
        exit: 0,
    }
}

/// The Claude Code / Codex deny: JSON for agents that read stdout, and exit 2 with the
/// reason on stderr, which blocks even where the JSON is not read.
fn pre_tool_use_deny(reason: String) -> HookAnswer {
    HookAnswer {
        stdout: json!({ "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }}),
        stderr: Some(reason),
        exit: EXIT_BLOCK,
    }
}

fn render_claude(verdict: Verdict) -> HookAnswer {
    match verdict {
        // No permissionDecision: "allow" would skip Claude Code's own permission prompt.
        Verdict::Proceed(None) => proceed(json!({})),
        // systemMessage shows the user; additionalContext tells the agent.
        Verdict::Proceed(Some(note)) => proceed(json!({
            "systemMessage": note,
            "hookSpecificOutput": { "hookEventName": "PreToolUse", "additionalContext": note },
        })),
        Verdict::Ask(reason) => proceed(json!({ "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "ask",
            "permissionDecisionReason": reason,
        }})),
        Verdict::Block(reason) => pre_tool_use_deny(reason),
    }
}

fn render_codex(verdict: Verdict) -> HookAnswer {
    match verdict {
        // Codex rejects permissionDecision "allow"/"ask" and additionalContext in
        // PreToolUse output as unsupported (and then runs the tool anyway).
        Verdict::Proceed(None) => proceed(json!({})),
        Verdict::Proceed(Some(note)) => proceed(json!({ "systemMessage": note })),
        Verdict::Ask(reason) => pre_tool_use_deny(format!(
            "{reason} Codex hooks cannot ask for confirmation, so limbic blocks it: ask the \
             user to confirm, and let them run it if they agree."
        )),
        Verdict::Block(reason) => pre_tool_use_deny(reason),
    }
}

fn render_gemini(verdict: Verdict) -> HookAnswer {
    let deny = |reason: String| proceed(json!({ "decision": "deny", "reason": reason }));
    match verdict {
        // No decision: the CLI's own confirmation settings still apply.
        Verdict::Proceed(None) => proceed(json!({})),
        Verdict::Proceed(Some(note)) => proceed(json!({ "systemMessage": note })),
        // BeforeTool decisions are allow or deny only.
        Verdict::Ask(reason) => deny(format!(
            "{reason} Gemini CLI hooks cannot ask for confirmation, so limbic blocks it: ask \
             the user to confirm, and let them run it if they agree."
        )),
        // Exit 0 with a JSON deny is Gemini CLI's preferred way to block.
        Verdict::Block(reason) => deny(reason),
    }
}

fn render_cursor(verdict: Verdict) -> HookAnswer {
    // Cursor's docs have used both camelCase and snake_case message fields; both are
    // sent. Cursor always needs a `permission`.
    let answer = |permission: &str, message: Option<String>| {
        let mut out = json!({ "permission": permission });
        if let Some(message) = message {
            for field in [
                "user_message",
                "agent_message",
                "userMessage",
                "agentMessage",
            ] {
                out[field] = Value::String(message.clone());
            }
        }
        proceed(out)
    };
    match verdict {
        Verdict::Proceed(note) => answer("allow", note),
        Verdict::Ask(reason) => answer("ask", Some(reason)),
        Verdict::Block(reason) => answer("deny", Some(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    // --- events -------------------------------------------------------------

    fn claude_event(transcript: &str) -> String {
        json!({
            "session_id": "abc123",
            "transcript_path": transcript,
            "cwd": "/home/dev/project",
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": { "command": "git push --force origin main", "description": "Push" },
            "tool_use_id": "toolu_01ABC",
        })
        .to_string()
    }

    #[test]
    fn parses_claude_code_pre_tool_use() {
        let event =
            parse_event(Agent::ClaudeCode, claude_event("/tmp/t.jsonl").as_bytes()).unwrap();
        assert_eq!(event.session, "abc123");
        assert_eq!(event.tool, "Bash");
        assert_eq!(event.args["command"], "git push --force origin main");
        assert_eq!(event.transcript, Some(PathBuf::from("/tmp/t.jsonl")));
    }

    #[test]
    fn parses_codex_pre_tool_use() {
        let raw = json!({
            "session_id": "019fecd6-44bf-7482-9eaa-ab1f81fff651",
            "turn_id": "019fecd6-453c",
            "transcript_path": null,
            "cwd": "/repo",
            "hook_event_name": "PreToolUse",
            "model": "gpt-5",
            "permission_mode": "default",
            "tool_name": "apply_patch",
            "tool_input": { "command": "*** Begin Patch\n*** Delete File: tests/a.rs\n*** End Patch" },
            "tool_use_id": "call-1",
        });
        let event = parse_event(Agent::Codex, raw.to_string().as_bytes()).unwrap();
        assert_eq!(event.session, "019fecd6-44bf-7482-9eaa-ab1f81fff651");
        assert_eq!(event.tool, "apply_patch");
        assert!(event.args["command"]
            .as_str()
            .unwrap()
            .contains("Delete File"));
        assert_eq!(event.transcript, None);
    }

    #[test]
    fn parses_gemini_before_tool() {
        let raw = json!({
            "session_id": "g-1",
            "transcript_path": "/home/dev/.gemini/tmp/abc/chats/session-1.json",
            "cwd": "/repo",
            "hook_event_name": "BeforeTool",
            "timestamp": "2026-01-01T00:00:00Z",
            "tool_name": "run_shell_command",
            "tool_input": { "command": "rm -rf tests", "description": "clean" },
        });
        let event = parse_event(Agent::Gemini, raw.to_string().as_bytes()).unwrap();
        assert_eq!(event.session, "g-1");
        assert_eq!(event.tool, "run_shell_command");
        assert_eq!(event.args["command"], "rm -rf tests");
    }

    #[test]
    fn parses_cursor_shell_mcp_read_and_pre_tool_use() {
        let shell = json!({
            "hook_event_name": "beforeShellExecution",
            "conversation_id": "conv-123", "generation_id": "gen-456",
            "workspace_roots": ["/repo"], "command": "npm test -- --passWithNoTests", "cwd": "/repo",
        });
        let event = parse_event(Agent::Cursor, shell.to_string().as_bytes()).unwrap();
        assert_eq!(event.session, "conv-123");
        assert_eq!(event.tool, "Bash");
        assert_eq!(
            event.args,
            json!({"command": "npm test -- --passWithNoTests", "cwd": "/repo"})
        );

        // MCP arguments arrive as a JSON string; they are decoded for the policy.
        let mcp = json!({
            "hook_event_name": "beforeMCPExecution", "conversation_id": "conv-123",
            "tool_name": "database_query", "tool_input": "{\"query\": \"DROP TABLE users\"}",
            "url": "http://localhost:3000",
        });
        let event = parse_event(Agent::Cursor, mcp.to_string().as_bytes()).unwrap();
        assert_eq!(event.tool, "database_query");
        assert_eq!(event.args, json!({"query": "DROP TABLE users"}));

        let read = json!({
            "hook_event_name": "beforeReadFile", "conversation_id": "conv-9",
            "file_path": "/repo/.env", "content": "API_KEY=secret",
        });
        let event = parse_event(Agent::Cursor, read.to_string().as_bytes()).unwrap();
        assert_eq!(event.tool, "Read");
        assert_eq!(
            event.args,
            json!({"file_path": "/repo/.env"}),
            "content is not forwarded"
        );

        let pre = json!({
            "hook_event_name": "preToolUse", "conversation_id": "conv-9",
            "tool_name": "Shell", "tool_input": {"command": "ls"},
            "transcript_path": "/tmp/cursor.jsonl",
        });
        let event = parse_event(Agent::Cursor, pre.to_string().as_bytes()).unwrap();
        assert_eq!(event.tool, "Shell");
        assert_eq!(event.transcript, Some(PathBuf::from("/tmp/cursor.jsonl")));
    }

    #[test]
    fn malformed_events_name_the_problem() {
        let cases: [(Agent, &str, &str); 7] = [
            (Agent::ClaudeCode, "", "stdin is empty"),
            (Agent::ClaudeCode, "not json", "not a JSON hook event"),
            (Agent::Codex, "[1,2]", "not an object"),
            (
                Agent::ClaudeCode,
                r#"{"session_id":"s"}"#,
                "`tool_name` is missing",
            ),
            (
                Agent::Gemini,
                r#"{"tool_name":7}"#,
                "`tool_name` is not a string",
            ),
            (
                Agent::ClaudeCode,
                r#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#,
                "handles `PreToolUse` events",
            ),
            (
                Agent::Cursor,
                r#"{"hook_event_name":"afterFileEdit","file_path":"/a"}"#,
                "`afterFileEdit` is not one limbic judges",
            ),
        ];
        for (agent, raw, expected) in cases {
            let error = format!("{:#}", parse_event(agent, raw.as_bytes()).unwrap_err());
            assert!(error.contains(expected), "{agent} {raw:?}: {error}");
        }
    }

    #[test]
    fn missing_session_id_becomes_unknown() {
        let event = parse_event(Agent::Gemini, br#"{"tool_name":"read_file"}"#).unwrap();
        assert_eq!(event.session, "unknown");
        assert_eq!(event.args, json!({}));
    }

    #[test]
    fn step_body_prefixes_session_and_uses_placeholder_without_words() {
        let event = HookEvent {
            session: "s1".into(),
            tool: "Bash".into(),
            args: json!({"command": "ls"}),
            transcript: None,
        };
        let body = step_body(Agent::Codex, &event, "  ");
        assert_eq!(
            body,
            json!({"session": "codex:s1", "step": null, "text": NO_WORDS,
                   "action": {"tool": "Bash", "args": {"command": "ls"}}})
        );
        let body = step_body(Agent::Cursor, &event, "I give up, forcing it.");
        assert_eq!(body["session"], "cursor:s1");
        assert_eq!(body["text"], "I give up, forcing it.");
    }

    #[test]
    fn step_body_keeps_the_end_of_long_words() {
        let event = HookEvent {
            session: "s".into(),
            tool: "Bash".into(),
            args: json!({}),
            transcript: None,
        };
        let words = format!("{}THE END", "x".repeat(MAX_WORDS_BYTES * 2));
        let body = step_body(Agent::ClaudeCode, &event, &words);
        let text = body["text"].as_str().unwrap();
        assert_eq!(text.len(), MAX_WORDS_BYTES);
        assert!(text.ends_with("THE END"));
    }

    #[test]
    fn huge_args_are_shrunk_keeping_head_and_tail() {
        let content = format!("HEAD{}rm -rf tests", "a".repeat(200_000));
        let args = json!({"file_path": "/repo/x.sh", "content": content});
        let shrunk = shrink_args(&args, MAX_ARGS_BYTES);
        assert!(json_len(&shrunk) <= MAX_ARGS_BYTES);
        assert_eq!(shrunk["file_path"], "/repo/x.sh");
        let kept = shrunk["content"].as_str().unwrap();
        assert!(kept.starts_with("HEAD") && kept.ends_with("rm -rf tests"));
        assert!(kept.contains("bytes elided"));
    }

    // --- transcripts --------------------------------------------------------

    fn write_temp(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file.flush().unwrap();
        file
    }

    fn jsonl(lines: &[Value]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn claude_transcript_gives_last_assistant_text() {
        let transcript = jsonl(&[
            json!({"type": "summary", "summary": "old"}),
            json!({"type": "user", "message": {"role": "user", "content": "fix the build"}}),
            json!({"type": "assistant", "message": {"role": "assistant", "id": "m1",
                   "content": [{"type": "text", "text": "First attempt."}]}}),
            json!({"type": "user", "message": {"role": "user",
                   "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "error"}]}}),
            json!({"type": "assistant", "message": {"role": "assistant", "id": "m2",
                   "content": [{"type": "thinking", "thinking": "hmm"}]}}),
            json!({"type": "assistant", "message": {"role": "assistant", "id": "m2",
                   "content": [{"type": "text", "text": "Nothing works."}]}}),
            json!({"type": "assistant", "message": {"role": "assistant", "id": "m2",
                   "content": [{"type": "text", "text": "I'll just skip the tests."}]}}),
            json!({"type": "assistant", "message": {"role": "assistant", "id": "m2",
                   "content": [{"type": "tool_use", "id": "t2", "name": "Bash", "input": {}}]}}),
        ]);
        let file = write_temp(&transcript);
        assert_eq!(
            latest_words(file.path()),
            "Nothing works.\n\nI'll just skip the tests."
        );
    }

    #[test]
    fn claude_transcript_without_text_in_latest_turn_falls_back_to_earlier_words() {
        let transcript = jsonl(&[
            json!({"type": "assistant", "message": {"role": "assistant",
                   "content": [{"type": "text", "text": "Running the suite."}]}}),
            json!({"type": "user", "message": {"role": "user",
                   "content": [{"type": "tool_result", "content": "3 failed"}]}}),
            json!({"type": "assistant", "message": {"role": "assistant",
                   "content": [{"type": "tool_use", "name": "Bash", "input": {}}]}}),
        ]);
        let file = write_temp(&transcript);
        assert_eq!(latest_words(file.path()), "Running the suite.");
    }

    #[test]
    fn codex_rollout_gives_last_assistant_message() {
        let transcript = jsonl(&[
            json!({"timestamp": "t", "type": "session_meta", "payload": {"id": "x"}}),
            json!({"type": "response_item", "payload": {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "make CI green"}]}}),
            json!({"type": "response_item", "payload": {"type": "message", "role": "assistant",
                   "content": [{"type": "output_text", "text": "Old words."}]}}),
            json!({"type": "response_item", "payload": {"type": "function_call_output",
                   "call_id": "c1", "output": "FAILED"}}),
            json!({"type": "response_item", "payload": {"type": "reasoning", "summary": []}}),
            json!({"type": "response_item", "payload": {"type": "message", "role": "assistant",
                   "content": [{"type": "output_text", "text": "Disabling the check to ship."}]}}),
            json!({"type": "event_msg", "payload": {"type": "agent_message",
                   "message": "Disabling the check to ship."}}),
            json!({"type": "response_item", "payload": {"type": "function_call",
                   "name": "shell", "arguments": "{}"}}),
        ]);
        let file = write_temp(&transcript);
        assert_eq!(latest_words(file.path()), "Disabling the check to ship.");
    }

    #[test]
    fn gemini_session_file_gives_last_model_text() {
        let doc = json!({
            "sessionId": "g", "projectHash": "h", "startTime": "s", "lastUpdated": "l",
            "messages": [
                {"id": "1", "type": "user", "content": "deploy"},
                {"id": "2", "type": "gemini", "content": "Deploying now.", "toolCalls": []},
                {"id": "3", "type": "user", "content": "it failed"},
                {"id": "4", "type": "gemini", "content": [
                    {"text": "secret plan", "thought": true},
                    {"text": "I must hit the deadline, forcing it."}
                ]},
                {"id": "5", "type": "info", "content": "tool output"},
            ]
        });
        // Session files are pretty-printed: a JSON document, not JSON Lines.
        let file = write_temp(&serde_json::to_string_pretty(&doc).unwrap());
        assert_eq!(
            latest_words(file.path()),
            "I must hit the deadline, forcing it."
        );
    }

    #[test]
    fn gemini_api_style_contents_are_understood() {
        let doc = json!({"contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}, {"functionCall": {"name": "x"}}]},
        ]});
        let file = write_temp(&doc.to_string());
        assert_eq!(latest_words(file.path()), "Hello.");
    }

    #[test]
    fn cursor_transcript_lines_with_top_level_role() {
        let transcript = jsonl(&[
            json!({"role": "user", "message": {"content": [{"type": "text", "text": "go"}]}}),
            json!({"role": "assistant", "message": {"content": [{"type": "text", "text": "On it."}]}}),
        ]);
        let file = write_temp(&transcript);
        assert_eq!(latest_words(file.path()), "On it.");
    }

    #[test]
    fn big_jsonl_transcript_is_read_from_its_tail() {
        let filler =
            json!({"type": "user", "message": {"role": "user", "content": "x".repeat(4000)}});
        let mut lines: Vec<Value> = (0..200).map(|_| filler.clone()).collect();
        lines.push(json!({"type": "assistant", "message": {"role": "assistant",
                          "content": [{"type": "text", "text": "The tail words."}]}}));
        let text = jsonl(&lines);
        assert!(text.len() as u64 > TRANSCRIPT_TAIL_BYTES);
        let file = write_temp(&text);
        assert_eq!(latest_words(file.path()), "The tail words.");
    }

    #[test]
    fn big_single_document_transcript_is_read_whole() {
        let mut messages: Vec<Value> = (0..100)
            .map(|i| json!({"id": i.to_string(), "type": "user", "content": "y".repeat(4000)}))
            .collect();
        messages.push(json!({"id": "last", "type": "gemini", "content": "Final words."}));
        let doc =
            serde_json::to_string_pretty(&json!({"sessionId": "s", "messages": messages})).unwrap();
        assert!(doc.len() as u64 > TRANSCRIPT_TAIL_BYTES);
        let file = write_temp(&doc);
        assert_eq!(latest_words(file.path()), "Final words.");
    }

    #[test]
    fn unusable_transcripts_give_no_words() {
        assert_eq!(
            latest_words(Path::new("/nonexistent/limbic/transcript.jsonl")),
            ""
        );
        let file = write_temp("garbage\n{not json\n\n");
        assert_eq!(latest_words(file.path()), "");
        let file = write_temp(&jsonl(&[
            json!({"type": "user", "message": {"content": "hi"}}),
        ]));
        assert_eq!(latest_words(file.path()), "");
    }

    // --- decisions per agent ------------------------------------------------

    fn all_outcomes() -> Vec<Outcome> {
        vec![
            Outcome::Allow,
            Outcome::Warn("w".into()),
            Outcome::Veto("v".into()),
            Outcome::Confirm("c".into()),
            Outcome::Substitute {
                why: "s".into(),
                suggestion: "git push --force-with-lease".into(),
            },
            Outcome::Pause("p".into()),
            Outcome::Unavailable("limbic daemon unreachable at X: refused".into()),
        ]
    }

    /// (permission-like decision, message) as each agent will read it.
    fn read_back(agent: Agent, answer: &HookAnswer) -> (&'static str, String) {
        let out = &answer.stdout;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        match agent {
            Agent::ClaudeCode | Agent::Codex => {
                let hso = &out["hookSpecificOutput"];
                let decision = match hso["permissionDecision"].as_str() {
                    Some("deny") => "deny",
                    Some("ask") => "ask",
                    Some(other) => panic!("unexpected decision {other}"),
                    None => "proceed",
                };
                let message = if decision == "proceed" {
                    text(&out["systemMessage"])
                } else {
                    text(&hso["permissionDecisionReason"])
                };
                (decision, message)
            }
            Agent::Gemini => match out["decision"].as_str() {
                Some("deny") => ("deny", text(&out["reason"])),
                None => ("proceed", text(&out["systemMessage"])),
                Some(other) => panic!("unexpected decision {other}"),
            },
            Agent::Cursor => {
                let decision = match out["permission"].as_str() {
                    Some("allow") => "proceed",
                    Some("ask") => "ask",
                    Some("deny") => "deny",
                    other => panic!("unexpected permission {other:?}"),
                };
                assert_eq!(out["user_message"], out["userMessage"]);
                assert_eq!(out["agent_message"], out["agentMessage"]);
                (decision, text(&out["agent_message"]))
            }
        }
    }

    #[test]
    fn every_outcome_maps_to_each_agents_answer() {
        let agents = [
            Agent::ClaudeCode,
            Agent::Codex,
            Agent::Gemini,
            Agent::Cursor,
        ];
        for agent in agents {
            for fail_open in [false, true] {
                for outcome in all_outcomes() {
                    let answer = render(agent, verdict(outcome.clone(), fail_open));
                    let (decision, message) = read_back(agent, &answer);
                    let can_ask = matches!(agent, Agent::ClaudeCode | Agent::Cursor);
                    let expected = match &outcome {
                        Outcome::Allow | Outcome::Warn(_) => "proceed",
                        Outcome::Unavailable(_) if fail_open => "proceed",
                        Outcome::Confirm(_) if can_ask => "ask",
                        _ => "deny",
                    };
                    assert_eq!(
                        decision, expected,
                        "{agent} {outcome:?} fail_open={fail_open}"
                    );
                    match &outcome {
                        Outcome::Allow => assert_eq!(message, ""),
                        Outcome::Warn(_) => assert!(message.contains("limbic warning: w")),
                        Outcome::Veto(_) => assert!(message.contains("vetoed this action: v")),
                        Outcome::Confirm(_) => assert!(message.contains("confirm this action: c")),
                        Outcome::Substitute { .. } => assert!(message
                            .contains("limbic suggests instead: git push --force-with-lease")),
                        Outcome::Pause(_) => assert!(
                            message.contains("summarise your progress")
                                && message.contains("hand back to the user")
                        ),
                        Outcome::Unavailable(_) => {
                            assert!(message.contains("limbic daemon unreachable at X"));
                            let tail = if fail_open {
                                "fail-open"
                            } else {
                                "fails closed"
                            };
                            assert!(message.contains(tail), "{message}");
                        }
                    }
                    // Exit codes and stderr: Claude Code and Codex block with exit 2 and
                    // the reason on stderr; Gemini and Cursor answer in JSON with exit 0.
                    let blocks_by_exit = matches!(agent, Agent::ClaudeCode | Agent::Codex);
                    if decision == "deny" && blocks_by_exit {
                        assert_eq!(answer.exit, EXIT_BLOCK);
                        assert_eq!(answer.stderr.as_deref(), Some(message.as_str()));
                    } else {
                        assert_eq!(answer.exit, 0, "{agent} {outcome:?}");
                        assert_eq!(answer.stderr, None);
                    }
                }
            }
        }
    }

    #[test]
    fn allow_never_grants_permission_to_agents_with_their_own_prompts() {
        for agent in [Agent::ClaudeCode, Agent::Codex, Agent::Gemini] {
            let answer = render(agent, verdict(Outcome::Allow, false));
            assert_eq!(answer.stdout, json!({}), "{agent}");
        }
        let cursor = render(Agent::Cursor, verdict(Outcome::Allow, false));
        assert_eq!(cursor.stdout, json!({"permission": "allow"}));
    }

    #[test]
    fn claude_warning_reaches_user_and_agent() {
        let answer = render(
            Agent::ClaudeCode,
            verdict(Outcome::Warn("stressy".into()), false),
        );
        assert_eq!(
            answer.stdout["hookSpecificOutput"]["hookEventName"],
            "PreToolUse"
        );
        assert_eq!(
            answer.stdout["hookSpecificOutput"]["additionalContext"],
            answer.stdout["systemMessage"]
        );
        assert!(answer.stdout["hookSpecificOutput"]
            .get("permissionDecision")
            .is_none());
    }

    #[test]
    fn daemon_answers_become_outcomes() {
        let answer = |decision: &str, reroute: Value| -> DaemonAnswer {
            serde_json::from_value(json!({
                "session": "claude-code:s", "step": 3, "decision": decision, "reroute": reroute,
                "stress": 1.5, "spike": true, "scores": {"desperation": 2.1}, "rule": "no-force-push",
                "reason": "force push under stress", "classes": ["force_push"], "latency_ms": 12.5,
            }))
            .unwrap()
        };
        let why = "force push under stress (rule `no-force-push`, stress 1.50, stress spike)";
        assert_eq!(outcome_of(answer("allow", Value::Null)), Outcome::Allow);
        assert_eq!(
            outcome_of(answer("warn", Value::Null)),
            Outcome::Warn(why.into())
        );
        assert_eq!(
            outcome_of(answer("veto", Value::Null)),
            Outcome::Veto(why.into())
        );
        assert_eq!(
            outcome_of(answer("reroute", json!({"kind": "confirm"}))),
            Outcome::Confirm(why.into())
        );
        assert_eq!(
            outcome_of(answer(
                "reroute",
                json!({"kind": "substitute", "suggestion": "use --force-with-lease"})
            )),
            Outcome::Substitute {
                why: why.into(),
                suggestion: "use --force-with-lease".into()
            }
        );
        assert_eq!(
            outcome_of(answer("reroute", json!({"kind": "pause"}))),
            Outcome::Pause(why.into())
        );
        assert_eq!(
            outcome_of(answer("reroute", Value::Null)),
            Outcome::Confirm(why.into())
        );
        let minimal: DaemonAnswer = serde_json::from_str(r#"{"decision":"veto"}"#).unwrap();
        assert_eq!(outcome_of(minimal), Outcome::Veto("no reason given".into()));
        assert!(serde_json::from_str::<DaemonAnswer>(r#"{"decision":"maybe"}"#).is_err());
    }

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
                body: b"hello".to_vec()
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
        };
        assert_eq!(
            interpret(response).unwrap_err(),
            "refused the step with HTTP 422: step text is 40000 bytes; the limit is 32768"
        );
        let response = HttpResponse {
            status: 502,
            body: b"Bad gateway".to_vec(),
        };
        assert_eq!(
            interpret(response).unwrap_err(),
            "refused the step with HTTP 502: Bad gateway"
        );
        let response = HttpResponse {
            status: 200,
            body: b"{}".to_vec(),
        };
        assert!(interpret(response).unwrap_err().contains("not a decision"));
    }

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

    fn http_ok(body: &Value) -> String {
        let body = body.to_string();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// A one-shot fake daemon on 127.0.0.1:0 answering `response`; it hands back the
    /// request it received. It tests the client, not the model.
    fn fake_daemon(response: String) -> (String, thread::JoinHandle<(String, Value)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(stream.try_clone().unwrap());
            stream.write_all(response.as_bytes()).unwrap();
            request
        });
        (addr, handle)
    }

    fn run(agent: Agent, addr: &str, fail_open: bool, event: &str) -> (u8, Value, String) {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let code = run_hook(
            agent,
            addr,
            fail_open,
            &mut event.as_bytes(),
            &mut stdout,
            &mut stderr,
        );
        let stdout: Value = serde_json::from_slice(&stdout).unwrap();
        (code, stdout, String::from_utf8(stderr).unwrap())
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
        assert_eq!(
            body,
            json!({"session": "claude-code:abc123", "step": null, "text": "Deadline. Forcing it.",
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
        let decision = json!({"decision": "reroute",
            "reroute": {"kind": "substitute", "suggestion": "git push --force-with-lease"},
            "stress": 1.2, "spike": false, "rule": "r", "reason": "risky"})
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{decision}\r\n0\r\n\r\n",
            decision.len()
        );
        let (addr, server) = fake_daemon(response);
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
        let (addr, server) = fake_daemon(response);
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
        let decision =
            json!({"decision": "reroute", "reroute": {"kind": "confirm"}, "reason": "rm -rf"});
        let response = http_ok(&decision);
        let (tx, rx) = mpsc::channel();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(stream.try_clone().unwrap());
            tx.send(request).unwrap();
            stream.write_all(response.as_bytes()).unwrap();
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
                let code = run_hook(Agent::ClaudeCode, "unix:/nonexistent/limbic.sock", false,
                                    &mut raw.as_bytes(), &mut stdout, &mut stderr);
                prop_assert_eq!(code, EXIT_BLOCK);
                prop_assert!(serde_json::from_slice::<Value>(&stdout).is_ok());
            }
        }
    }
}
