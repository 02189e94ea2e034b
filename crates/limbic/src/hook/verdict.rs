//! From the daemon's answer (or the lack of one) to an agent-independent verdict.
use super::*;

// ---------------------------------------------------------------------------
// Decisions and the agents' answers
// ---------------------------------------------------------------------------

/// What limbic concluded about the step. Strings say why, for the agent and the user.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
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

pub(super) fn outcome_of(answer: StepAnswer) -> Outcome {
    let why = explain(&answer);
    match (answer.decision, answer.reroute) {
        (DecisionKind::Allow, _) => Outcome::Allow,
        (DecisionKind::Warn, _) => Outcome::Warn(why),
        (DecisionKind::Veto, _) => Outcome::Veto(why),
        (DecisionKind::Reroute, Some(Reroute::Substitute { suggestion })) => {
            Outcome::Substitute { why, suggestion }
        }
        (DecisionKind::Reroute, Some(Reroute::Pause)) => Outcome::Pause(why),
        // A reroute without a kind still means "not as asked": a human decides.
        (DecisionKind::Reroute, Some(Reroute::Confirm) | None) => Outcome::Confirm(why),
    }
}

pub(super) fn explain(answer: &StepAnswer) -> String {
    let reason = Some(answer.reason.as_str())
        .map(|r| r.trim().trim_end_matches('.'))
        .filter(|r| !r.is_empty())
        .unwrap_or("no reason given");
    let mut facts = Vec::new();
    if let Some(rule) = Some(answer.rule.as_str()).filter(|r| !r.trim().is_empty()) {
        facts.push(format!("rule `{rule}`"));
    }
    // An unscored step's stress is a placeholder, not a reading.
    if answer.unscored.is_none() {
        facts.push(format!("stress {:.2}", answer.stress));
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
pub(super) enum Verdict {
    Proceed(Option<String>),
    Ask(String),
    Block(String),
}

pub(super) fn verdict(outcome: Outcome, fail_open: bool) -> Verdict {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_answers_become_outcomes() {
        let answer = |decision: &str, reroute: Value| -> StepAnswer {
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
        let minimal: StepAnswer = serde_json::from_str(
            r#"{"session":"s","step":1,"decision":"veto","stress":0.0,"spike":false,
                "rule":"","reason":"","unscored":"no model"}"#,
        )
        .unwrap();
        assert_eq!(outcome_of(minimal), Outcome::Veto("no reason given".into()));
        assert!(serde_json::from_str::<StepAnswer>(r#"{"decision":"maybe"}"#).is_err());
    }
}
