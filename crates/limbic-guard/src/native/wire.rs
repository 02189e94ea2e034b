//! The OpenAI chat-completions wire format, as llama-server speaks it, plus the `limbic`
//! objects a request may carry and every answer carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most tokens one answer may generate (a turn is decoded on the guard's one worker).
pub const MAX_COMPLETION_TOKENS: u32 = 4096;
/// Tokens generated when the request does not say.
pub const DEFAULT_COMPLETION_TOKENS: u32 = 256;
/// Most messages and tools one request may carry.
pub const MAX_MESSAGES: usize = 512;
pub const MAX_TOOLS: usize = 64;

/// `POST /v1/chat/completions`. Unknown fields are ignored, as llama-server does.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<RequestMessage>,
    #[serde(default)]
    pub tools: Option<Vec<ToolDef>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub limbic: Option<LimbicRequest>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn sequences(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A message's content: a string, or OpenAI's array of parts (only text parts are read).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    /// The text of the content; an error names a part that is not text.
    pub fn text(&self) -> Result<String, String> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    match (&*part.kind, &part.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(format!(
                                "content part of type {kind:?} is not supported (text only)"
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolDef {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `"none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named(NamedChoice),
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedChoice {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: NamedFunction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

/// A tool call the assistant made (in answers and in the history a client sends back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

/// What a request may ask of limbic. It can only make the guard stricter than the
/// server's policy, never looser.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimbicRequest {
    /// The conversation's session (else `user`, else a hash of the first messages).
    #[serde(default)]
    pub session: Option<String>,
    /// `false`: a rerouted tool call is withheld at once instead of steered and regenerated.
    #[serde(default)]
    pub steer: Option<bool>,
    /// Steering strength in sigmas (at most the policy's own).
    #[serde(default)]
    pub strength: Option<f32>,
    /// Regenerations (at most the policy's own).
    #[serde(default)]
    pub max_tries: Option<u32>,
    /// Withhold any tool call written at this stress or above.
    #[serde(default)]
    pub veto_above: Option<f32>,
    /// Steer from the first try (an experiment's "steered" arm), whatever the decision.
    #[serde(default)]
    pub steer_always: Option<bool>,
}

/// One generation try of a turn, as scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryReport {
    /// Steering strength this try was generated with (0: unsteered).
    pub steering: f32,
    /// Stress and scores as the probes read the activations.
    pub stress_raw: f32,
    pub scores_raw: BTreeMap<String, f32>,
    /// The same with the control vector's own contribution removed from the tapped rows
    /// (what the model carried beyond the push; decisions use these).
    pub stress: f32,
    pub scores: BTreeMap<String, f32>,
    pub decision: String,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    pub tokens: usize,
}

/// The `limbic` object of every answer (the final chunk when streaming).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimbicReport {
    pub session: String,
    /// Audit step of the delivered try (earlier tries hold the steps before it).
    pub step: u64,
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reroute: Option<String>,
    pub rule: String,
    pub reason: String,
    pub stress: f32,
    pub spike: bool,
    pub scores: BTreeMap<String, f32>,
    /// Stress of the conversation's new prompt tokens, as the model read them.
    pub prompt_stress: f32,
    pub tries: usize,
    pub try_reports: Vec<TryReport>,
    /// The model wrote a tool call that was not passed on.
    pub withheld_tool_call: bool,
}

/// OpenAI-shaped error body: `{"error": {"code", "message", "type", "param"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenAiError {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenAiErrorDetail {
    pub code: u16,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
}

impl OpenAiError {
    /// `kind` follows llama-server: `invalid_request_error`, `authentication_error`,
    /// `not_found_error`, `server_error`, `unavailable_error`, `exceed_context_size_error`.
    pub fn new(code: u16, kind: &str, message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            error: OpenAiErrorDetail {
                code,
                message: message.into(),
                kind: kind.to_owned(),
                param: None,
            },
        }
    }
}

/// A finished turn, ready to be written as a completion or a stream.
#[derive(Debug, Clone)]
pub struct ChatAnswer {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub content: Option<String>,
    pub tool_call: Option<ToolCall>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub limbic: LimbicReport,
    /// Request accepted to answer decided and audited.
    pub latency_ms: f64,
}

impl ChatAnswer {
    fn usage(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }

    /// The non-streamed `chat.completion` object.
    pub fn completion(&self) -> Value {
        let mut message = serde_json::json!({ "role": "assistant", "content": self.content });
        if let Some(call) = &self.tool_call {
            message["tool_calls"] = serde_json::json!([call]);
        }
        serde_json::json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": fingerprint(),
            "choices": [{ "index": 0, "message": message, "finish_reason": self.finish_reason }],
            "usage": self.usage(),
            "limbic": self.limbic,
        })
    }

    /// One `chat.completion.chunk` with `delta` (and `finish_reason`).
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        chunk(&self.id, self.created, &self.model, delta, finish_reason)
    }

    /// The chunks that follow any streamed text: buffered text, the tool call as
    /// llama-server streams it (name first with empty arguments, then the arguments),
    /// and the final chunk with `finish_reason`, the usage and the `limbic` object.
    pub fn closing_chunks(&self, buffered_text: bool, include_usage: bool) -> Vec<Value> {
        let mut out = Vec::new();
        if buffered_text {
            if let Some(text) = self.content.as_deref().filter(|t| !t.is_empty()) {
                out.push(self.chunk(serde_json::json!({ "content": text }), None));
            }
        }
        if let Some(call) = &self.tool_call {
            out.push(self.chunk(
                serde_json::json!({ "tool_calls": [{
                    "index": 0, "id": call.id, "type": "function",
                    "function": { "name": call.function.name, "arguments": "" },
                }]}),
                None,
            ));
            out.push(self.chunk(
                serde_json::json!({ "tool_calls": [{
                    "index": 0, "function": { "arguments": call.function.arguments },
                }]}),
                None,
            ));
        }
        let mut last = self.chunk(serde_json::json!({}), Some(self.finish_reason));
        if include_usage {
            last["usage"] = self.usage();
        }
        last["limbic"] = serde_json::to_value(&self.limbic).unwrap_or(Value::Null);
        out.push(last);
        out
    }
}

/// A `chat.completion.chunk` object.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint(),
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    })
}

/// What llama-server puts in `system_fingerprint` (its build); here limbic's version.
pub fn fingerprint() -> String {
    format!("limbic-{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_openai_clients_parse() {
        let body = r#"{"model":"x","messages":[{"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
              "function":{"name":"run","arguments":"{\"cmd\": \"ls\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"ok"}],
            "tools":[{"type":"function","function":{"name":"run","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"run"}},
            "stream":true,"stream_options":{"include_usage":true},"stop":"\n\n",
            "frequency_penalty":0,"logprobs":false,"limbic":{"session":"s1","steer":false}}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.messages.len(), 4);
        assert_eq!(
            req.messages[1].content.as_ref().unwrap().text().unwrap(),
            "hi there"
        );
        assert!(matches!(req.tool_choice, Some(ToolChoice::Named(_))));
        assert_eq!(req.stop.unwrap().sequences(), vec!["\n\n".to_string()]);
        assert_eq!(req.limbic.unwrap().steer, Some(false));
    }

    #[test]
    fn a_typo_in_the_limbic_object_is_an_error_not_a_silent_default() {
        let body = r#"{"messages":[],"limbic":{"sesion":"s"}}"#;
        assert!(serde_json::from_str::<ChatRequest>(body).is_err());
    }

    #[test]
    fn a_streamed_tool_call_has_name_first_then_arguments_then_the_finish() {
        let answer = ChatAnswer {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "m".into(),
            content: None,
            tool_call: Some(ToolCall {
                id: "call_1".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "run".into(),
                    arguments: "{\"cmd\": \"ls\"}".into(),
                },
            }),
            finish_reason: "tool_calls",
            prompt_tokens: 3,
            completion_tokens: 4,
            latency_ms: 1.0,
            limbic: LimbicReport {
                session: "s".into(),
                step: 1,
                decision: "allow".into(),
                reroute: None,
                rule: "default".into(),
                reason: String::new(),
                stress: 0.0,
                spike: false,
                scores: BTreeMap::new(),
                prompt_stress: 0.0,
                tries: 1,
                try_reports: vec![],
                withheld_tool_call: false,
            },
        };
        let chunks = answer.closing_chunks(true, true);
        assert_eq!(chunks.len(), 3);
        let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(first["id"], "call_1");
        assert_eq!(first["function"]["name"], "run");
        assert_eq!(first["function"]["arguments"], "");
        let second = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(second["function"]["arguments"], "{\"cmd\": \"ls\"}");
        assert!(second.get("id").is_none());
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[2]["usage"]["total_tokens"], 7);
        assert_eq!(chunks[2]["limbic"]["decision"], "allow");
        assert_eq!(
            answer.completion()["choices"][0]["message"]["tool_calls"][0]["id"],
            "call_1"
        );
    }
}
