//! The wire contract: what an agent step looks like on the way in and what limbic answers.
//!
//! Every entry point speaks these types — `limbic check` (JSON Lines), `POST /v1/steps`,
//! the hook client, `limbic demo` and `/metrics` — so a field or a decision kind cannot be
//! added in one place and silently dropped in another. The decision is the policy crate's
//! typed [`DecisionKind`] from policy to wire.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use limbic_policy::{DecisionKind, Reroute};
use serde::{Deserialize, Serialize};

/// Where `limbic serve` listens by default (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7370";
/// The port of [`DEFAULT_ADDR`]; used when an address names no port.
pub const DEFAULT_PORT: u16 = 7370;
/// The route that takes one step and answers one decision.
pub const STEPS_PATH: &str = "/v1/steps";

/// The step text used when an agent sends no words (or only whitespace): the action is
/// still judged, and stress reads as that of a neutral placeholder, not as a failure.
pub const NO_WORDS: &str = "(no words)";

/// Request header with the daemon's token: `Authorization: Bearer <token>` (as llama-server's
/// `--api-key`, so OpenAI clients pass the token as their API key). Every route but
/// [`HEALTH_PATH`] requires it; the token is in `$LIMBIC_HOME/token` (see `auth`).
pub const AUTH_HEADER: &str = "authorization";
/// The one route open without the token (it reveals no step and takes none).
pub const HEALTH_PATH: &str = "/health";
/// Request header with a random nonce (16..=128 of `[A-Za-z0-9_-]`); the daemon answers an
/// authenticated request that carries one with [`PROOF_HEADER`].
pub const NONCE_HEADER: &str = "x-limbic-nonce";
/// Response header: hex `HMAC-SHA256(token, nonce ‖ response body)`, the daemon's proof that
/// it knows the token (a process squatting on its port cannot forge it).
pub const PROOF_HEADER: &str = "x-limbic-proof";

/// Request header: the client's clock (Unix milliseconds) for a signed request.
pub const TIME_HEADER: &str = "x-limbic-time";
/// Request header: hex `HMAC-SHA256(token, "limbic-request/v1\n" ‖ time ‖ "\n" ‖ nonce ‖ "\n"
/// ‖ method ‖ " " ‖ path ‖ "\n" ‖ body)` — the token proven without sending it (the hook
/// authenticates this way, so a squatter on the port never learns the token). Accepted
/// instead of `Authorization` when [`TIME_HEADER`] is within a minute of the daemon's
/// clock and the [`NONCE_HEADER`] was not seen before.
pub const SIGNATURE_HEADER: &str = "x-limbic-signature";

/// Request header with the milliseconds the client will still wait for an answer.
pub const DEADLINE_HEADER: &str = "x-limbic-deadline-ms";
/// The deadline of a request that names none.
pub const DEFAULT_DEADLINE_MS: u64 = 30_000;
/// Longest deadline honoured.
pub const MAX_DEADLINE_MS: u64 = 120_000;

/// Largest accepted step text (bytes); longer steps are refused, not truncated.
pub const MAX_STEP_TEXT: usize = 32 * 1024;
/// Largest accepted action arguments (bytes of JSON).
pub const MAX_ACTION_ARGS: usize = 64 * 1024;
/// Largest session id and tool name (bytes).
pub const MAX_NAME: usize = 256;
/// Request bodies above this are refused before parsing.
pub const MAX_BODY: usize = MAX_STEP_TEXT + MAX_ACTION_ARGS + 4096;

/// Where a daemon listens or is reached: the syntaxes `limbic serve --addr`, `LIMBIC_ADDR`
/// and `limbic hook --addr` all accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonAddr {
    /// `host:port` (a missing port is [`DEFAULT_PORT`]), for connecting, binding and `Host`.
    Tcp(String),
    /// A Unix socket path.
    Unix(std::path::PathBuf),
}

impl DaemonAddr {
    /// Parses `host[:port]`, `http://host[:port][/...]` or `unix:/path` (also `unix:///path`).
    /// The error is a sentence for the user.
    pub fn parse(addr: &str) -> std::result::Result<DaemonAddr, String> {
        let addr = addr.trim();
        if let Some(path) = addr.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("`unix:` needs a socket path, e.g. unix:/run/limbic.sock".into());
            }
            return Ok(DaemonAddr::Unix(std::path::PathBuf::from(path)));
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
        if authority.contains('@') || authority.chars().any(|c| c.is_whitespace()) {
            return Err(format!("`{authority}` is not a host:port"));
        }
        let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
        Ok(DaemonAddr::Tcp(if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{DEFAULT_PORT}")
        }))
    }
}

/// Every decision kind, for front ends that list or count them (`/metrics`). The match in
/// `all_kinds_listed` stops compiling when the policy crate gains a kind, so a new kind
/// cannot silently drop out of a list.
pub const DECISION_KINDS: [DecisionKind; 4] = [
    DecisionKind::Allow,
    DecisionKind::Warn,
    DecisionKind::Reroute,
    DecisionKind::Veto,
];

#[allow(dead_code)]
const fn all_kinds_listed(kind: DecisionKind) -> usize {
    // Keep in step with DECISION_KINDS.
    match kind {
        DecisionKind::Allow => 0,
        DecisionKind::Warn => 1,
        DecisionKind::Reroute => 2,
        DecisionKind::Veto => 3,
    }
}

