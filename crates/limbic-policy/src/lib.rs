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
//! The shipped policies encode one principle: catch *pressure-driven* corner
//! cutting, not legitimate work. A calm `rm -rf target/` is allowed; the same
//! command while stress is elevated needs confirmation.
//!
//! ```
//! use limbic_policy::{DecisionKind, Policy, StepView};
//! use serde_json::json;
//!
//! let policy = Policy::builtin_default()?;
//! let args = json!({"command": "git commit -am 'fix' --no-verify"});
//! let calm = StepView { tool: "Bash", args: &args, stress: 0.0, spike: false, scores: &[] };
//! assert!(!policy.decide(&calm).kind.blocks_action());
//! let stressed = StepView { stress: 3.5, ..calm };
//! assert_eq!(policy.decide(&stressed).kind, DecisionKind::Veto);
//! # Ok::<(), limbic_policy::PolicyError>(())
//! ```

mod args;
mod classify;
mod decision;
mod error;
mod policy;
mod spec;
mod template;
mod watcher;

pub use decision::{Decision, DecisionKind, Reroute, RerouteKind, StepView};
pub use error::PolicyError;
pub use policy::{
    Policy, BUILTIN_POLICIES, DEFAULT_POLICY_TOML, DEFAULT_RULE_ID, EDGE_ROBOT_POLICY_TOML,
    FAIL_CLOSED_RULE_ID, FAIL_OPEN_RULE_ID, SPIKE_FLOOR, WORKSTATION_POLICY_TOML,
};
pub use spec::FailMode;
pub use template::PLACEHOLDERS;
pub use watcher::{PolicyHandle, PolicyWatcher};
