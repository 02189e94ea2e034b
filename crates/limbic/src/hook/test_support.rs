//! Fixtures shared by the hook's unit tests.

use std::io::Write;

use serde_json::{json, Value};

pub(super) fn claude_event(transcript: &str) -> String {
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

pub(super) fn write_temp(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file.flush().unwrap();
    file
}

pub(super) fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}
