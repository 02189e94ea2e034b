//! The on-disk shape of a policy file, exactly as serde reads it.
//!
//! Every table rejects unknown keys so that a typo (`stres_at_least`) is an error
//! instead of a silently ignored condition. Semantic checks (regexes compile,
//! referenced ids exist...) happen later in `compile`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use crate::decision::{DecisionKind, RerouteKind, RiskLevel};

/// What the binary should do when stress cannot be measured (model or vector
/// pack unusable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Veto every action that is not purely read-only.
    #[default]
    Closed,
    /// Allow everything, with a warning on actions that are not read-only.
    Open,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        }
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySpec {
    #[serde(default = "default_version")]
    pub version: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub fail_mode: FailMode,
    #[serde(default)]
    pub read_only_class: Option<String>,
    #[serde(default)]
    pub fail_closed_allow: Option<Vec<String>>,
    #[serde(default)]
    pub emotions: Option<Vec<String>>,
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    #[serde(default)]
    pub tool_groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub tool_words: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub tool_word_yields: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub unknown: Option<UnknownSpec>,
    #[serde(default, rename = "class")]
    pub classes: Vec<ClassSpec>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub default: Option<DefaultSpec>,
    #[serde(default)]
    pub native: crate::native::NativeSettings,
}

fn default_version() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassSpec {
    pub id: String,
    pub description: String,
    #[serde(default)]
    pub risk: Option<RiskLevel>,
    #[serde(rename = "match", default)]
    pub matchers: Vec<MatcherSpec>,
}

/// `[unknown]`: the class an action gets when no class matches and no tool
/// group recognises its tool name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnknownSpec {
    #[serde(default = "default_unknown_id")]
    pub id: String,
    #[serde(default = "default_unknown_description")]
    pub description: String,
    #[serde(default = "default_unknown_risk")]
    pub risk: RiskLevel,
}

fn default_unknown_id() -> String {
    "unknown".to_owned()
}

fn default_unknown_description() -> String {
    "An action nothing in the policy recognises: unknown tool, no recognised content".to_owned()
}

fn default_unknown_risk() -> RiskLevel {
    RiskLevel::Medium
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatcherSpec {
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub tool_regex: Vec<String>,
    #[serde(default)]
    pub except_tools: Vec<String>,
    #[serde(default)]
    pub except_tool_regex: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub args_all: Vec<String>,
    #[serde(default)]
    pub args_not: Vec<String>,
    #[serde(default)]
    pub field: BTreeMap<String, String>,
    #[serde(default)]
    pub field_not: BTreeMap<String, String>,
    #[serde(default)]
    pub text: Vec<String>,
    #[serde(default)]
    pub text_not: Vec<String>,
    #[serde(default)]
    pub find: Option<FindSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindSpec {
    pub pattern: String,
    #[serde(default)]
    pub unless: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub when: WhenSpec,
    pub decision: DecisionKind,
    #[serde(default)]
    pub reroute: Option<RerouteKind>,
    #[serde(default)]
    pub substitute: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenSpec {
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    #[serde(default)]
    pub except_classes: Vec<String>,
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(default)]
    pub risk_at_least: Option<RiskLevel>,
    #[serde(default)]
    pub risk_below: Option<RiskLevel>,
    #[serde(default)]
    pub action_risk_at_least: Option<ThresholdRef>,
    #[serde(default)]
    pub stress_at_least: Option<ThresholdRef>,
    #[serde(default)]
    pub or_spike: bool,
    #[serde(default)]
    pub spike: Option<bool>,
    #[serde(default)]
    pub emotions: BTreeMap<String, ThresholdRef>,
    #[serde(default)]
    pub emotions_any: BTreeMap<String, ThresholdRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultSpec {
    #[serde(default = "default_decision")]
    pub decision: DecisionKind,
    #[serde(default)]
    pub reroute: Option<RerouteKind>,
    #[serde(default)]
    pub substitute: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_decision() -> DecisionKind {
    DecisionKind::Allow
}

/// A threshold written either as a number (`1.5`) or as the name of an entry in
/// the policy's `[thresholds]` table (`"elevated"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ThresholdRef {
    Value(f64),
    Named(String),
}

impl<'de> Deserialize<'de> for ThresholdRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;

        impl Visitor<'_> for ThresholdVisitor {
            type Value = ThresholdRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or the name of a [thresholds] entry")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ThresholdRef, E> {
                Ok(ThresholdRef::Value(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ThresholdRef, E> {
                // Thresholds are small z-scores; i64 -> f64 is exact for them.
                Ok(ThresholdRef::Value(v as f64))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ThresholdRef, E> {
                Ok(ThresholdRef::Value(v as f64))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ThresholdRef, E> {
                Ok(ThresholdRef::Named(v.to_owned()))
            }
        }

        deserializer.deserialize_any(ThresholdVisitor)
    }
}
