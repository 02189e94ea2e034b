//! Each agent's own answer format for a verdict.
use super::*;

/// What the hook process prints and returns.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HookAnswer {
    /// One JSON object for stdout.
    pub(super) stdout: Value,
    pub(super) stderr: Option<String>,
    pub(super) exit: u8,
}

/// Exit code that makes Claude Code and Codex block a tool call (stderr is the reason).
pub(super) const EXIT_BLOCK: u8 = 2;

pub(super) fn render(agent: Agent, verdict: Verdict) -> HookAnswer {
    match agent {
        Agent::ClaudeCode => render_claude(verdict),
        Agent::Codex => render_codex(verdict),
        Agent::Gemini => render_gemini(verdict),
        Agent::Cursor => render_cursor(verdict),
    }
}

pub(super) fn proceed(stdout: Value) -> HookAnswer {
    HookAnswer {
        stdout,
        stderr: None,
        exit: 0,
    }
}

/// The Claude Code / Codex deny: JSON for agents that read stdout, and exit 2 with the
/// reason on stderr, which blocks even where the JSON is not read.
pub(super) fn pre_tool_use_deny(reason: String) -> HookAnswer {
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

pub(super) fn render_claude(verdict: Verdict) -> HookAnswer {
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

pub(super) fn render_codex(verdict: Verdict) -> HookAnswer {
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

pub(super) fn render_gemini(verdict: Verdict) -> HookAnswer {
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

pub(super) fn render_cursor(verdict: Verdict) -> HookAnswer {
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
}
