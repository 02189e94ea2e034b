//! One native turn: the agent's own model writes the assistant's answer while the probes
//! read its residual stream; a tool call in it is decided by the policy on that stress
//! and on what the call does, and is passed on, withheld, or rolled back and written
//! again under a calm control vector. Every try is a row in the audit chain.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use limbic_audit::Delivery;
use limbic_engine::{GenerateParams, Grammar, StopReason};
use limbic_policy::{
    Decision, DecisionKind, NativeExhausted, NativeReroute, NativeSettings, Policy, Reroute,
    RiskLevel, StepView,
};

use super::grammar::{self, ToolSpec};
use super::prompt;
use super::wire::{
    ChatAnswer, ChatRequest, FunctionCall, LimbicReport, ToolCall, ToolChoice, TryReport,
    DEFAULT_COMPLETION_TOKENS, MAX_COMPLETION_TOKENS, MAX_MESSAGES, MAX_TOOLS,
};
use crate::api::{Action, StepAnswer, StepRequest, MAX_NAME};
use crate::guard::Guard;
use crate::scorer::TurnReading;

/// The audit's tool name for a turn that called no tool.
pub const MESSAGE_TOOL: &str = "assistant.message";
/// Rule ids of decisions native mode makes itself.
pub const RULE_NO_TOOL: &str = "native.no-tool-call";
pub const RULE_EXHAUSTED: &str = "native.tries-exhausted";
pub const RULE_VETO_ABOVE: &str = "request.veto_above";
pub const RULE_BAD_CALL: &str = "native.invalid-tool-call";

/// Why a chat request got no answer, with its HTTP status and OpenAI error type.
#[derive(Debug)]
pub enum ChatError {
    BadRequest(String),
    ContextExceeded(String),
    Unavailable(String),
    Internal(anyhow::Error),
}

impl ChatError {
    pub fn status(&self) -> u16 {
        match self {
            ChatError::BadRequest(_) | ChatError::ContextExceeded(_) => 400,
            ChatError::Unavailable(_) => 503,
            ChatError::Internal(_) => 500,
        }
    }

    /// The OpenAI/llama-server error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChatError::BadRequest(_) => "invalid_request_error",
            ChatError::ContextExceeded(_) => "exceed_context_size_error",
            ChatError::Unavailable(_) => "unavailable_error",
            ChatError::Internal(_) => "server_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ChatError::BadRequest(m)
            | ChatError::ContextExceeded(m)
            | ChatError::Unavailable(m) => m.clone(),
            ChatError::Internal(e) => format!("{e:#}"),
        }
    }
}

impl From<limbic_engine::EngineError> for ChatError {
    fn from(e: limbic_engine::EngineError) -> Self {
        ChatError::Internal(e.into())
    }
}

impl From<anyhow::Error> for ChatError {
    fn from(e: anyhow::Error) -> Self {
        ChatError::Internal(e)
    }
}

fn bad(message: impl Into<String>) -> ChatError {
    ChatError::BadRequest(message.into())
}

/// What [`Guard::chat`] reports while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// The request is valid and generation starts (errors after this are internal).
    Accepted,
    /// A piece of the answer's text, sent as written (only when nothing can be withheld).
    Text(&'a str),
}

/// How the request wants tools used.
enum ToolMode {
    None,
    /// Free text, or a call once the model opens one.
    Auto,
    /// A call to one of these tools right away.
    Required(Vec<usize>),
}

/// What the request may set, merged with the policy (only ever stricter).
struct TurnSettings {
    native: NativeSettings,
    steer_always: bool,
    veto_above: Option<f32>,
}

fn settings(policy: &Policy, req: &ChatRequest) -> Result<TurnSettings, ChatError> {
    let mut native = policy.native().clone();
    let ask = req.limbic.clone().unwrap_or_default();
    if ask.steer == Some(false) {
        native.reroute = NativeReroute::Veto;
    }
    if let Some(s) = ask.strength {
        if !s.is_finite() || s < 0.0 {
            return Err(bad("limbic.strength must be a finite number >= 0"));
        }
        native.steer_strength = native.steer_strength.min(s);
    }
    if let Some(t) = ask.max_tries {
        native.max_tries = native.max_tries.min(t);
    }
    if let Some(v) = ask.veto_above {
        if !v.is_finite() {
            return Err(bad("limbic.veto_above must be a finite number"));
        }
    }
    let steer_always = ask.steer_always.unwrap_or(false);
    if steer_always {
        // The experiment's steered arm: the request's strength, within the policy's cap.
        native.steer_strength = ask
            .strength
            .unwrap_or(policy.native().steer_strength)
            .min(limbic_policy::MAX_STEER_STRENGTH);
    }
    Ok(TurnSettings {
        native,
        steer_always,
        veto_above: ask.veto_above,
    })
}

