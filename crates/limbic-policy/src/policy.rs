//! The compiled policy: classification plus ordered rules.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::args::{field_text, flatten};
use crate::classify::{ActionClass, ActionText};
use crate::compile::{canonical_source, compile, shape_error};
use crate::decision::{Decision, DecisionKind, Reroute, RiskLevel, StepView};
use crate::error::PolicyError;
use crate::native::NativeSettings;
use crate::spec::{FailMode, PolicySpec};
use crate::template::{RenderContext, Template};
use crate::words::ToolGroups;

/// The shipped default policy (`policies/default.toml` in this crate; the
/// user-facing copy is `firmware-configs/policy.default.toml`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policies/default.toml");
/// Stricter policy for physical devices (`policies/edge-robot.toml`).
pub const EDGE_ROBOT_POLICY_TOML: &str = include_str!("../policies/edge-robot.toml");
/// Policy for a coding agent on a workstation (`policies/workstation.toml`).
pub const WORKSTATION_POLICY_TOML: &str = include_str!("../policies/workstation.toml");

/// Built-in policies by name, for `Policy::builtin`.
pub const BUILTIN_POLICIES: &[(&str, &str)] = &[
    ("default", DEFAULT_POLICY_TOML),
    ("edge-robot", EDGE_ROBOT_POLICY_TOML),
    ("workstation", WORKSTATION_POLICY_TOML),
];

/// Rule id reported when no rule matched.
pub const DEFAULT_RULE_ID: &str = "default";
/// Rule id reported by `decide_unscored` under `fail_mode = "closed"`.
pub const FAIL_CLOSED_RULE_ID: &str = "fail_mode.closed";
/// Rule id reported by `decide_unscored` under `fail_mode = "open"`.
pub const FAIL_OPEN_RULE_ID: &str = "fail_mode.open";

/// Threshold name: the least stress a step needs for `or_spike` to count its session's spike.
pub const SPIKE_FLOOR: &str = "spike_floor";

/// Threshold names that map a learned action-risk score ([`StepView::action_risk`])
/// to a risk level: a score at or above the threshold raises the action's risk to
/// at least that level. A policy that leaves one out never raises to that level.
pub const ACTION_RISK_THRESHOLDS: &[(&str, RiskLevel)] = &[
    ("action_risk_medium", RiskLevel::Medium),
    ("action_risk_high", RiskLevel::High),
    ("action_risk_critical", RiskLevel::Critical),
];

/// A loaded, validated policy. Cheap to share behind an `Arc`; deciding never
/// mutates it.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) origin: String,
    pub(crate) source: String,
    pub(crate) hash: String,
    pub(crate) fail_mode: FailMode,
    pub(crate) thresholds: BTreeMap<String, f32>,
    pub(crate) groups: ToolGroups,
    pub(crate) classes: Vec<ActionClass>,
    pub(crate) read_only_class: Option<usize>,
    /// The `[unknown]` class (last in `classes`): no class matched and no tool
    /// group knows the tool.
    pub(crate) unknown_class: Option<usize>,
    /// Classes whose actions still run when stress is unavailable.
    pub(crate) fail_safe_classes: Vec<usize>,
    /// `ACTION_RISK_THRESHOLDS` the policy defines, as (level, threshold).
    pub(crate) action_risk_levels: Vec<(RiskLevel, f32)>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) default: Outcome,
    pub(crate) native: NativeSettings,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) description: Option<String>,
    pub(crate) when: Condition,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Condition {
    /// Indices into `Policy::classes`; `None` means "any action".
    pub(crate) classes: Option<Vec<usize>>,
    pub(crate) except_classes: Vec<usize>,
    pub(crate) read_only: Option<bool>,
    /// The action's risk level is at least this.
    pub(crate) risk_at_least: Option<RiskLevel>,
    /// The action's risk level is below this.
    pub(crate) risk_below: Option<RiskLevel>,
    /// The learned action-risk score is present, finite and at least this.
    pub(crate) action_risk_at_least: Option<f32>,
    pub(crate) stress_at_least: Option<f32>,
    pub(crate) or_spike: bool,
    /// With `or_spike`, a spike still needs the step itself at least this stressed
    /// (threshold `spike_floor`), so a spike held by hysteresis does not block a calm step.
    pub(crate) spike_floor: f32,
    pub(crate) spike: Option<bool>,
    pub(crate) emotions_all: Vec<(String, f32)>,
    pub(crate) emotions_any: Vec<(String, f32)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) kind: DecisionKind,
    pub(crate) reroute: Option<RerouteOutcome>,
    pub(crate) reason: Template,
}

