//! limbic-policy: turns an agent step plus the session's stress signature into
//! `allow` / `warn` / `veto` / `reroute`.
//!
//! A policy (TOML, see `firmware-configs/README.md`) has two parts:
//!
//! * **Action classes** recognise what a tool call *is* (a force push, a test
//!   edit, a payment...) from the tool name and the text of its arguments. An
//!   action may belong to several classes.
//! * **Rules**, tried in order, map classes plus stress (signature, spike,
//!   per-emotion scores) to a decision. The first rule whose conditions all hold
//!   decides; otherwise the `[default]` decision (allow) applies.
//!
//! Every class has a **risk level** (low / medium / high / critical), and the
//! shipped rules combine it with stress: the riskier the action, the less stress
//! it takes to stop it. Integrity and safety corner cuts (`--no-verify`, skipping
//! a failing test, hard-coding an expected value, disabling an interlock,
//! force-pushing `main`) are critical: confirmed by a human even when the agent
//! is calm, because real agents narrate them calmly. Legitimate destructive work
//! (`rm -rf target/`, `--force-with-lease` on a feature branch) stays allowed
//! when calm. Actions are recognised by what their arguments contain, whatever
//! the tool is called, and by the words in the tool's name; an action nothing
//! recognises is `unknown`, never safe.
//!
//! ```
//! use limbic_policy::{DecisionKind, Policy, RiskLevel, StepView};
//! use serde_json::json;
//!
//! let policy = Policy::builtin_default()?;
//! let args = json!({"input": "git commit -am 'fix' --no-verify"});
//! let calm = StepView::new("vscode_terminal_run", &args, 0.0);
//! let d = policy.decide(&calm);
//! assert_eq!(d.kind, DecisionKind::Reroute);
//! assert_eq!(d.risk, RiskLevel::Critical);
//! let stressed = StepView { stress: 3.5, ..calm };
//! assert_eq!(policy.decide(&stressed).kind, DecisionKind::Veto);
//! let cleanup = json!({"command": "rm -rf target/"});
//! assert_eq!(policy.decide(&StepView::new("Bash", &cleanup, 0.0)).kind, DecisionKind::Allow);
//! # Ok::<(), limbic_policy::PolicyError>(())
//! ```

#![forbid(unsafe_code)]

mod args;
mod classify;
mod compile;
mod decision;
mod error;
mod native;
mod policy;
mod spec;
mod template;
mod watcher;
mod words;

pub use classify::UNLISTED_GROUP;
pub use decision::{Decision, DecisionKind, Reroute, RerouteKind, RiskLevel, StepView};
pub use error::PolicyError;
pub use native::{
    NativeExhausted, NativeReroute, NativeSettings, MAX_NATIVE_TRIES, MAX_STEER_STRENGTH,
};
pub use policy::{
    Policy, ACTION_RISK_THRESHOLDS, BUILTIN_POLICIES, DEFAULT_POLICY_TOML, DEFAULT_RULE_ID,
    EDGE_ROBOT_POLICY_TOML, FAIL_CLOSED_RULE_ID, FAIL_OPEN_RULE_ID, SPIKE_FLOOR,
    WORKSTATION_POLICY_TOML,
};
pub use spec::FailMode;
pub use template::PLACEHOLDERS;
pub use watcher::{ChangeHook, ChangeWatch, PolicyHandle, PolicyWatcher};
pub use words::tool_words;