fn tool_mode(req: &ChatRequest) -> Result<ToolMode, ChatError> {
    let tools = req.tools.as_deref().unwrap_or_default();
    if tools.len() > MAX_TOOLS {
        return Err(bad(format!("at most {MAX_TOOLS} tools per request")));
    }
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(bad(format!(
                "tools[{i}].type {:?}: only \"function\"",
                t.kind
            )));
        }
        let name = &t.function.name;
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(bad(format!(
                "tools[{i}].function.name must be 1..{MAX_NAME} printable characters"
            )));
        }
        if tools[..i].iter().any(|o| &o.function.name == name) {
            return Err(bad(format!("tools[{i}]: two tools are named {name:?}")));
        }
    }
    let all = || (0..tools.len()).collect::<Vec<_>>();
    Ok(match (&req.tool_choice, tools.is_empty()) {
        (_, true) => match &req.tool_choice {
            Some(ToolChoice::Named(_)) => return Err(bad("tool_choice names a tool but no tools were given")),
            Some(ToolChoice::Mode(m)) if m == "required" => {
                return Err(bad("tool_choice \"required\" but no tools were given"))
            }
            _ => ToolMode::None,
        },
        (None, false) => ToolMode::Auto,
        (Some(ToolChoice::Mode(m)), false) => match m.as_str() {
            "none" => ToolMode::None,
            "auto" => ToolMode::Auto,
            "required" => ToolMode::Required(all()),
            other => {
                return Err(bad(format!(
                    "tool_choice {other:?}: expected \"none\", \"auto\", \"required\" or a named function"
                )))
            }
        },
        (Some(ToolChoice::Named(n)), false) => {
            let at = tools
                .iter()
                .position(|t| t.function.name == n.function.name)
                .ok_or_else(|| bad(format!("tool_choice names {:?}, which is not in tools", n.function.name)))?;
            ToolMode::Required(vec![at])
        }
    })
}

fn generation_params(req: &ChatRequest, room: usize) -> Result<GenerateParams, ChatError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(bad("n: only 1 choice per request is supported"));
    }
    let temperature = req.temperature.unwrap_or(0.8);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad("temperature must be between 0 and 2"));
    }
    let top_p = req.top_p.unwrap_or(0.95);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("top_p must be in (0, 1]"));
    }
    let asked = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_COMPLETION_TOKENS);
    if asked == 0 || asked > MAX_COMPLETION_TOKENS {
        return Err(bad(format!(
            "max_tokens must be 1..{MAX_COMPLETION_TOKENS}"
        )));
    }
    Ok(GenerateParams {
        max_tokens: (asked as usize).min(room),
        temperature,
        top_p,
        // Unseeded requests still vary between calls, as llama-server's default does.
        seed: req.seed.map(|s| s as u32).unwrap_or_else(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b)
        }),
        grammar: None,
    })
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// One generated try and what was decided about it.
struct Try {
    reading: TurnReading,
    steering: f32,
    call: Option<grammar::ParsedCall>,
    decision: Decision,
    spike: bool,
}

