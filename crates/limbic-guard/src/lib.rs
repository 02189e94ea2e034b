//! limbic-guard: the guard as a library — one agent step in, one audited decision out.
//!
//! * [`api`] — the wire contract every front end speaks (step request, answer, limits).
//! * [`render`] — how a step becomes tokens of the wrapped model, and which tokens count.
//! * [`scorer`] — engine + probes + per-session trackers.
//! * [`guard`] — scorer + policy + audit; configured by a plain [`GuardConfig`].
//! * [`profile`] — device profiles (sizing, memory budget, fail mode, default policy).
//! * [`redact`] — secrets removed from what the audit log stores (`store_text = redacted`).
//! * [`home`], [`models`] — limbic's home directory, the known models, fetching, pack lookup.
//! * [`build`] — the vector-pack pipeline (pool → fit → calibrate → weights → write).
//! * [`eval`] — scoring labelled steps (AUROC tables, the keyword baseline).
//! * [`replay`] — re-deciding an audit log's recorded steps under another policy.
//! * [`sweep`] — decision curves and operating points chosen on held-out domains.
//! * [`native`] — native mode: the wrapped model answers chat requests (OpenAI wire types,
//!   tool-call grammar, probed generation, steer-and-regenerate, audited tries).

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod build;
pub mod eval;
pub mod guard;
pub mod home;
pub mod jsonl;
pub mod models;
pub mod native;
pub mod profile;
pub mod redact;
mod reload;
pub mod render;
pub mod replay;
pub mod scorer;
pub mod sweep;

pub use api::{Action, StepAnswer, StepRequest};
pub use guard::{
    CommitSink, Guard, GuardConfig, PolicySource, StepNumberRejected, StoreText,
    DEFAULT_STATE_BUDGET_MB,
};
pub use jsonl::read_jsonl;
pub use profile::Profile;
pub use reload::{ReloadState, ReloadStatus, WatchedFile};
pub use scorer::{Reading, Scorer};
