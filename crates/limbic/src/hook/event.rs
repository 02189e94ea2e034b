//! Hook events: each agent's pre-tool event parsed into one normalised step, and the
//! step body sent to the daemon (long words and arguments shrunk to fit the limits).
use super::*;

// ---------------------------------------------------------------------------
// Hook events
// ---------------------------------------------------------------------------

/// One pre-tool event, normalised across agents.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HookEvent {
    /// The agent's own session id (Cursor: conversation id).
    pub(super) session: String,
    pub(super) tool: String,
    pub(super) args: Value,
    pub(super) transcript: Option<PathBuf>,
}

pub(super) fn read_event(agent: Agent, input: &mut dyn Read) -> Result<HookEvent> {
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

pub(super) fn parse_event(agent: Agent, raw: &[u8]) -> Result<HookEvent> {
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

pub(super) fn expect_event(agent: Agent, got: Option<&str>, want: &str) -> Result<()> {
    match got {
        None => Ok(()),
        Some(name) if name == want => Ok(()),
        Some(name) => bail!(
            "`limbic hook {agent}` handles `{want}` events, but `hook_event_name` is `{name}`; \
             register it under {want} in the agent's hook settings"
        ),
    }
}

pub(super) fn str_field<'a>(event: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    event.get(field).and_then(Value::as_str)
}

/// The first non-empty id among `fields`; "unknown" keeps steps flowing when an agent
/// omits it (the daemon then tracks them as one session).
pub(super) fn session_of(event: &Map<String, Value>, fields: &[&str]) -> String {
    fields
        .iter()
        .filter_map(|field| str_field(event, field))
        .find(|id| !id.trim().is_empty())
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn transcript_of(event: &Map<String, Value>) -> Option<PathBuf> {
    str_field(event, "transcript_path")
        .filter(|path| !path.trim().is_empty())
        .map(PathBuf::from)
}

/// `tool_name` + `tool_input`, the shape Claude Code, Codex, Gemini and Cursor's
/// MCP/preToolUse events share.
pub(super) fn tool_event(event: &Map<String, Value>, session: String) -> Result<HookEvent> {
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

pub(super) fn cursor_event(
    event: &Map<String, Value>,
    event_name: Option<&str>,
) -> Result<HookEvent> {
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
pub(super) fn step_body(agent: Agent, event: &HookEvent, words: &str) -> StepRequest {
    let text = if words.trim().is_empty() {
        NO_WORDS
    } else {
        tail_str(words, MAX_WORDS_BYTES)
    };
    StepRequest {
        session: format!("{}:{}", agent.name(), event.session),
        step: None,
        text: text.to_string(),
        action: Action {
            tool: event.tool.clone(),
            args: shrink_args(&event.args, MAX_ARGS_BYTES),
        },
    }
}

/// The last `max` bytes of `text`, cut on a character boundary.
pub(super) fn tail_str(text: &str, max: usize) -> &str {
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
pub(super) fn head_str(text: &str, max: usize) -> &str {
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
pub(super) fn shrink_args(args: &Value, limit: usize) -> Value {
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

pub(super) fn json_len(value: &Value) -> usize {
    value.to_string().len()
}

pub(super) fn elide_strings(value: &Value, keep: usize) -> Value {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    // --- events -------------------------------------------------------------

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
            serde_json::to_value(&body).unwrap(),
            json!({"session": "codex:s1", "text": NO_WORDS,
                   "action": {"tool": "Bash", "args": {"command": "ls"}}})
        );
        let body = step_body(Agent::Cursor, &event, "I give up, forcing it.");
        assert_eq!(body.session, "cursor:s1");
        assert_eq!(body.text, "I give up, forcing it.");
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
        let text = body.text.as_str();
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
}
