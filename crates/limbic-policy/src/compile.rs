//! Turning policy TOML into a checked [`Policy`]: shape errors that name the
//! class or rule, and every semantic check (ids, thresholds, classes, templates).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::classify::{ActionClass, UNLISTED_GROUP};
use crate::decision::{DecisionKind, RerouteKind, RiskLevel};
use crate::error::PolicyError;
use crate::policy::{
    Condition, Outcome, Policy, RerouteOutcome, Rule, ACTION_RISK_THRESHOLDS, DEFAULT_RULE_ID,
    FAIL_CLOSED_RULE_ID, FAIL_OPEN_RULE_ID, SPIKE_FLOOR,
};
use crate::spec::{ClassSpec, DefaultSpec, PolicySpec, RuleSpec, ThresholdRef, WhenSpec};
use crate::template::Template;
use crate::words::ToolGroups;

const RESERVED_RULE_IDS: &[&str] = &[DEFAULT_RULE_ID, FAIL_CLOSED_RULE_ID, FAIL_OPEN_RULE_ID];
const SUPPORTED_VERSION: i64 = 1;

/// Normalises text so the hash does not depend on a BOM or on CRLF checkouts.
pub(crate) fn canonical_source(source: &str) -> String {
    source
        .strip_prefix('\u{feff}')
        .unwrap_or(source)
        .replace("\r\n", "\n")
}

/// Turns a serde/TOML error into one that also says which class or rule it is
/// in: the TOML message carries the line, but not the id of the enclosing item.
pub(crate) fn shape_error(source: &str, origin: &str, err: &toml::de::Error) -> PolicyError {
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

pub(crate) fn compile(
    spec: PolicySpec,
    source: String,
    origin: &str,
) -> Result<Policy, PolicyError> {
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

    for (group, words) in &spec.tool_words {
        let location = format!("[tool_words] {group}");
        if group.trim().is_empty() || group.contains('@') || group == UNLISTED_GROUP {
            return Err(PolicyError::invalid(
                origin,
                location,
                format!("group names must be non-empty, must not contain `@` and must not be `{UNLISTED_GROUP}`"),
            ));
        }
        if let Some(bad) = words.iter().find(|w| {
            w.is_empty()
                || !w.chars().all(|c| c.is_alphanumeric())
                || w.chars().any(char::is_uppercase)
        }) {
            return Err(PolicyError::invalid(
                origin,
                location,
                format!(
                    "word {bad:?} can never match: tool names are split into lower-case \
                     alphanumeric words (`runInTerminal` -> run, in, terminal)"
                ),
            ));
        }
    }
    if spec.tool_groups.contains_key(UNLISTED_GROUP) {
        return Err(PolicyError::invalid(
            origin,
            format!("[tool_groups] {UNLISTED_GROUP}"),
            format!("`@{UNLISTED_GROUP}` is reserved for tools in no group"),
        ));
    }
    let groups = ToolGroups::new(&spec.tool_groups, &spec.tool_words, &spec.tool_word_yields)
        .map_err(|e| PolicyError::invalid(origin, "[tool_word_yields]", e))?;

    let mut classes: Vec<ActionClass> = Vec::with_capacity(spec.classes.len() + 1);
    for class_spec in &spec.classes {
        if classes.iter().any(|c| c.id == class_spec.id) {
            return Err(PolicyError::invalid(
                origin,
                format!("class `{}`", class_spec.id),
                "duplicate class id",
            ));
        }
        classes.push(ActionClass::compile(class_spec, &groups, origin)?);
    }
    let unknown_class = match &spec.unknown {
        None => None,
        Some(u) => {
            if u.id.trim().is_empty() || classes.iter().any(|c| c.id == u.id) {
                return Err(PolicyError::invalid(
                    origin,
                    "[unknown]",
                    format!("id `{}` is empty or already a class id", u.id),
                ));
            }
            classes.push(ActionClass::unknown(&u.id, &u.description, u.risk));
            Some(classes.len() - 1)
        }
    };
    let action_risk_levels: Vec<(RiskLevel, f32)> = ACTION_RISK_THRESHOLDS
        .iter()
        .filter_map(|(name, level)| thresholds.get(*name).map(|t| (*level, *t)))
        .collect();
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

    spec.native.check(origin)?;
    let hash = hex::encode(Sha256::digest(source.as_bytes()));
    Ok(Policy {
        name: spec.name.clone().unwrap_or_else(|| "unnamed".to_owned()),
        description: spec.description.clone(),
        origin: origin.to_owned(),
        source,
        hash,
        fail_mode: spec.fail_mode,
        thresholds,
        groups,
        classes,
        read_only_class,
        unknown_class,
        fail_safe_classes,
        action_risk_levels,
        rules,
        default,
        native: spec.native,
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
        if let (Some(min), Some(max)) = (when.risk_at_least, when.risk_below) {
            if min >= max {
                return Err(self.err(
                    location,
                    format!("when.risk_at_least = \"{min}\" and when.risk_below = \"{max}\" can never both hold"),
                ));
            }
        }
        let action_risk_at_least = when
            .action_risk_at_least
            .as_ref()
            .map(|t| self.threshold(t, "action_risk_at_least", location))
            .transpose()?;
        Ok(Condition {
            classes,
            except_classes,
            read_only: when.read_only,
            risk_at_least: when.risk_at_least,
            risk_below: when.risk_below,
            action_risk_at_least,
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
