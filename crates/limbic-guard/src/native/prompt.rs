//! A chat request as the model's tokens: the model's own chat template for the turn
//! structure, the messages tokenized as plain text (so no message can inject control
//! tokens), tool definitions in the system message, and tool calls and results written
//! the way the model is asked to write them.

use anyhow::{anyhow, Result};
use limbic_engine::{ChatMessage, Model};
use sha2::{Digest, Sha256};

use super::grammar::{CALL_CLOSE, CALL_OPEN};
use super::wire::{RequestMessage, ToolDef};

/// Stands in for each message's text while the template is applied; never produced by
/// tokenizing user text into a control token, and cut out again before tokenizing.
fn marker(i: usize) -> String {
    format!("\u{2063}LIMBIC{i}\u{2063}")
}

/// How the model is told about the tools it may call.
pub fn tools_instructions(tools: &[ToolDef]) -> String {
    let mut out = String::from(
        "You can call tools. To call one, answer with exactly:\n<tool_call>\n\
         {\"name\": \"<tool name>\", \"arguments\": {<arguments as JSON>}}\n</tool_call>\n\
         Available tools:\n",
    );
    for tool in tools {
        let f = &tool.function;
        out.push_str(&format!(
            "- {}: {} Arguments (JSON schema): {}\n",
            f.name,
            f.description.as_deref().unwrap_or(""),
            f.parameters
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "{}".into())
        ));
    }
    out
}

/// A tool call as the model writes it (and as it is re-read from the history).
pub fn call_text(name: &str, arguments: &str) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into());
    format!("{CALL_OPEN}{{\"name\": {name}, \"arguments\": {arguments}}}{CALL_CLOSE}")
}

/// The messages as (template role, text) pairs.
pub fn turns(
    messages: &[RequestMessage],
    tools: &[ToolDef],
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(messages.len() + 1);
    for (i, m) in messages.iter().enumerate() {
        let text = match &m.content {
            Some(c) => c.text().map_err(|e| format!("messages[{i}]: {e}"))?,
            None => String::new(),
        };
        match m.role.as_str() {
            "system" | "developer" => out.push(("system".into(), text)),
            "user" => out.push(("user".into(), text)),
            "assistant" => {
                let mut text = text;
                for call in m.tool_calls.iter().flatten() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&call_text(&call.function.name, &call.function.arguments));
                }
                out.push(("assistant".into(), text));
            }
            // Not every template knows a tool role: results go back as the user's turn.
            "tool" | "function" => out.push((
                "user".into(),
                format!("<tool_response>\n{text}\n</tool_response>"),
            )),
            other => {
                return Err(format!(
                    "messages[{i}].role {other:?} is not one of system, developer, user, assistant, tool"
                ))
            }
        }
    }
    if !tools.is_empty() {
        let instructions = tools_instructions(tools);
        match out.first_mut() {
            Some((role, text)) if role == "system" => {
                text.push_str("\n\n");
                text.push_str(&instructions);
            }
            _ => out.insert(0, ("system".into(), instructions)),
        }
    }
    Ok(out)
}

/// Tokens of the conversation up to the start of the assistant's answer (no BOS: the
/// engine's session starts with it).
pub fn tokens(model: &Model, turns: &[(String, String)]) -> Result<Vec<i32>> {
    let templated: Vec<ChatMessage> = turns
        .iter()
        .enumerate()
        .map(|(i, (role, _))| ChatMessage::new(role, &marker(i)))
        .collect();
    let rendered = model.apply_chat_template(&templated, true)?;
    let mut out = Vec::new();
    let mut rest = rendered.as_str();
    for (i, (_, text)) in turns.iter().enumerate() {
        let m = marker(i);
        let (structure, after) = rest
            .split_once(&m)
            .ok_or_else(|| anyhow!("the chat template dropped message {i}"))?;
        out.extend(model.tokenize_templated(structure, false)?);
        out.extend(model.tokenize(text, false)?);
        rest = after;
    }
    out.extend(model.tokenize_templated(rest, false)?);
    if let (Some(bos), Some(&first)) = (model.bos_token(), out.first()) {
        if first == bos {
            out.remove(0);
        }
    }
    Ok(out)
}

/// The conversation's session: `limbic.session`, else `user`, else a hash of its first
/// system and user messages (stable as the conversation grows).
pub fn session_key(
    explicit: Option<&str>,
    user: Option<&str>,
    turns: &[(String, String)],
) -> String {
    if let Some(s) = explicit.or(user).map(str::trim).filter(|s| !s.is_empty()) {
        return s.to_string();
    }
    let mut hasher = Sha256::new();
    for (role, text) in turns.iter().filter(|(r, _)| r != "assistant").take(2) {
        hasher.update(role.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    format!("chat-{}", &hex::encode(hasher.finalize())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::wire::{Content, FunctionCall, FunctionDef, ToolCall};

    fn msg(role: &str, text: &str) -> RequestMessage {
        RequestMessage {
            role: role.into(),
            content: Some(Content::Text(text.into())),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }

    #[test]
    fn tools_go_into_the_system_message_and_calls_read_back_as_written() {
        let tools = vec![ToolDef {
            kind: "function".into(),
            function: FunctionDef {
                name: "run".into(),
                description: Some("Runs a command.".into()),
                parameters: Some(serde_json::json!({"type": "object"})),
            },
        }];
        let mut assistant = msg("assistant", "");
        assistant.content = None;
        assistant.tool_calls = Some(vec![ToolCall {
            id: "c".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "run".into(),
                arguments: "{\"cmd\": \"ls\"}".into(),
            },
        }]);
        let t = turns(&[msg("user", "hi"), assistant, msg("tool", "done")], &tools).unwrap();
        assert_eq!(t[0].0, "system");
        assert!(t[0].1.contains("- run: Runs a command."));
        assert_eq!(
            t[2].1,
            "<tool_call>\n{\"name\": \"run\", \"arguments\": {\"cmd\": \"ls\"}}\n</tool_call>"
        );
        assert_eq!(
            t[3],
            (
                "user".into(),
                "<tool_response>\ndone\n</tool_response>".into()
            )
        );
        assert!(turns(&[msg("robot", "x")], &[]).is_err());
    }

    #[test]
    fn the_session_key_prefers_the_explicit_one_and_is_stable_as_the_conversation_grows() {
        let a = vec![
            ("system".to_string(), "s".to_string()),
            ("user".into(), "u".into()),
        ];
        let mut b = a.clone();
        b.push(("assistant".into(), "x".into()));
        b.push(("user".into(), "more".into()));
        assert_eq!(session_key(None, None, &a), session_key(None, None, &b));
        assert!(session_key(None, None, &a).starts_with("chat-"));
        assert_eq!(session_key(Some("s1"), Some("u"), &a), "s1");
        assert_eq!(session_key(None, Some("u"), &a), "u");
    }
}
