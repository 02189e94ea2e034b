//! Reading the agent's latest words from its transcript (JSON Lines or one document).
use super::*;

// ---------------------------------------------------------------------------
// Transcripts
// ---------------------------------------------------------------------------

/// The agent's latest words from its transcript, or "" when there are none to read.
/// A transcript problem never blocks a step: the tool call alone is still judged.
pub(super) fn latest_words(path: &Path) -> String {
    read_latest_words(path).unwrap_or_default()
}

pub(super) fn read_latest_words(path: &Path) -> io::Result<String> {
    let mut file = open_regular(path)?;
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

/// Opens `path` for reading only if it is a regular file. A FIFO or device named as the
/// transcript would block the hook (a FIFO's open waits for a writer), so the kind is
/// checked before opening, the open does not block (`O_NONBLOCK`), and the opened file is
/// checked again (the path may have been swapped in between).
pub(super) fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the transcript is not a regular file",
        )
    };
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// The last `max` bytes of the file as text; a line cut by the start of the window is
/// dropped.
pub(super) fn read_tail(file: &mut File, len: u64, max: u64) -> io::Result<String> {
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
pub(super) fn words_from_text(text: &str, truncated: bool) -> Option<String> {
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

pub(super) fn words_from_document(doc: &Value) -> Option<String> {
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
pub(super) enum Entry {
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
pub(super) fn words_from_entries<'a>(
    newest_first: impl Iterator<Item = &'a Value>,
) -> Option<String> {
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

pub(super) fn classify(entry: &Value) -> Entry {
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

pub(super) fn by_role(role: Option<&Value>, content: Option<&Value>) -> Entry {
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
pub(super) fn text_of(content: &Value) -> Option<String> {
    let mut parts = Vec::new();
    collect_text(content, &mut parts);
    let text = parts.join("\n");
    (!text.trim().is_empty()).then_some(text)
}

pub(super) fn collect_text(value: &Value, out: &mut Vec<String>) {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    // --- transcripts --------------------------------------------------------

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
    fn fifo_and_device_transcripts_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("transcript.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let fifo_words = latest_words(&fifo);
            let device_words = latest_words(Path::new("/dev/zero"));
            let _ = tx.send((fifo_words, device_words));
        });
        let (fifo_words, device_words) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO or device transcript must not block");
        assert_eq!(fifo_words, "");
        assert_eq!(device_words, "");
        assert!(read_latest_words(dir.path()).is_err(), "a directory");
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
}