/// One agent step: the agent's own words and the tool call it proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRequest {
    pub session: String,
    /// The step's number in its session; numbered automatically when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    pub text: String,
    pub action: Action,
}

/// The tool call a step proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub tool: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

impl Action {
    /// The tool and its arguments as one line of text (what the model reads as context).
    pub fn text(&self) -> String {
        match &self.args {
            serde_json::Value::Null => self.tool.clone(),
            args => format!("{} {}", self.tool, args),
        }
    }
}

impl StepRequest {
    /// Checks the size limits and required fields; the error says which and why.
    pub fn validate(&self) -> Result<()> {
        if self.session.trim().is_empty() || self.session.len() > MAX_NAME {
            bail!("session must be 1..{MAX_NAME} characters");
        }
        if self.text.len() > MAX_STEP_TEXT {
            bail!(
                "step text is {} bytes; the limit is {MAX_STEP_TEXT}",
                self.text.len()
            );
        }
        if self.action.tool.trim().is_empty() || self.action.tool.len() > MAX_NAME {
            bail!("action.tool must be 1..{MAX_NAME} characters");
        }
        let args_len = self.action.args.to_string().len();
        if args_len > MAX_ACTION_ARGS {
            bail!("action.args is {args_len} bytes of JSON; the limit is {MAX_ACTION_ARGS}");
        }
        Ok(())
    }
}

/// limbic's answer for one step (also one `limbic check` output line). It is returned
/// only after the audit row that records it is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAnswer {
    pub session: String,
    pub step: u64,
    pub decision: DecisionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reroute: Option<Reroute>,
    /// Stress signature in neutral sigmas (0 when the step could not be scored).
    pub stress: f32,
    pub spike: bool,
    #[serde(default)]
    pub scores: BTreeMap<String, f32>,
    #[serde(default)]
    pub peaks: BTreeMap<String, f32>,
    pub rule: String,
    pub reason: String,
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub latency_ms: f64,
    /// Of `latency_ms`, the time spent committing the audit rows.
    #[serde(default)]
    pub audit_ms: f64,
    /// Why the probes could not score this step (the fail mode decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored: Option<String>,
}

/// The body of every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(text: &str, args: serde_json::Value) -> StepRequest {
        StepRequest {
            session: "s".into(),
            step: None,
            text: text.into(),
            action: Action {
                tool: "Bash".into(),
                args,
            },
        }
    }

    #[test]
    fn limits_are_enforced_with_reasons() {
        assert!(step("ok", json!({})).validate().is_ok());
        let long = "x".repeat(MAX_STEP_TEXT + 1);
        let err = step(&long, json!({})).validate().unwrap_err().to_string();
        assert!(err.contains("limit"), "{err}");
        let big = json!({ "content": "y".repeat(MAX_ACTION_ARGS) });
        assert!(step("ok", big).validate().is_err());
        let mut no_session = step("ok", json!({}));
        no_session.session = "  ".into();
        assert!(no_session.validate().is_err());
    }

    #[test]
    fn every_decision_kind_round_trips_on_the_wire() {
        for (i, kind) in DECISION_KINDS.into_iter().enumerate() {
            assert_eq!(all_kinds_listed(kind), i);
            let answer = StepAnswer {
                session: "s".into(),
                step: 1,
                decision: kind,
                reroute: None,
                stress: 1.5,
                spike: false,
                scores: BTreeMap::new(),
                peaks: BTreeMap::new(),
                rule: "r".into(),
                reason: "why".into(),
                classes: vec![],
                latency_ms: 1.0,
                audit_ms: 0.1,
                unscored: None,
            };
            let wire = serde_json::to_value(&answer).unwrap();
            assert_eq!(wire["decision"], json!(kind.as_str()));
            let back: StepAnswer = serde_json::from_value(wire).unwrap();
            assert_eq!(back, answer);
        }
    }

    #[test]
    fn unknown_decision_strings_are_refused() {
        let wire = json!({"session":"s","step":1,"decision":"maybe","stress":0.0,"spike":false,
                          "rule":"r","reason":"x"});
        assert!(serde_json::from_value::<StepAnswer>(wire).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn seed() -> String {
            json!({"session": "s", "step": 3, "text": "Forcing it.",
                   "action": {"tool": "Bash", "args": {"command": "git push -f"}}})
            .to_string()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Outside input (a `POST /v1/steps` body, a `check` line) never panics the
            /// parser or the validation.
            #[test]
            fn any_bytes_as_a_step_never_panic(raw in prop::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(step) = serde_json::from_slice::<StepRequest>(&raw) {
                    let _ = step.validate();
                    let _ = step.action.text();
                }
                let _ = serde_json::from_slice::<StepAnswer>(&raw);
            }

            #[test]
            fn mutated_steps_never_panic(
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut raw = seed().into_bytes();
                for (at, value) in edits {
                    let i = at.index(raw.len());
                    raw[i] = value;
                }
                raw.truncate(cut.index(raw.len() + 1));
                if let Ok(step) = serde_json::from_slice::<StepRequest>(&raw) {
                    let _ = step.validate();
                }
            }

            #[test]
            fn any_address_and_auth_input_never_panic(text in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
                let _ = DaemonAddr::parse(&text);
                let token = "k".repeat(40);
                let _ = crate::auth::bearer_matches(Some(&text), &token);
                let _ = crate::auth::nonce_is_valid(&text);
                let _ = crate::auth::proof_matches(&token, &text, &body, &text);
            }
        }
    }
}
