//! Bounded "never panics" properties for every parser the hook feeds outside input: each
//! agent's event, transcripts (as text and as files), the daemon's HTTP answer. Outside
//! input is anything an agent, a transcript file or a process on the daemon's port sends.
use super::test_support::*;
use super::*;
use proptest::prelude::*;

const AGENTS: [Agent; 4] = [
    Agent::ClaudeCode,
    Agent::Codex,
    Agent::Gemini,
    Agent::Cursor,
];

/// Valid events of each dialect, the seeds that mutations start from.
fn seed_events() -> Vec<String> {
    vec![
        claude_event("/tmp/t.jsonl"),
        json!({"hook_event_name": "BeforeTool", "session_id": "g", "tool_name": "write_file",
               "tool_input": {"file_path": "a", "content": "b"}, "transcript_path": "/tmp/t"})
        .to_string(),
        json!({"hook_event_name": "beforeShellExecution", "conversation_id": "c1",
               "generation_id": "g", "command": "git push -f", "cwd": "/r"})
        .to_string(),
        json!({"hook_event_name": "beforeMCPExecution", "conversation_id": "c1",
               "tool_name": "x", "tool_input": "{\"a\":1}", "url": "http://x"})
        .to_string(),
        json!({"hook_event_name": "beforeReadFile", "conversation_id": "c1",
               "file_path": "/etc/passwd", "content": "root"})
        .to_string(),
        json!({"hook_event_name": "preToolUse", "conversation_id": "c1",
               "tool_name": "Write", "tool_input": {"path": "a"}})
        .to_string(),
    ]
}

fn seed_transcript() -> String {
    jsonl(&[
        json!({"type": "user", "message": {"role": "user", "content": "fix it"}}),
        json!({"type": "assistant", "message": {"role": "assistant",
               "content": [{"type": "text", "text": "Forcing it."}]}}),
        json!({"type": "response_item", "payload": {"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "Disabling the check."}]}}),
        json!({"type": "gemini", "content": [{"text": "x", "thought": true}, {"text": "y"}]}),
    ])
}

/// Byte-level mutations: overwrite, insert, delete, truncate.
fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, value, op) in edits {
        if bytes.is_empty() {
            bytes.push(*value);
            continue;
        }
        let i = at.index(bytes.len());
        match op % 4 {
            0 => bytes[i] = *value,
            1 => bytes.insert(i, *value),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), any::<u8>()),
        1..8,
    )
}

/// JSON values with the field names the parsers look for, in any type.
fn event_like() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "hook_event_name",
        "session_id",
        "conversation_id",
        "tool_name",
        "tool_input",
        "transcript_path",
        "command",
        "cwd",
        "file_path",
        "content",
        "url",
        "generation_id",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "PreToolUse",
            "BeforeTool",
            "beforeShellExecution",
            "beforeMCPExecution",
            "beforeReadFile",
            "preToolUse",
            "",
            "Bash",
            "/dev/zero",
            "/nonexistent",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,40}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(key, value, 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_an_event_never_panic(raw in prop::collection::vec(any::<u8>(), 0..600)) {
        for agent in AGENTS {
            if let Ok(event) = parse_event(agent, &raw) {
                let _ = step_body(agent, &event, "words");
            }
        }
    }

    #[test]
    fn mutated_events_never_panic(seed in any::<prop::sample::Index>(), edits in edits()) {
        let seeds = seed_events();
        let raw = mutate(seeds[seed.index(seeds.len())].clone().into_bytes(), &edits);
        for agent in AGENTS {
            if let Ok(event) = parse_event(agent, &raw) {
                let body = step_body(agent, &event, "words");
                // Whatever parses becomes a step the daemon accepts.
                prop_assert!(body.validate().is_ok(), "{body:?}");
            }
        }
    }

    #[test]
    fn event_shaped_values_never_panic(event in event_like(), words in ".{0,200}") {
        let raw = event.to_string();
        for agent in AGENTS {
            if let Ok(parsed) = parse_event(agent, raw.as_bytes()) {
                let body = step_body(agent, &parsed, &words);
                prop_assert!(body.validate().is_ok(), "{body:?}");
            }
        }
    }

    #[test]
    fn mutated_transcript_files_never_panic(edits in edits(), whole in any::<bool>()) {
        let text = mutate(seed_transcript().into_bytes(), &edits);
        let text = if whole { text } else { text.repeat(2) };
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let _ = latest_words(file.path());
        let _ = words_from_text(&String::from_utf8_lossy(&text), !whole);
    }

    #[test]
    fn any_bytes_as_a_transcript_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2000)) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &raw).unwrap();
        let _ = latest_words(file.path());
    }

    #[test]
    fn any_daemon_answer_never_panics(raw in prop::collection::vec(any::<u8>(), 0..600),
                                      eof in any::<bool>()) {
        if let Ok(Some(response)) = parse_response(&raw, eof) {
            let _ = interpret(response, &"t".repeat(40), "0123456789abcdef");
        }
        let mut framed = b"HTTP/1.1 200 OK\r\n".to_vec();
        framed.extend_from_slice(&raw);
        if let Ok(Some(response)) = parse_response(&framed, eof) {
            let _ = interpret(response, &"t".repeat(40), "0123456789abcdef");
        }
    }

    #[test]
    fn any_address_never_panics(addr in ".{0,60}") {
        let _ = Endpoint::parse(&addr);
    }
}
