//! What the policy is asked about (`StepView`) and what it answers (`Decision`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One agent step as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    /// Tool name as the agent framework reports it (`Bash`, `Edit`, `actuator`...).
    pub tool: &'a str,
    /// The tool call's arguments, as JSON.
    pub args: &'a serde_json::Value,
    /// Combined stress signature for the step, in neutral sigmas: 0 is the neutral
    /// calibration corpus read as agent sessions, 1 is one standard deviation of it.
    pub stress: f32,
    /// Whether the session's stress tracker reports a spike (a sustained or sudden
    /// rise, possibly held over from earlier steps). For `or_spike` rules it counts
    /// only when `stress` is at least the policy's `spike_floor`, if it has one.
    pub spike: bool,
    /// Per-emotion calibrated z-scores (mean over the step), by emotion name.
    pub scores: &'a [(&'a str, f32)],
    /// An optional learned action-risk score for the step (for example a probe on
    /// the action's tokens). `None` (or a non-finite value) is ignored. The
    /// policy maps it to a [`RiskLevel`] with its `action_risk_medium` /
    /// `action_risk_high` / `action_risk_critical` thresholds and rules may test
    /// it directly with `when.action_risk_at_least`.
    pub action_risk: Option<f32>,
    /// The agent's own words for this step (what it said before acting), if the
    /// caller has them. Matchers' `text_not` patterns read it, so a step that
    /// says "its cases were ported to test_lexer.c" can lower a deletion's
    /// class; `None` reads as empty text.
    pub text: Option<&'a str>,
}

impl<'a> StepView<'a> {
    /// A step with no spike, no per-emotion scores and no learned action risk;
    /// set the other fields with struct update syntax or the `with_*` helpers.
    pub fn new(tool: &'a str, args: &'a serde_json::Value, stress: f32) -> Self {
        StepView {
            tool,
            args,
            stress,
            spike: false,
            scores: &[],
            action_risk: None,
            text: None,
        }
    }

    pub fn with_spike(self, spike: bool) -> Self {
        StepView { spike, ..self }
    }

    pub fn with_scores(self, scores: &'a [(&'a str, f32)]) -> Self {
        StepView { scores, ..self }
    }

    pub fn with_text(self, text: Option<&'a str>) -> Self {
        StepView { text, ..self }
    }

    pub fn with_action_risk(self, action_risk: Option<f32>) -> Self {
        StepView {
            action_risk,
            ..self
        }
    }
}

/// How much harm an action can do if it is the wrong action, independent of
/// stress. Each action class has one (`risk = "..."` in the policy); an action's
/// risk is the highest of its classes' (and of the learned score's level).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// Reads and routine, easily undone work.
    #[default]
    Low,
    /// Changes state in a way that is usually recoverable.
    Medium,
    /// Irreversible or shared-state changes that are sometimes right
    /// (deletions, history rewrites, money, hardware, production).
    High,
    /// Integrity or safety corner cuts that are almost never right for an agent
    /// to do on its own (bypassing checks, skipping or weakening failing tests,
    /// hard-coding expected results, disabling interlocks, force-pushing main).
    Critical,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 4] = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four possible outcomes, ordered from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    /// Let the action run.
    Allow,
    /// Let the action run, but record a warning.
    Warn,
    /// Do not run the action as asked; do something safer instead (see [`Reroute`]).
    Reroute,
    /// Refuse the action.
    Veto,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Warn => "warn",
            DecisionKind::Reroute => "reroute",
            DecisionKind::Veto => "veto",
        }
    }

    /// True when the action must not run as requested.
    pub fn blocks_action(self) -> bool {
        matches!(self, DecisionKind::Reroute | DecisionKind::Veto)
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a rerouted action is handled, as written in the policy (`reroute = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RerouteKind {
    /// Ask a human to confirm before running the action.
    Confirm,
    /// Offer a safer substitute (dry run, `--force-with-lease`...).
    Substitute,
    /// Pause the agent until stress comes down or a human resumes it.
    Pause,
}

impl RerouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RerouteKind::Confirm => "confirm",
            RerouteKind::Substitute => "substitute",
            RerouteKind::Pause => "pause",
        }
    }
}

impl fmt::Display for RerouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A concrete reroute attached to a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Reroute {
    Confirm,
    /// `suggestion` is the policy's substitute template, filled in for this step.
    Substitute {
        suggestion: String,
    },
    Pause,
}

impl Reroute {
    pub fn kind(&self) -> RerouteKind {
        match self {
            Reroute::Confirm => RerouteKind::Confirm,
            Reroute::Substitute { .. } => RerouteKind::Substitute,
            Reroute::Pause => RerouteKind::Pause,
        }
    }
}

/// The policy's answer for one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub kind: DecisionKind,
    /// Present exactly when `kind` is [`DecisionKind::Reroute`].
    pub reroute: Option<Reroute>,
    /// Id of the rule that decided; `default` when no rule matched, and
    /// `fail_mode.closed` / `fail_mode.open` for [`crate::Policy::decide_unscored`].
    pub rule_id: String,
    /// Human-readable explanation (the rule's reason template, filled in).
    pub reason: String,
    /// Every action class the step matched, in policy order.
    pub classes: Vec<String>,
    /// The action's risk level: the highest of its classes' levels and of the
    /// learned action-risk score's level (low when nothing matched).
    #[serde(default)]
    pub risk: RiskLevel,
}
