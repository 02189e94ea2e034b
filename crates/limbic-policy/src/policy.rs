//! The compiled policy: classification plus ordered rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::args::field_text;
use crate::classify::{ActionClass, ActionText};
use crate::decision::{Decision, DecisionKind, Reroute, RerouteKind, StepView};
use crate::error::PolicyError;
use crate::spec::{ClassSpec, DefaultSpec, FailMode, PolicySpec, RuleSpec, ThresholdRef, WhenSpec};
use crate::template::{RenderContext, Template};

/// The shipped default policy (`firmware-configs/policy.default.toml`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../../../firmware-configs/policy.default.toml");
/// Stricter policy for physical devices (`firmware-configs/policy.edge-robot.toml`).
pub const EDGE_ROBOT_POLICY_TOML: &str =
    include_str!("../../../firmware-configs/policy.edge-robot.toml");
/// Policy for a coding agent on a workstation (`firmware-configs/policy.workstation.toml`).
pub const WORKSTATION_POLICY_TOML: &str =
    include_str!("../../../firmware-configs/policy.workstation.toml");

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

const RESERVED_RULE_IDS: &[&str] = &[DEFAULT_RULE_ID, FAIL_CLOSED_RULE_ID, FAIL_OPEN_RULE_ID];
const SUPPORTED_VERSION: i64 = 1;

/// Threshold name: the least stress a step needs for `or_spike` to count its session's spike.
pub const SPIKE_FLOOR: &str = "spike_floor";

/// A loaded, validated policy. Cheap to share behind an `Arc`; deciding never
/// mutates it.
#[derive(Debug, Clone)]
pub struct Policy {
    name: String,
    description: Option<String>,
    origin: String,
    source: String,
    hash: String,
    fail_mode: FailMode,
    thresholds: BTreeMap<String, f32>,
    classes: Vec<ActionClass>,
    read_only_class: Option<usize>,
    /// Classes whose actions still run when stress is unavailable.
    fail_safe_classes: Vec<usize>,
    rules: Vec<Rule>,
    default: Outcome,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    description: Option<String>,
    when: Condition,
    outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
struct Condition {
    /// Indices into `Policy::classes`; `None` means "any action".
    classes: Option<Vec<usize>>,
    except_classes: Vec<usize>,
    read_only: Option<bool>,
    stress_at_least: Option<f32>,
    or_spike: bool,
    /// With `or_spike`, a spike still needs the step itself at least this stressed
    /// (threshold `spike_floor`), so a spike held by hysteresis does not block a calm step.
    spike_floor: f32,
    spike: Option<bool>,
    emotions_all: Vec<(String, f32)>,
    emotions_any: Vec<(String, f32)>,
}

#[derive(Debug, Clone)]
struct Outcome {
    kind: DecisionKind,
    reroute: Option<RerouteOutcome>,
    reason: Template,
}

#[derive(Debug, Clone)]
enum RerouteOutcome {
    Confirm,
    Substitute(Template),
    Pause,
}

/// What made a rule fire, for filling `{class}` and `{emotion}`.
struct Trigger<'s> {
    class: Option<usize>,
    emotion: Option<(&'s str, f32)>,
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
        let action = ActionText::new(tool, args);
        let matched = self.match_classes(&action);
        self.class_names(&matched)
    }