#[derive(Debug, Clone)]
pub(crate) enum RerouteOutcome {
    Confirm,
    Substitute(Template),
    Pause,
}

/// What made a rule fire, for filling `{class}` and `{emotion}`.
struct Trigger<'s> {
    class: Option<usize>,
    emotion: Option<(&'s str, f32)>,
}

/// What is known about the action before any rule runs.
struct Assessed {
    matched: Vec<bool>,
    read_only: bool,
    risk: RiskLevel,
}

impl Policy {
    /// Parses a policy from TOML text (origin shown in errors as `<string>`).
    pub fn from_toml_str(source: &str) -> Result<Policy, PolicyError> {
        Policy::parse(source, "<string>")
    }

    /// Parses a policy from TOML text; `origin` names where it came from in errors.
    pub fn parse(source: &str, origin: &str) -> Result<Policy, PolicyError> {
        let canonical = canonical_source(source);
        let spec: PolicySpec = match toml::from_str(&canonical) {
            Ok(spec) => spec,
            Err(err) => return Err(shape_error(&canonical, origin, &err)),
        };
        compile(spec, canonical, origin)
    }

    /// Reads and parses a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&source, &path.display().to_string())
    }

    /// The built-in default policy.
    pub fn builtin_default() -> Result<Policy, PolicyError> {
        Policy::builtin("default")
    }

    /// A built-in policy by name (see [`BUILTIN_POLICIES`]).
    pub fn builtin(name: &str) -> Result<Policy, PolicyError> {
        let Some((_, source)) = BUILTIN_POLICIES.iter().find(|(n, _)| *n == name) else {
            return Err(PolicyError::UnknownBuiltin {
                name: name.to_owned(),
                available: BUILTIN_POLICIES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        Policy::parse(source, &format!("<builtin:{name}>"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Where the policy came from: a file path, `<builtin:NAME>` or `<string>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The canonical source text (BOM stripped, CRLF normalised to LF).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Lower-case hex SHA-256 of [`Policy::source`]; recorded with every audit
    /// entry so a decision can be traced to the exact policy text.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }

    /// Native mode's reroute settings (`[native]`).
    pub fn native(&self) -> &NativeSettings {
        &self.native
    }

    /// The named thresholds from the `[thresholds]` table.
    pub fn thresholds(&self) -> &BTreeMap<String, f32> {
        &self.thresholds
    }

    pub fn threshold(&self, name: &str) -> Option<f32> {
        self.thresholds.get(name).copied()
    }

    /// Class ids in policy order.
    pub fn class_ids(&self) -> impl Iterator<Item = &str> {
        self.classes.iter().map(|c| c.id.as_str())
    }

    /// The description of a class, if it exists.
    pub fn class_description(&self, id: &str) -> Option<&str> {
        self.classes
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.description.as_str())
    }

    /// The risk level of a class, if it exists (the `[unknown]` class included).
    pub fn class_risk(&self, id: &str) -> Option<RiskLevel> {
        self.classes.iter().find(|c| c.id == id).map(|c| c.risk)
    }

    /// The id of the class given to unrecognised actions (`[unknown]`), if the
    /// policy has one.
    pub fn unknown_class_id(&self) -> Option<&str> {
        self.unknown_class
            .and_then(|i| self.classes.get(i))
            .map(|c| c.id.as_str())
    }

    /// Names of the tool groups (`[tool_groups]` and `[tool_words]`) a tool
    /// belongs to, by exact name or by a word of its name.
    pub fn tool_groups_of(&self, tool: &str) -> Vec<&str> {
        self.groups
            .names()
            .iter()
            .zip(self.groups.membership(tool))
            .filter(|(_, m)| *m)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The risk level of an action (highest of its classes'), ignoring any
    /// learned score.
    pub fn risk(&self, tool: &str, args: &Value) -> RiskLevel {
        self.assess(tool, args, None, "").risk
    }

    /// Rule ids in evaluation order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// The optional `description` of a rule, if the rule exists and has one.
    pub fn rule_description(&self, id: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| r.description.as_deref())
    }

    /// Every class the action matches, in policy order.
    pub fn classify(&self, tool: &str, args: &Value) -> Vec<String> {
        self.class_names(&self.assess(tool, args, None, "").matched)
    }

    /// True when the action matches the read-only class and nothing else.
    pub fn is_read_only(&self, tool: &str, args: &Value) -> bool {
        self.assess(tool, args, None, "").read_only
    }

    /// Decides one step: the first rule whose conditions all hold wins; if none
    /// does, the `[default]` outcome applies.
    ///
    /// A non-finite stress value means the measurement is broken, so the step is
    /// handled exactly like [`Policy::decide_unscored`].
    pub fn decide(&self, step: &StepView<'_>) -> Decision {
        if !step.stress.is_finite() {
            return self.decide_unscored(step.tool, step.args);
        }
        let assessed = self.assess(
            step.tool,
            step.args,
            step.action_risk,
            step.text.unwrap_or(""),
        );
        for rule in &self.rules {
            if let Some(trigger) = rule.when.evaluate(&assessed, step) {
                return self.render(
                    &rule.outcome,
                    &rule.id,
                    rule.when.stress_at_least,
                    &trigger,
                    step,
                    &assessed,
                );
            }
        }
        let trigger = Trigger {
            class: None,
            emotion: None,
        };
        self.render(
            &self.default,
            DEFAULT_RULE_ID,
            None,
            &trigger,
            step,
            &assessed,
        )
    }

    /// Decides a step when no stress signal is available (model or vector pack
    /// unusable). Actions that only match `fail_closed_allow` classes (by default
    /// the read-only class) are allowed; anything else is vetoed under
    /// `fail_mode = "closed"` and allowed with a warning under `"open"`.
    pub fn decide_unscored(&self, tool: &str, args: &Value) -> Decision {
        let assessed = self.assess(tool, args, None, "");
        let matched = &assessed.matched;
        let classes = self.class_names(matched);
        let listed = if classes.is_empty() {
            "unclassified".to_owned()
        } else {
            classes.join(", ")
        };
        let (rule_id, mode) = match self.fail_mode {
            FailMode::Closed => (FAIL_CLOSED_RULE_ID, "closed"),
            FailMode::Open => (FAIL_OPEN_RULE_ID, "open"),
        };
        let (kind, reason) = if self.fail_safe(matched) {
            (
                DecisionKind::Allow,
                format!(
                    "stress signal unavailable; {tool} action ({listed}) is in \
                     fail_closed_allow, allowed (fail_mode = {mode})"
                ),
            )
        } else {
            match self.fail_mode {
                FailMode::Closed => (
                    DecisionKind::Veto,
                    format!(
                        "stress signal unavailable (model or vector pack unusable); \
                         fail_mode = closed vetoes every action outside fail_closed_allow \
                         ({tool}: {listed})"
                    ),
                ),
                FailMode::Open => (
                    DecisionKind::Warn,
                    format!(
                        "stress signal unavailable (model or vector pack unusable); \
                         fail_mode = open lets this unguarded action run ({tool}: {listed})"
                    ),
                ),
            }
        };
        Decision {
            kind,
            reroute: None,
            rule_id: rule_id.to_owned(),
            reason,
            classes,
            risk: assessed.risk,
        }
    }

    /// Classes, read-only-ness and risk of one action; `learned` is the optional
    /// learned action-risk score.
    fn assess(&self, tool: &str, args: &Value, learned: Option<f32>, text: &str) -> Assessed {
        let action = ActionText::new(tool, args, &self.groups, text);
        let mut matched: Vec<bool> = self.classes.iter().map(|c| c.matches(&action)).collect();
        if let Some(u) = self.unknown_class {
            // Never "safe": an action nobody recognises is a class of its own.
            if action.unlisted() && !matched.iter().any(|&m| m) {
                if let Some(slot) = matched.get_mut(u) {
                    *slot = true;
                }
            }
        }
        let mut risk = self
            .classes
            .iter()
            .zip(&matched)
            .filter(|(_, &m)| m)
            .map(|(c, _)| c.risk)
            .max()
            .unwrap_or(RiskLevel::Low);
        if let Some(score) = learned.filter(|s| s.is_finite()) {
            for &(level, threshold) in &self.action_risk_levels {
                if score >= threshold {
                    risk = risk.max(level);
                }
            }
        }
        let read_only = self.read_only(&matched);
        Assessed {
            matched,
            read_only,
            risk,
        }
    }

    fn class_names(&self, matched: &[bool]) -> Vec<String> {
        self.classes
            .iter()
            .zip(matched)
            .filter(|(_, &m)| m)
            .map(|(c, _)| c.id.clone())
            .collect()
    }

    /// The read-only class matched and no class that can change anything did: low-risk
    /// classes (a read's other readings, what the agent's words say about it) leave a
    /// read a read.
    fn read_only(&self, matched: &[bool]) -> bool {
        let Some(ro) = self.read_only_class else {
            return false;
        };
        matched.get(ro).copied().unwrap_or(false)
            && self
                .classes
                .iter()
                .zip(matched)
                .enumerate()
                .all(|(i, (class, &m))| i == ro || !m || class.risk == RiskLevel::Low)
    }

    /// True when the action matched at least one fail-safe class and nothing else.
    fn fail_safe(&self, matched: &[bool]) -> bool {
        let mut any = false;
        for (i, &m) in matched.iter().enumerate() {
            if m {
                if !self.fail_safe_classes.contains(&i) {
                    return false;
                }
                any = true;
            }
        }
        any
    }

    fn render(
        &self,
        outcome: &Outcome,
        rule_id: &str,
        threshold: Option<f32>,
        trigger: &Trigger<'_>,
        step: &StepView<'_>,
        assessed: &Assessed,
    ) -> Decision {
        let classes = self.class_names(&assessed.matched);
        // The rule's own class, else the riskiest class the action is in.
        let class_index = trigger.class.or_else(|| {
            self.classes
                .iter()
                .enumerate()
                .filter(|(i, _)| assessed.matched.get(*i).copied().unwrap_or(false))
                .max_by_key(|(i, c)| (c.risk, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        });
        let (class, description) = match class_index.and_then(|i| self.classes.get(i)) {
            Some(c) => (c.id.clone(), c.description.clone()),
            None => (
                "unclassified".to_owned(),
                "no action class matched".to_owned(),
            ),
        };
        let classes_text = if classes.is_empty() {
            "none".to_owned()
        } else {
            classes.join(", ")
        };
        let emotion = trigger.emotion.or_else(|| top_emotion(step.scores));
        let (emotion_name, emotion_score) = match emotion {
            Some((name, score)) => (name.to_owned(), format!("{score:.2}")),
            None => ("none".to_owned(), "n/a".to_owned()),
        };
        let command = {
            let cmd = field_text(step.args, &["command".to_owned(), "cmd".to_owned()]);
            if cmd.is_empty() {
                flatten(step.args)
            } else {
                cmd
            }
        };
        let stress = format!("{:.2}", step.stress);
        let threshold = threshold.map_or_else(|| "n/a".to_owned(), |t| format!("{t:.2}"));
        let action_risk = step
            .action_risk
            .filter(|s| s.is_finite())
            .map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2}"));
        let ctx = RenderContext {
            class: &class,
            description: &description,
            risk: assessed.risk.as_str(),
            action_risk: &action_risk,
            classes: &classes_text,
            stress: &stress,
            threshold: &threshold,
            emotion: &emotion_name,
            emotion_score: &emotion_score,
            spike: if step.spike { "yes" } else { "no" },
            tool: step.tool,
            rule: rule_id,
            command: &command,
        };
        let reroute = outcome.reroute.as_ref().map(|r| match r {
            RerouteOutcome::Confirm => Reroute::Confirm,
            RerouteOutcome::Pause => Reroute::Pause,
            RerouteOutcome::Substitute(t) => Reroute::Substitute {
                suggestion: t.render(&ctx),
            },
        });
        Decision {
            kind: outcome.kind,
            reroute,
            rule_id: rule_id.to_owned(),
            reason: outcome.reason.render(&ctx),
            classes,
            risk: assessed.risk,
        }
    }
}

/// The highest finite emotion score, used for `{emotion}` when the rule itself
/// has no emotion condition.
fn top_emotion<'s>(scores: &[(&'s str, f32)]) -> Option<(&'s str, f32)> {
    scores.iter().filter(|(_, s)| s.is_finite()).copied().fold(
        None,
        |best: Option<(&str, f32)>, cur| match best {
            Some(b) if b.1 >= cur.1 => Some(b),
            _ => Some(cur),
        },
    )
}

/// The step's own entry for `name` (so the name borrows from the step, not the
/// policy), if present and finite.
fn score_entry<'s>(scores: &[(&'s str, f32)], name: &str) -> Option<(&'s str, f32)> {
    scores
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .filter(|(_, s)| s.is_finite())
}

impl Condition {
    fn evaluate<'s>(&self, assessed: &Assessed, step: &StepView<'s>) -> Option<Trigger<'s>> {
        let is_matched = |i: &usize| assessed.matched.get(*i).copied().unwrap_or(false);
        let class = match &self.classes {
            Some(list) => Some(*list.iter().find(|i| is_matched(i))?),
            None => None,
        };
        if self.except_classes.iter().any(is_matched) {
            return None;
        }
        if self
            .read_only
            .is_some_and(|want| want != assessed.read_only)
        {
            return None;
        }
        if self.risk_at_least.is_some_and(|min| assessed.risk < min) {
            return None;
        }
        if self.risk_below.is_some_and(|max| assessed.risk >= max) {
            return None;
        }
        if let Some(min) = self.action_risk_at_least {
            if !step.action_risk.is_some_and(|s| s.is_finite() && s >= min) {
                return None;
            }
        }
        if let Some(threshold) = self.stress_at_least {
            let spiking = self.or_spike && step.spike && step.stress >= self.spike_floor;
            if !(step.stress >= threshold || spiking) {
                return None;
            }
        }
        if self.spike.is_some_and(|want| want != step.spike) {
            return None;
        }
        let mut emotion = None;
        for (name, threshold) in &self.emotions_all {
            let entry = score_entry(step.scores, name).filter(|&(_, s)| s >= *threshold)?;
            emotion.get_or_insert(entry);
        }
        if !self.emotions_any.is_empty() {
            let hit = self.emotions_any.iter().find_map(|(name, threshold)| {
                score_entry(step.scores, name).filter(|&(_, s)| s >= *threshold)
            })?;
            emotion.get_or_insert(hit);
        }
        Some(Trigger { class, emotion })
    }
}