impl Guard {
    /// Answers a chat request with the wrapped model (native mode). `live` sees the
    /// answer's text as it is written when nothing can withhold it (no tools offered);
    /// otherwise the turn is decided first and the caller sends it afterwards.
    pub fn chat(
        &mut self,
        req: &ChatRequest,
        live: &mut dyn FnMut(Progress<'_>),
    ) -> Result<ChatAnswer, ChatError> {
        let started = Instant::now();
        let ts_start = limbic_audit::now_unix_ms();
        if req.messages.is_empty() || req.messages.len() > MAX_MESSAGES {
            return Err(bad(format!(
                "messages must hold 1..{MAX_MESSAGES} messages"
            )));
        }
        let policy = self.policy();
        let settings = settings(&policy, req)?;
        let mode = tool_mode(req)?;
        let tools = match mode {
            ToolMode::None => Vec::new(),
            _ => req.tools.clone().unwrap_or_default(),
        };
        let turns = prompt::turns(&req.messages, &tools).map_err(bad)?;
        let ask = req.limbic.clone().unwrap_or_default();
        let session = prompt::session_key(ask.session.as_deref(), req.user.as_deref(), &turns);
        if session.len() > MAX_NAME {
            return Err(bad(format!("the session name is longer than {MAX_NAME}")));
        }
        let grammar = match &mode {
            ToolMode::None => None,
            ToolMode::Auto | ToolMode::Required(_) => {
                let chosen: Vec<usize> = match &mode {
                    ToolMode::Required(only) => only.clone(),
                    _ => (0..tools.len()).collect(),
                };
                let specs: Vec<ToolSpec<'_>> = chosen
                    .iter()
                    .map(|&i| ToolSpec {
                        name: &tools[i].function.name,
                        parameters: tools[i].function.parameters.as_ref(),
                    })
                    .collect();
                let text = grammar::tool_call_grammar(&specs).map_err(|e| bad(e.to_string()))?;
                Some(Grammar {
                    text,
                    lazy_trigger: matches!(mode, ToolMode::Auto)
                        .then(|| "[\\s\\S]*?(<tool_call>)[\\s\\S]*".to_string()),
                })
            }
        };
        let stops = req.stop.as_ref().map(|s| s.sequences()).unwrap_or_default();

        let model_name = self.model_name().to_string();
        let scorer = self.scorer_mut().ok_or_else(|| {
            ChatError::Unavailable("the model is not available; native mode cannot answer".into())
        })?;
        let model = scorer.model().clone();
        let prompt_tokens = prompt::tokens(&model, &turns)?;
        let engine_id = format!("chat:{session}");
        let window = scorer.engine().session_window();
        let full: Vec<i32> = model
            .bos_token()
            .into_iter()
            .chain(prompt_tokens.iter().copied())
            .collect();
        if full.len() + 1 >= window {
            return Err(ChatError::ContextExceeded(format!(
                "the request's {} prompt tokens exceed the context available per session ({window})",
                full.len()
            )));
        }
        let mut params = generation_params(req, window - full.len())?;
        params.grammar = grammar;

        // Reuse the session's KV cache up to where it still matches the conversation.
        let common = scorer
            .engine()
            .session_tokens(&engine_id)
            .map(|held| held.iter().zip(&full).take_while(|(a, b)| a == b).count())
            .unwrap_or(0);
        let pinned = usize::from(model.bos_token().is_some());
        // The last prompt token is always decoded again: its logits start the answer.
        let keep = common.min(full.len() - 1);
        if keep < pinned || scorer.engine().session_tokens(&engine_id).is_none() {
            scorer.engine_mut().open_session(&engine_id, &[])?;
        } else {
            scorer.engine_mut().rollback(&engine_id, keep)?;
        }
        let from = if keep < pinned { pinned } else { keep };
        let mut new_prompt: &[i32] = &full[from..];

        let step_index = self.number_step(&session)?;
        let scorer = self
            .scorer_mut()
            .ok_or_else(|| ChatError::Unavailable("the model is not available".into()))?;
        live(Progress::Accepted);
        let max_tries = 1 + settings.native.max_tries as usize;
        let mut tries: Vec<Try> = Vec::new();
        let mut live_ok = matches!(mode, ToolMode::None);
        loop {
            let n = tries.len();
            let steer = settings.steer_always || n > 0;
            let strength = if steer {
                settings.native.steer_strength
            } else {
                0.0
            };
            let vectors = if steer && strength > 0.0 {
                Some(scorer.steering_vectors(
                    &settings.native.toward,
                    &settings.native.away,
                    strength,
                    &settings.native.steer_layers,
                )?)
            } else {
                None
            };
            if n > 0 {
                // Roll the turn back to just before the prompt's last token.
                scorer.engine_mut().rollback(&engine_id, full.len() - 1)?;
                new_prompt = &full[full.len() - 1..];
            }
            let mut text_so_far = String::new();
            let reading = scorer.generate_turn(
                &engine_id,
                new_prompt,
                &params,
                vectors.as_deref(),
                &mut |piece| {
                    text_so_far.push_str(piece);
                    if live_ok {
                        live(Progress::Text(piece));
                    }
                    if stops.iter().any(|s| text_so_far.ends_with(s.as_str())) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )?;
            live_ok = false;
            let call = grammar::parse_tool_call(&reading.text);
            let (stress, scores) = &reading.corrected;
            let spike = scorer.peek_track(&session, *stress)?.spike;
            let decision = decide(
                &policy,
                &settings,
                call.as_ref(),
                &tools,
                *stress,
                spike,
                scores,
                &reading.text,
            );
            let again = decision.kind == DecisionKind::Reroute
                && settings.native.reroute == NativeReroute::Steer
                && n + 1 < max_tries;
            tries.push(Try {
                reading,
                steering: strength,
                call,
                decision,
                spike,
            });
            if !again {
                break;
            }
        }
        let last_stress = tries.last().map(|t| t.reading.corrected.0).unwrap_or(0.0);
        let track = scorer.commit_track(&session, last_stress)?;
        self.finish_turn(
            req,
            &session,
            step_index,
            tries,
            &policy,
            &settings,
            track.spike,
            started,
            ts_start,
            &model_name,
            prompt_tokens.len(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_turn(
        &mut self,
        req: &ChatRequest,
        session: &str,
        first_step: u64,
        mut tries: Vec<Try>,
        policy: &Arc<Policy>,
        settings: &TurnSettings,
        spike: bool,
        started: Instant,
        ts_start: i64,
        model_name: &str,
        prompt_len: usize,
    ) -> Result<ChatAnswer, ChatError> {
        let n = tries.len();
        // Rerouted on the last try: withheld (veto) or held for a human (confirm).
        if let Some(last) = tries.last_mut() {
            if last.decision.kind == DecisionKind::Reroute {
                let steered = settings.native.reroute == NativeReroute::Steer && n > 1;
                let why = if steered {
                    format!(
                        "still rerouted after {} steered regeneration(s): {}",
                        n - 1,
                        last.decision.reason
                    )
                } else {
                    last.decision.reason.clone()
                };
                last.decision = match (settings.native.exhausted, steered) {
                    (NativeExhausted::Confirm, _) => Decision {
                        kind: DecisionKind::Reroute,
                        reroute: Some(Reroute::Confirm),
                        reason: why,
                        ..last.decision.clone()
                    },
                    (NativeExhausted::Veto, true) => Decision {
                        kind: DecisionKind::Veto,
                        reroute: None,
                        rule_id: RULE_EXHAUSTED.into(),
                        reason: why,
                        ..last.decision.clone()
                    },
                    (NativeExhausted::Veto, false) => Decision {
                        kind: DecisionKind::Veto,
                        reroute: None,
                        ..last.decision.clone()
                    },
                };
            }
        }
        let mut reports = Vec::with_capacity(n);
        for (k, t) in tries.iter().enumerate() {
            let final_try = k + 1 == n;
            let (tool, args) = match &t.call {
                Some(c) => (c.name.clone(), c.arguments.clone()),
                None => (MESSAGE_TOOL.to_string(), serde_json::Value::Null),
            };
            let step = first_step + k as u64;
            let note = format!(
                "native turn, try {} of {n}{}; stress as tapped {:.2}, steering-corrected {:.2}{}",
                k + 1,
                if t.steering > 0.0 {
                    format!(", steered {:.1} sigma toward calm", t.steering)
                } else {
                    String::new()
                },
                t.reading.raw.0,
                t.reading.corrected.0,
                if final_try {
                    ""
                } else {
                    "; rerouted, rolled back and regenerated"
                },
            );
            let answer = StepAnswer {
                session: session.to_string(),
                step,
                decision: t.decision.kind,
                reroute: t.decision.reroute.clone(),
                stress: t.reading.corrected.0,
                spike: if final_try { spike } else { t.spike },
                scores: t.reading.corrected.1.iter().cloned().collect(),
                peaks: BTreeMap::new(),
                rule: t.decision.rule_id.clone(),
                reason: t.decision.reason.clone(),
                classes: t.decision.classes.clone(),
                latency_ms: started.elapsed().as_secs_f64() * 1e3,
                audit_ms: 0.0,
                unscored: None,
            };
            let input = StepRequest {
                session: session.to_string(),
                step: Some(step),
                text: t.reading.text.clone(),
                action: Action { tool, args },
            };
            let delivery = if final_try {
                Delivery::Delivered
            } else {
                Delivery::Regenerated
            };
            self.record(
                &input,
                &answer,
                &t.decision,
                policy,
                ts_start,
                t.reading.corrected.0,
                (delivery, Some(note)),
            )?;
            reports.push(TryReport {
                steering: t.steering,
                stress_raw: t.reading.raw.0,
                scores_raw: t.reading.raw.1.iter().cloned().collect(),
                stress: t.reading.corrected.0,
                scores: t.reading.corrected.1.iter().cloned().collect(),
                decision: t.decision.kind.as_str().into(),
                rule: t.decision.rule_id.clone(),
                tool: t.call.as_ref().map(|c| c.name.clone()),
                tokens: t.reading.tokens,
            });
        }
        self.set_next_step(session, first_step + n as u64);
        let last = tries
            .pop()
            .ok_or_else(|| ChatError::Internal(anyhow::anyhow!("no try was generated")))?;
        let withheld = last.call.is_some()
            && matches!(
                last.decision.kind,
                DecisionKind::Veto | DecisionKind::Reroute
            );
        let (content, tool_call, finish_reason) = match (&last.call, withheld) {
            (Some(call), true) => {
                let text = match last.decision.kind {
                    DecisionKind::Reroute => format!(
                        "[limbic] The tool call `{}` needs a human's confirmation before it runs: {} (rule {}, stress {:.2}).",
                        call.name, last.decision.reason, last.decision.rule_id, last.reading.corrected.0
                    ),
                    _ => format!(
                        "[limbic] The tool call `{}` was withheld: {} (rule {}, stress {:.2}).",
                        call.name, last.decision.reason, last.decision.rule_id, last.reading.corrected.0
                    ),
                };
                (Some(text), None, "stop")
            }
            (Some(call), false) => (
                Some(call.content.clone()).filter(|t| !t.is_empty()),
                Some(ToolCall {
                    id: random_id("call_"),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: call.name.clone(),
                        arguments: call.arguments_text.clone(),
                    },
                }),
                "tool_calls",
            ),
            // An opened call the token limit cut short is never passed on as text.
            (None, _) => (
                Some(
                    grammar::text_before_call(&last.reading.text)
                        .unwrap_or(&last.reading.text)
                        .to_string(),
                ),
                None,
                if last.reading.stop == StopReason::MaxTokens
                    || last.reading.stop == StopReason::ContextFull
                {
                    "length"
                } else {
                    "stop"
                },
            ),
        };
        let completion_tokens = last.reading.tokens;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(ChatAnswer {
            latency_ms,
            id: random_id("chatcmpl-"),
            created: (limbic_audit::now_unix_ms().max(0) / 1000) as u64,
            model: req.model.clone().unwrap_or_else(|| model_name.to_string()),
            content,
            tool_call,
            finish_reason,
            prompt_tokens: prompt_len,
            completion_tokens,
            limbic: LimbicReport {
                session: session.to_string(),
                step: first_step + n as u64 - 1,
                decision: last.decision.kind.as_str().into(),
                reroute: last
                    .decision
                    .reroute
                    .as_ref()
                    .map(|r| r.kind().as_str().to_string()),
                rule: last.decision.rule_id.clone(),
                reason: last.decision.reason.clone(),
                stress: last.reading.corrected.0,
                spike,
                scores: last.reading.corrected.1.iter().cloned().collect(),
                prompt_stress: last.reading.prompt.as_ref().map(|p| p.0).unwrap_or(0.0),
                tries: n,
                try_reports: reports,
                withheld_tool_call: withheld,
            },
        })
    }
}

/// The policy's decision on one try: a tool call is decided on its stress and on what it
/// does, exactly as an observed step; a turn without a call only answers in words.
#[allow(clippy::too_many_arguments)]
fn decide(
    policy: &Policy,
    settings: &TurnSettings,
    call: Option<&grammar::ParsedCall>,
    tools: &[super::wire::ToolDef],
    stress: f32,
    spike: bool,
    scores: &[(String, f32)],
    text: &str,
) -> Decision {
    let own = |kind: DecisionKind, rule: &str, reason: String| Decision {
        kind,
        reroute: None,
        rule_id: rule.to_string(),
        reason,
        classes: Vec::new(),
        risk: RiskLevel::Low,
    };
    let Some(call) = call else {
        return own(
            DecisionKind::Allow,
            RULE_NO_TOOL,
            "the turn calls no tool".into(),
        );
    };
    let schema = tools
        .iter()
        .find(|t| t.function.name == call.name)
        .map(|t| t.function.parameters.as_ref());
    match schema {
        None => {
            return own(
                DecisionKind::Veto,
                RULE_BAD_CALL,
                format!(
                    "the model called {:?}, which is not an offered tool",
                    call.name
                ),
            )
        }
        Some(schema) => {
            if let Err(e) = grammar::validate_args(schema, &call.arguments) {
                return own(
                    DecisionKind::Veto,
                    RULE_BAD_CALL,
                    format!("the arguments do not match the tool's schema: {e}"),
                );
            }
        }
    }
    if let Some(limit) = settings.veto_above.filter(|l| stress >= *l) {
        return own(
            DecisionKind::Veto,
            RULE_VETO_ABOVE,
            format!("stress {stress:.2} is at or above the request's veto_above {limit:.2}"),
        );
    }
    let named: Vec<(&str, f32)> = scores.iter().map(|(n, z)| (n.as_str(), *z)).collect();
    let view = StepView::new(&call.name, &call.arguments, stress)
        .with_spike(spike)
        .with_scores(&named)
        .with_text(Some(text));
    policy.decide(&view)
}