    /// True when the action matches the read-only class and nothing else.
    pub fn is_read_only(&self, tool: &str, args: &Value) -> bool {
        let action = ActionText::new(tool, args);
        self.read_only(&self.match_classes(&action))
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
        let action = ActionText::new(step.tool, step.args);
        let matched = self.match_classes(&action);
        let read_only = self.read_only(&matched);
        for rule in &self.rules {
            if let Some(trigger) = rule.when.evaluate(&matched, read_only, step) {
                return self.render(
                    &rule.outcome,
                    &rule.id,
                    rule.when.stress_at_least,
                    &trigger,
                    step,
                    &matched,
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
            &matched,
        )
    }

    /// Decides a step when no stress signal is available (model or vector pack
    /// unusable). Actions that only match `fail_closed_allow` classes (by default
    /// the read-only class) are allowed; anything else is vetoed under
    /// `fail_mode = "closed"` and allowed with a warning under `"open"`.
    pub fn decide_unscored(&self, tool: &str, args: &Value) -> Decision {
        let action = ActionText::new(tool, args);
        let matched = self.match_classes(&action);
        let classes = self.class_names(&matched);
        let listed = if classes.is_empty() {
            "unclassified".to_owned()
        } else {
            classes.join(", ")
        };
        let (rule_id, mode) = match self.fail_mode {
            FailMode::Closed => (FAIL_CLOSED_RULE_ID, "closed"),
            FailMode::Open => (FAIL_OPEN_RULE_ID, "open"),
        };
        let (kind, reason) = if self.fail_safe(&matched) {
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
        }
    }

    fn match_classes(&self, action: &ActionText<'_>) -> Vec<bool> {
        self.classes.iter().map(|c| c.matches(action)).collect()
    }

    fn class_names(&self, matched: &[bool]) -> Vec<String> {
        self.classes
            .iter()
            .zip(matched)
            .filter(|(_, &m)| m)
            .map(|(c, _)| c.id.clone())
            .collect()
    }

    fn read_only(&self, matched: &[bool]) -> bool {
        let Some(ro) = self.read_only_class else {
            return false;
        };
        matched.get(ro).copied().unwrap_or(false)
            && matched.iter().enumerate().all(|(i, &m)| i == ro || !m)
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
        matched: &[bool],
    ) -> Decision {
        let classes = self.class_names(matched);
        let class = trigger
            .class
            .and_then(|i| self.classes.get(i))
            .map(|c| c.id.clone())
            .or_else(|| classes.first().cloned())
            .unwrap_or_else(|| "unclassified".to_owned());
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
                crate::args::flatten(step.args)
            } else {
                cmd
            }
        };
        let stress = format!("{:.2}", step.stress);
        let threshold = threshold.map_or_else(|| "n/a".to_owned(), |t| format!("{t:.2}"));
        let ctx = RenderContext {
            class: &class,
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
    fn evaluate<'s>(
        &self,
        matched: &[bool],
        read_only: bool,
        step: &StepView<'s>,
    ) -> Option<Trigger<'s>> {
        let is_matched = |i: &usize| matched.get(*i).copied().unwrap_or(false);
        let class = match &self.classes {
            Some(list) => Some(*list.iter().find(|i| is_matched(i))?),
            None => None,
        };
        if self.except_classes.iter().any(is_matched) {
            return None;
        }
        if self.read_only.is_some_and(|want| want != read_only) {
            return None;
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

/// Normalises text so the hash does not depend on a BOM or on CRLF checkouts.
fn canonical_source(source: &str) -> String {
    source
        .strip_prefix('\u{feff}')
        .unwrap_or(source)
        .replace("\r\n", "\n")
}

/// Turns a serde/TOML error into one that also says which class or rule it is
/// in: the TOML message carries the line, but not the id of the enclosing item.
fn shape_error(source: &str, origin: &str, err: &toml::de::Error) -> PolicyError {
    PolicyError::Syntax {
        origin: origin.to_owned(),
        location: locate_shape_error(source).unwrap_or_else(|| "top level".to_owned()),
        // The Display form carries the line, column and a source snippet.
        message: err.to_string().trim().to_owned(),
    }
}

fn locate_shape_error(source: &str) -> Option<String> {
    let table: toml::Table = match toml::from_str(source) {
        Ok(t) => t,
        Err(_) => return Some("TOML syntax".to_owned()),
    };
    let item_label = |kind: &str, index: usize, item: &toml::Value| match item
        .get("id")
        .and_then(toml::Value::as_str)
    {
        Some(id) => format!("{kind} `{id}`"),
        None => format!("{kind} #{}", index + 1),
    };
    if let Some(toml::Value::Array(items)) = table.get("class") {
        for (i, item) in items.iter().enumerate() {
            if ClassSpec::deserialize(item.clone()).is_err() {
                return Some(item_label("class", i, item));
            }
        }
    }
    if let Some(toml::Value::Array(items)) = table.get("rule") {
        for (i, item) in items.iter().enumerate() {
            if RuleSpec::deserialize(item.clone()).is_err() {
                return Some(item_label("rule", i, item));
            }
        }
    }
    if let Some(item) = table.get("default") {
        if DefaultSpec::deserialize(item.clone()).is_err() {
            return Some("[default]".to_owned());
        }
    }
    None
}

fn compile(spec: PolicySpec, source: String, origin: &str) -> Result<Policy, PolicyError> {
    if spec.version != SUPPORTED_VERSION {
        return Err(PolicyError::invalid(
            origin,
            "version",
            format!(
                "unsupported policy version {} (this build reads version {SUPPORTED_VERSION})",
                spec.version
            ),
        ));
    }

    if spec.classes.is_empty() && spec.rules.is_empty() {
        // Most likely a truncated or half-written file; loading it would
        // silently allow everything.
        return Err(PolicyError::invalid(
            origin,
            "top level",
            "policy defines no classes and no rules (empty or truncated file?)",
        ));
    }

    let mut thresholds = BTreeMap::new();
    for (name, &value) in &spec.thresholds {
        if name.trim().is_empty() {
            return Err(PolicyError::invalid(
                origin,
                "[thresholds]",
                "empty threshold name",
            ));
        }
        if !value.is_finite() {
            return Err(PolicyError::invalid(
                origin,
                format!("[thresholds] {name}"),
                format!("threshold must be a finite number, got {value}"),
            ));
        }
        thresholds.insert(name.clone(), value as f32);
    }

    let emotions: Option<BTreeSet<String>> = match &spec.emotions {
        None => None,
        Some(list) => {
            let mut set = BTreeSet::new();
            for name in list {
                if name.trim().is_empty() {
                    return Err(PolicyError::invalid(
                        origin,
                        "emotions",
                        "empty emotion name",
                    ));
                }
                if !set.insert(name.to_ascii_lowercase()) {
                    return Err(PolicyError::invalid(
                        origin,
                        "emotions",
                        format!("emotion `{name}` listed twice"),
                    ));
                }
            }
            Some(set)
        }
    };

    for (group, members) in &spec.tool_groups {
        let location = format!("[tool_groups] {group}");
        if group.trim().is_empty() || group.contains('@') {
            return Err(PolicyError::invalid(
                origin,
                location,
                "group names must be non-empty and must not contain `@`",
            ));
        }
        if members.is_empty() || members.iter().any(|m| m.trim().is_empty()) {
            return Err(PolicyError::invalid(
                origin,
                location,
                "a tool group needs at least one non-empty tool name",
            ));
        }
    }

    let mut classes: Vec<ActionClass> = Vec::with_capacity(spec.classes.len());
    for class_spec in &spec.classes {
        if classes.iter().any(|c| c.id == class_spec.id) {
            return Err(PolicyError::invalid(
                origin,
                format!("class `{}`", class_spec.id),
                "duplicate class id",
            ));
        }
        classes.push(ActionClass::compile(class_spec, &spec.tool_groups, origin)?);
    }
    let class_index = |id: &str| classes.iter().position(|c| c.id == id);

    let read_only_class = match &spec.read_only_class {
        Some(id) => Some(class_index(id).ok_or_else(|| {
            PolicyError::invalid(
                origin,
                "read_only_class",
                format!("names class `{id}`, which is not defined"),
            )
        })?),
        // Convention: a class called `read_only` is the read-only class.
        None => class_index("read_only"),
    };

    let fail_safe_classes = match &spec.fail_closed_allow {
        None => read_only_class.into_iter().collect(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                class_index(id).ok_or_else(|| {
                    PolicyError::invalid(
                        origin,
                        "fail_closed_allow",
                        format!("names class `{id}`, which is not defined"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };

    let resolver = Resolver {
        origin,
        thresholds: &thresholds,
        classes: &classes,
        emotions: emotions.as_ref(),
        has_read_only_class: read_only_class.is_some(),
    };

    let mut rules: Vec<Rule> = Vec::with_capacity(spec.rules.len());
    for rule_spec in &spec.rules {
        let location = format!("rule `{}`", rule_spec.id);
        if rule_spec.id.trim().is_empty() {
            return Err(PolicyError::invalid(origin, "rule", "empty rule id"));
        }
        if RESERVED_RULE_IDS.contains(&rule_spec.id.as_str()) {
            return Err(PolicyError::invalid(
                origin,
                location,
                format!(
                    "rule id is reserved for decisions made outside the rules ({})",
                    RESERVED_RULE_IDS.join(", ")
                ),
            ));
        }
        if rules.iter().any(|r| r.id == rule_spec.id) {
            return Err(PolicyError::invalid(origin, location, "duplicate rule id"));
        }
        let when = resolver.condition(&rule_spec.when, &location)?;
        let outcome = compile_outcome(
            rule_spec.decision,
            rule_spec.reroute,
            rule_spec.substitute.as_deref(),
            Some(&rule_spec.reason),
            origin,
            &location,
        )?;
        rules.push(Rule {
            id: rule_spec.id.clone(),
            description: rule_spec.description.clone(),
            when,
            outcome,
        });
    }

    let default = match &spec.default {
        None => compile_outcome(DecisionKind::Allow, None, None, None, origin, "[default]")?,
        Some(d) => compile_outcome(
            d.decision,
            d.reroute,
            d.substitute.as_deref(),
            d.reason.as_deref(),
            origin,
            "[default]",
        )?,
    };

    let hash = hex::encode(Sha256::digest(source.as_bytes()));
    Ok(Policy {
        name: spec.name.clone().unwrap_or_else(|| "unnamed".to_owned()),
        description: spec.description.clone(),
        origin: origin.to_owned(),
        source,
        hash,
        fail_mode: spec.fail_mode,
        thresholds,
        classes,
        read_only_class,
        fail_safe_classes,
        rules,
        default,
    })
}

struct Resolver<'a> {
    origin: &'a str,
    thresholds: &'a BTreeMap<String, f32>,
    classes: &'a [ActionClass],
    emotions: Option<&'a BTreeSet<String>>,
    has_read_only_class: bool,
}

impl Resolver<'_> {
    fn err(&self, location: &str, problem: impl Into<String>) -> PolicyError {
        PolicyError::invalid(self.origin, location, problem)
    }

    fn class(&self, id: &str, key: &str, location: &str) -> Result<usize, PolicyError> {
        self.classes.iter().position(|c| c.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.classes.iter().map(|c| c.id.as_str()).collect();
            self.err(
                location,
                format!(
                    "when.{key} names unknown class `{id}` (defined: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    fn threshold(
        &self,
        value: &ThresholdRef,
        key: &str,
        location: &str,
    ) -> Result<f32, PolicyError> {
        match value {
            ThresholdRef::Value(v) if v.is_finite() => Ok(*v as f32),
            ThresholdRef::Value(v) => {
                Err(self.err(location, format!("when.{key} must be finite, got {v}")))
            }
            ThresholdRef::Named(name) => self.thresholds.get(name).copied().ok_or_else(|| {
                let known: Vec<&str> = self.thresholds.keys().map(String::as_str).collect();
                self.err(
                    location,
                    format!(
                        "when.{key} refers to unknown threshold `{name}` (defined in [thresholds]: {})",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                )
            }),
        }
    }

    fn emotion_list(
        &self,
        map: &BTreeMap<String, ThresholdRef>,
        key: &str,
        location: &str,
    ) -> Result<Vec<(String, f32)>, PolicyError> {
        map.iter()
            .map(|(name, threshold)| {
                if name.trim().is_empty() {
                    return Err(self.err(location, format!("when.{key} has an empty emotion name")));
                }
                if let Some(known) = self.emotions {
                    if !known.contains(&name.to_ascii_lowercase()) {
                        return Err(self.err(
                            location,
                            format!(
                                "when.{key} names emotion `{name}`, which is not in the policy's \
                                 `emotions` list ({})",
                                known.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
                let value = self.threshold(threshold, &format!("{key}.{name}"), location)?;
                Ok((name.clone(), value))
            })
            .collect()
    }

    fn condition(&self, when: &WhenSpec, location: &str) -> Result<Condition, PolicyError> {
        let classes = match &when.classes {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(self.err(
                    location,
                    "when.classes is empty and would never match; omit it to match any action",
                ))
            }
            Some(list) => Some(
                list.iter()
                    .map(|id| self.class(id, "classes", location))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let except_classes = when
            .except_classes
            .iter()
            .map(|id| self.class(id, "except_classes", location))
            .collect::<Result<Vec<_>, _>>()?;
        if when.read_only.is_some() && !self.has_read_only_class {
            return Err(self.err(
                location,
                "when.read_only needs a read-only class (define class `read_only` or set \
                 read_only_class)",
            ));
        }
        let stress_at_least = when
            .stress_at_least
            .as_ref()
            .map(|t| self.threshold(t, "stress_at_least", location))
            .transpose()?;
        if when.or_spike && stress_at_least.is_none() {
            return Err(self.err(
                location,
                "when.or_spike only widens stress_at_least, which is missing",
            ));
        }
        if when.or_spike && when.spike.is_some() {
            return Err(self.err(
                location,
                "when.or_spike and when.spike contradict each other; use one",
            ));
        }
        Ok(Condition {
            classes,
            except_classes,
            read_only: when.read_only,
            stress_at_least,
            or_spike: when.or_spike,
            spike_floor: self
                .thresholds
                .get(SPIKE_FLOOR)
                .copied()
                .unwrap_or(f32::NEG_INFINITY),
            spike: when.spike,
            emotions_all: self.emotion_list(&when.emotions, "emotions", location)?,
            emotions_any: self.emotion_list(&when.emotions_any, "emotions_any", location)?,
        })
    }
}

fn compile_outcome(
    kind: DecisionKind,
    reroute: Option<RerouteKind>,
    substitute: Option<&str>,
    reason: Option<&str>,
    origin: &str,
    location: &str,
) -> Result<Outcome, PolicyError> {
    let err = |problem: String| PolicyError::invalid(origin, location, problem);
    match (kind, reroute) {
        (DecisionKind::Reroute, None) => {
            return Err(err(
                "decision = \"reroute\" needs reroute = \"confirm\" | \"substitute\" | \"pause\""
                    .to_owned(),
            ))
        }
        (other, Some(r)) if other != DecisionKind::Reroute => {
            return Err(err(format!(
                "reroute = \"{r}\" only applies to decision = \"reroute\" (decision is \"{other}\")"
            )))
        }
        _ => {}
    }
    let reroute = match reroute {
        None => None,
        Some(RerouteKind::Confirm) => Some(RerouteOutcome::Confirm),
        Some(RerouteKind::Pause) => Some(RerouteOutcome::Pause),
        Some(RerouteKind::Substitute) => {
            let text = substitute.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                err("reroute = \"substitute\" needs a non-empty substitute template".to_owned())
            })?;
            Some(RerouteOutcome::Substitute(
                Template::parse(text).map_err(|e| err(format!("substitute: {e}")))?,
            ))
        }
    };
    if substitute.is_some() && !matches!(reroute, Some(RerouteOutcome::Substitute(_))) {
        return Err(err(
            "substitute is only used with reroute = \"substitute\"".to_owned()
        ));
    }
    let reason_text = match reason {
        Some(text) if text.trim().is_empty() => {
            return Err(err("empty reason (say why the rule exists)".to_owned()))
        }
        Some(text) => text,
        None => "no rule matched; default decision",
    };
    let reason = Template::parse(reason_text).map_err(|e| err(format!("reason: {e}")))?;
    Ok(Outcome {
        kind,
        reroute,
        reason,
    })
}
