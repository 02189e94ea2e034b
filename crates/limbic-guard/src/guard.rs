//! The guard: one agent step in, one audited decision out.
//!
//! [`Guard`] joins the [`Scorer`] (model + probes), the policy and the audit log, and falls
//! back to the policy's fail mode when scoring is impossible (no model, no pack, a decode
//! error). It is configured by a plain [`GuardConfig`]; front ends map their options onto it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use limbic_audit::{
    AuditLog, AuditOptions, ConfigRecord, DecisionRecord, Delivery, StepRecord, StepRow,
};
use limbic_engine::EngineConfig;
use limbic_policy::{Decision, Policy, PolicyHandle, PolicyWatcher, StepView};
use limbic_vectors::Pack;

use crate::api::{StepAnswer, StepRequest, NO_WORDS};
use crate::profile::{ModelShape, Profile};
use crate::scorer::{Reading, Scorer};

/// Largest step number accepted (the audit log stores it as a signed 64-bit integer).
pub const MAX_STEP_NUMBER: u64 = i64::MAX as u64;

/// A step whose number is out of order, duplicated or out of range: the client's mistake
/// (HTTP 409), never silently renumbered.
#[derive(Debug)]
pub struct StepNumberRejected(pub String);

impl std::fmt::Display for StepNumberRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepNumberRejected {}

/// Where the guard's policy comes from: a fixed policy, or a watched file (hot reload).
pub enum PolicySource {
    Fixed(Arc<Policy>),
    Watched(PolicyWatcher),
}

impl PolicySource {
    pub fn load(path: Option<&Path>, watch: bool) -> Result<PolicySource> {
        match path {
            None => Ok(PolicySource::Fixed(Arc::new(Policy::builtin_default()?))),
            Some(p) if watch => Ok(PolicySource::Watched(
                PolicyWatcher::spawn(p).with_context(|| format!("policy {}", p.display()))?,
            )),
            Some(p) => Ok(PolicySource::Fixed(Arc::new(
                Policy::load(p).with_context(|| format!("policy {}", p.display()))?,
            ))),
        }
    }

    pub fn current(&self) -> Arc<Policy> {
        match self {
            PolicySource::Fixed(p) => p.clone(),
            PolicySource::Watched(w) => w.current(),
        }
    }

    pub fn handle(&self) -> Option<PolicyHandle> {
        match self {
            PolicySource::Fixed(_) => None,
            PolicySource::Watched(w) => Some(w.handle()),
        }
    }
}

/// Scorer (if usable) + policy + audit.
pub struct Guard {
    scorer: std::result::Result<Scorer, String>,
    policy: PolicySource,
    audit: Option<AuditLog>,
    next_step: HashMap<String, u64>,
    recorded_config: Option<(String, String)>,
    model_sha: String,
    model_name: String,
    store_text: StoreText,
    commit_sink: Option<CommitSink>,
    pub(crate) reloader: Option<crate::reload::Reloader>,
}

/// Called with each step's audit row right after it is committed (e.g. to stream it to an
/// OpenTelemetry collector); it runs on the guard's thread, so it must not block.
pub type CommitSink = Box<dyn FnMut(&StepRow) + Send>;

/// How a step's text reaches the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreText {
    /// Verbatim.
    #[default]
    Full,
    /// Only its sha256 (NULL text).
    Hash,
    /// With secrets (tokens, keys, passwords, by pattern) removed from the text, the
    /// arguments and the reason before anything is written; scoring sees the original.
    Redacted,
}

impl StoreText {
    pub const ALL: [StoreText; 3] = [StoreText::Full, StoreText::Hash, StoreText::Redacted];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreText::Full => "full",
            StoreText::Hash => "hash",
            StoreText::Redacted => "redacted",
        }
    }
}

impl std::str::FromStr for StoreText {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<StoreText> {
        StoreText::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("store_text {s:?}: expected full, hash or redacted"))
    }
}

impl Guard {
    pub fn new(
        scorer: std::result::Result<Scorer, String>,
        policy: PolicySource,
        audit: Option<AuditLog>,
    ) -> Guard {
        let (model_sha, model_name) = match &scorer {
            Ok(s) => {
                let info = s.model().info();
                (
                    info.sha256.clone(),
                    info.name.clone().unwrap_or_else(|| info.arch.clone()),
                )
            }
            Err(_) => (String::new(), String::from("unavailable")),
        };
        Guard {
            scorer,
            policy,
            audit,
            next_step: HashMap::new(),
            recorded_config: None,
            model_sha,
            model_name,
            store_text: StoreText::Full,
            commit_sink: None,
            reloader: None,
        }
    }

    /// Sets the function each committed step's row is handed to ([`CommitSink`]).
    pub fn set_commit_sink(&mut self, sink: CommitSink) {
        self.commit_sink = Some(sink);
    }

    /// Sets how step text is written (the audit log must have been opened with
    /// `store_text = false` for [`StoreText::Hash`]).
    pub fn set_store_text(&mut self, mode: StoreText) {
        self.store_text = mode;
    }

    /// How step text is written now.
    pub fn store_text(&self) -> StoreText {
        self.store_text
    }

    /// Replaces the policy source (a profile reload naming another policy).
    pub(crate) fn replace_policy(&mut self, policy: PolicySource) {
        self.policy = policy;
    }

    pub fn scorer(&self) -> Option<&Scorer> {
        self.scorer.as_ref().ok()
    }

    pub fn scorer_mut(&mut self) -> Option<&mut Scorer> {
        self.scorer.as_mut().ok()
    }

    pub fn scorer_error(&self) -> Option<&str> {
        self.scorer.as_ref().err().map(String::as_str)
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    /// Copies the audit WAL into the database file (`None` without an audit log), so a copy
    /// of the file alone holds every committed row.
    pub fn checkpoint(&self) -> Result<Option<limbic_audit::CheckpointReport>> {
        match &self.audit {
            Some(log) => Ok(Some(log.checkpoint()?)),
            None => Ok(None),
        }
    }

    /// The model's name as recorded in the audit log.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Numbers the session's next step (restoring its tracker the first time it is seen).
    pub(crate) fn number_step(&mut self, session: &str) -> Result<u64> {
        let index = self.next_step_index(session, None)?;
        self.restore_tracker(session)?;
        self.next_step.insert(session.to_string(), index + 1);
        Ok(index)
    }

    /// The session's next step number will be `next`.
    pub(crate) fn set_next_step(&mut self, session: &str, next: u64) {
        self.next_step.insert(session.to_string(), next);
    }

    /// The hot-reload handle, when the policy file is watched.
    pub fn policy_handle(&self) -> Option<PolicyHandle> {
        self.policy.handle()
    }

    /// Scores, decides and records one step. The outcome is returned only after its audit
    /// row is committed; an audit failure is an error (the decision is not acknowledged).
    pub fn check(&mut self, input: &StepRequest) -> Result<StepAnswer> {
        self.check_until(input, None)
    }

    /// [`Guard::check`] for a client that stops waiting at `deadline`: a step whose deadline
    /// has passed before scoring is decided by the fail mode without scoring, and a step
    /// answered after it is recorded as late — the log says what the agent was really told
    /// (its own timeout behaviour), not only what limbic concluded.
    pub fn check_until(
        &mut self,
        input: &StepRequest,
        deadline: Option<Instant>,
    ) -> Result<StepAnswer> {
        self.check_many(&[(input, deadline)])
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("no answer for the step")))
    }

    /// Checks several steps at once: steps of different sessions are decoded together in
    /// shared forward passes (the engine batches them across KV sequences), then each is
    /// decided and recorded in order. One answer per step, in order.
    pub fn check_many(
        &mut self,
        items: &[(&StepRequest, Option<Instant>)],
    ) -> Vec<Result<StepAnswer>> {
        let started = Instant::now();
        let ts_start = limbic_audit::now_unix_ms();
        let policy = self.policy.current();
        // 1. Validate and number every step; those still in time are scored.
        let mut prepared: Vec<Result<u64>> = Vec::with_capacity(items.len());
        let mut to_score: Vec<(usize, &str, &str, String)> = Vec::new();
        for (i, (input, deadline)) in items.iter().enumerate() {
            let step = input
                .validate()
                .and_then(|()| self.next_step_index(&input.session, input.step))
                .and_then(|index| {
                    self.restore_tracker(&input.session)?;
                    self.next_step.insert(input.session.clone(), index + 1);
                    Ok(index)
                });
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if step.is_ok() && !expired {
                let text = if input.text.trim().is_empty() {
                    NO_WORDS
                } else {
                    input.text.as_str()
                };
                to_score.push((i, &input.session, text, input.action.text()));
            }
            prepared.push(step);
        }
        // 2. One batched pass over the steps to score.
        let mut readings: Vec<std::result::Result<Reading, String>> = items
            .iter()
            .map(|_| {
                Err(
                    "the client's deadline passed while the step waited in the queue; decided \
                     by the fail mode without scoring"
                        .to_string(),
                )
            })
            .collect();
        match &mut self.scorer {
            Ok(scorer) => {
                let batch: Vec<(&str, &str, &str)> = to_score
                    .iter()
                    .map(|(_, s, w, a)| (*s, *w, a.as_str()))
                    .collect();
                for ((i, ..), r) in to_score.iter().zip(scorer.score_many(&batch)) {
                    readings[*i] = r.map_err(|e| format!("{e:#}"));
                }
            }
            Err(reason) => {
                for (i, ..) in &to_score {
                    readings[*i] = Err(reason.clone());
                }
            }
        }
        // 3. Decide and record each, in order.
        items
            .iter()
            .zip(prepared)
            .zip(readings)
            .map(|(((input, deadline), step), reading)| {
                self.finish(input, step?, reading, &policy, started, ts_start, *deadline)
            })
            .collect()
    }

    /// Decides one scored (or unscorable) step and records it.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        input: &StepRequest,
        step_index: u64,
        reading: std::result::Result<Reading, String>,
        policy: &Arc<Policy>,
        started: Instant,
        ts_start: i64,
        deadline: Option<Instant>,
    ) -> Result<StepAnswer> {
        let (decision, unscored, stress, spike, scores, peaks): (Decision, _, _, _, _, _) =
            match &reading {
                Ok(r) => {
                    let named: Vec<(&str, f32)> =
                        r.scores.iter().map(|(n, z)| (n.as_str(), *z)).collect();
                    let view = StepView::new(&input.action.tool, &input.action.args, r.signature)
                        .with_spike(r.track.spike)
                        .with_scores(&named)
                        .with_text(Some(&input.text));
                    (
                        policy.decide(&view),
                        None,
                        r.signature,
                        r.track.spike,
                        r.scores.iter().cloned().collect::<BTreeMap<_, _>>(),
                        r.peaks.iter().cloned().collect::<BTreeMap<_, _>>(),
                    )
                }
                Err(reason) => (
                    policy.decide_unscored(&input.action.tool, &input.action.args),
                    Some(reason.clone()),
                    f32::NAN,
                    false,
                    BTreeMap::new(),
                    BTreeMap::new(),
                ),
            };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut outcome = StepAnswer {
            session: input.session.clone(),
            step: step_index,
            decision: decision.kind,
            reroute: decision.reroute.clone(),
            stress: if stress.is_finite() { stress } else { 0.0 },
            spike,
            scores,
            peaks,
            rule: decision.rule_id.clone(),
            reason: decision.reason.clone(),
            classes: decision.classes.clone(),
            latency_ms,
            audit_ms: 0.0,
            unscored,
        };
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        let delivery = if late {
            (
                Delivery::Late,
                Some(
                    "answered after the client's deadline; the agent acted on its own timeout \
                      behaviour (the limbic hook denies)"
                        .to_string(),
                ),
            )
        } else {
            (Delivery::Delivered, None)
        };
        let audit_started = Instant::now();
        self.record(
            input, &outcome, &decision, policy, ts_start, stress, delivery,
        )?;
        outcome.audit_ms = audit_started.elapsed().as_secs_f64() * 1e3;
        outcome.latency_ms += outcome.audit_ms;
        Ok(outcome)
    }

    /// The step's number: the one asked for, which must come after the session's last
    /// recorded step, or the next one. The last step is read from the audit log the first
    /// time a session is seen, so numbering survives a restart.
    fn next_step_index(&mut self, session: &str, requested: Option<u64>) -> Result<u64> {
        let next = match self.next_step.get(session) {
            Some(n) => *n,
            None => match &self.audit {
                Some(audit) => audit
                    .last_step(session)?
                    .map_or(1, |last| last.saturating_add(1)),
                None => 1,
            },
        };
        match requested {
            None => Ok(next),
            Some(0) => Err(StepNumberRejected(format!(
                "step numbers start at 1 (session {session:?})"
            ))
            .into()),
            Some(s) if s > MAX_STEP_NUMBER => {
                Err(StepNumberRejected(format!("step {s} is larger than {MAX_STEP_NUMBER}")).into())
            }
            Some(s) if s < next => Err(StepNumberRejected(format!(
                "step {s} of session {session:?} is not after its last recorded step {}",
                next - 1
            ))
            .into()),
            Some(s) => Ok(s),
        }
    }

    /// Restores a session's stress tracker from its last audited state, the first time a
    /// session is seen (after a restart a spiking session must not restart calm).
    fn restore_tracker(&mut self, session: &str) -> Result<()> {
        let (Ok(scorer), Some(audit)) = (&mut self.scorer, &self.audit) else {
            return Ok(());
        };
        if scorer.tracker_history(session).is_some() {
            return Ok(());
        }
        let Some(state) = audit.session_state(session)? else {
            return Ok(());
        };
        let history: Vec<f32> = state
            .tracker_state
            .as_ref()
            .and_then(|v| v.get("signatures"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if !history.is_empty() {
            scorer.restore_tracker(session, &history)?;
        }
        Ok(())
    }

    /// What identifies the configuration in force: policy and pack hashes.
    fn config_key(&self, policy: &Policy) -> (String, String) {
        let pack_hash = self
            .scorer
            .as_ref()
            .map(|s| s.pack_hash().to_string())
            .unwrap_or_default();
        (policy.hash().to_string(), pack_hash)
    }

    /// Records the configuration in force as a config row of the audit chain (`reload`
    /// says what changed, when a reload is the reason).
    pub(crate) fn write_config(
        &mut self,
        policy: &Policy,
        reload: Option<serde_json::Value>,
    ) -> Result<()> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let key = self.config_key(policy);
        let mut settings = serde_json::json!({
            "policy": policy.origin(),
            "fail_mode": policy.fail_mode().as_str(),
            "store_text": match (self.store_text, audit.options().store_text) {
                (_, false) => StoreText::Hash.as_str(),
                (mode, true) => mode.as_str(),
            },
        });
        if let Some(profile) = self.reloader.as_ref().and_then(|r| r.profile()) {
            settings["profile"] = serde_json::json!(profile.origin);
        }
        if let Some(reload) = reload {
            settings["reload"] = reload;
        }
        audit.record_config(&ConfigRecord {
            policy_hash: key.0.clone(),
            pack_hash: key.1.clone(),
            model_sha256: self.model_sha.clone(),
            model_name: self.model_name.clone(),
            limbic_version: env!("CARGO_PKG_VERSION").to_string(),
            settings,
            started_at_ms: limbic_audit::now_unix_ms(),
        })?;
        self.recorded_config = Some(key);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        input: &StepRequest,
        outcome: &StepAnswer,
        decision: &Decision,
        policy: &Policy,
        ts_start: i64,
        stress: f32,
        (delivery, delivery_note): (Delivery, Option<String>),
    ) -> Result<()> {
        let tracker_state = self
            .scorer
            .as_ref()
            .ok()
            .and_then(|s| s.tracker_history(&input.session))
            .map(|history| serde_json::json!({ "signatures": history }));
        if self.recorded_config.as_ref() != Some(&self.config_key(policy)) {
            self.write_config(policy, None)?;
        }
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        // Redacted before the record exists: no unredacted copy reaches the log.
        let redact = self.store_text == StoreText::Redacted;
        let (text, args, reason) = if redact {
            (
                crate::redact::redact_text(&input.text),
                crate::redact::redact_json(&input.action.args),
                crate::redact::redact_text(&decision.reason),
            )
        } else {
            (
                input.text.clone(),
                input.action.args.clone(),
                decision.reason.clone(),
            )
        };
        let step_record = StepRecord {
            session_id: input.session.clone(),
            step_index: outcome.step,
            ts_start_ms: ts_start,
            ts_end_ms: limbic_audit::now_unix_ms(),
            tool: input.action.tool.clone(),
            args,
            text,
            scores: outcome.scores.clone(),
            peak: outcome.peaks.clone(),
            stress_signature: stress,
            spike: outcome.spike,
            latency_ms: outcome.latency_ms,
            tracker_state,
        };
        let decision_record = DecisionRecord {
            decision: outcome.decision.as_str().to_string(),
            reroute: decision
                .reroute
                .as_ref()
                .map(|r| r.kind().as_str().to_string()),
            rule_id: decision.rule_id.clone(),
            reason,
            classes: decision.classes.clone(),
            delivery,
            delivery_note,
        };
        let receipt = audit.append_step(&step_record, &decision_record)?;
        // Only after the commit: what leaves the host is never ahead of the log.
        if let Some(sink) = &mut self.commit_sink {
            sink(&StepRow::committed(
                &step_record,
                &decision_record,
                &receipt,
                audit.options().store_text,
            ));
        }
        Ok(())
    }
}

/// What a guard is built from. Every field has a sane default: the default model (fetched
/// when missing), its committed pack, the built-in default policy and `$LIMBIC_HOME/audit.db`.
/// A device [`Profile`] supplies defaults for the sizing fields and is checked at build.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// A GGUF path or a known model name.
    pub model: Option<String>,
    /// Vector pack directory.
    pub pack: Option<PathBuf>,
    /// Policy file (TOML); when `None`, the profile's policy, else the built-in default.
    pub policy: Option<PathBuf>,
    /// Audit database (SQLite).
    pub audit: Option<PathBuf>,
    /// How each step's text is written to the audit log.
    pub store_text: StoreText,
    /// KV-cache size in tokens shared by the resident sessions.
    pub n_ctx: u32,
    /// Sessions that keep their KV cache resident at once.
    pub max_sessions: u32,
    /// Tokens per decode call.
    pub n_batch: u32,
    /// CPU threads (`None`: all cores).
    pub threads: Option<u32>,
    /// Layers offloaded to a GPU (`None`: the build's default — all with a GPU feature).
    pub gpu_layers: Option<u32>,
    /// Host memory for the saved KV state of evicted sessions, in MiB: sessions beyond
    /// `max_sessions` whose state fits are restored, the rest re-decoded.
    pub state_budget_mb: u64,
    /// The device profile these values came from: its memory budget, tapped-layer cap and
    /// fail mode are checked when the guard is built.
    pub profile: Option<Profile>,
}

/// Saved-session budget when neither a flag nor a profile sets one: about 128 agents'
/// sessions of a few hundred tokens each for the default model (23 KB of f16 KV per
/// token), so a daemon serving that many restores them instead of re-decoding.
pub const DEFAULT_STATE_BUDGET_MB: u64 = 2048;

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            model: None,
            pack: None,
            policy: None,
            audit: None,
            store_text: StoreText::Full,
            n_ctx: 8192,
            max_sessions: 8,
            n_batch: EngineConfig::default().n_batch,
            threads: None,
            gpu_layers: None,
            state_budget_mb: DEFAULT_STATE_BUDGET_MB,
            profile: None,
        }
    }
}

impl GuardConfig {
    pub fn audit_path(&self) -> Result<PathBuf> {
        match &self.audit {
            Some(p) => Ok(p.clone()),
            None => crate::home::default_audit_path(),
        }
    }

    /// The policy: the explicit file, else the profile's (a built-in name or a file), else the
    /// built-in default. A profile whose own policy has another fail mode than the profile
    /// is refused; an explicitly chosen policy wins with a warning.
    fn load_policy(&self, watch_policy: bool) -> Result<PolicySource> {
        let source = match (&self.policy, &self.profile) {
            (Some(p), _) => PolicySource::load(Some(p), watch_policy)?,
            (None, Some(profile)) => match profile.policy_path() {
                Some(p) => PolicySource::load(Some(&p), watch_policy)?,
                None => PolicySource::Fixed(Arc::new(
                    Policy::builtin(&profile.policy)
                        .with_context(|| format!("profile {}", profile.origin))?,
                )),
            },
            (None, None) => PolicySource::load(None, watch_policy)?,
        };
        if let Some(profile) = &self.profile {
            let mode = source.current().fail_mode();
            if mode != profile.fail_mode {
                let msg = format!(
                    "profile {} expects fail_mode {} but the policy {} has fail_mode {}",
                    profile.name,
                    profile.fail_mode.as_str(),
                    source.current().origin(),
                    mode.as_str()
                );
                if self.policy.is_none() {
                    anyhow::bail!("{msg}");
                }
                tracing::warn!("{msg} (the explicitly chosen policy wins)");
            }
        }
        Ok(source)
    }

    /// Builds the guard. A policy or audit problem is an error, and so is a model that does
    /// not fit the profile; a model or pack that cannot be used leaves the guard in the
    /// policy's fail mode (reported by `scorer_error`).
    pub fn build(&self, watch_policy: bool) -> Result<Guard> {
        let policy = self.load_policy(watch_policy)?;
        let audit_path = self.audit_path()?;
        if let Some(dir) = audit_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            limbic_audit::create_private_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let audit = AuditLog::open(
            &audit_path,
            AuditOptions {
                store_text: self.store_text != StoreText::Hash,
                ..Default::default()
            },
        )?;
        let parts = self.load_parts();
        if let (Some(profile), Ok((model, pack))) = (&self.profile, &parts) {
            let estimate = check_profile(profile, model, pack, self.n_ctx, self.n_batch)?;
            tracing::info!("profile {}: {estimate}", profile.name);
        }
        let scorer = parts
            .and_then(|(model, pack)| self.scorer_from(model, &pack))
            .map_err(|e| format!("{e:#}"));
        let mut guard = Guard::new(scorer, policy, Some(audit));
        guard.set_store_text(self.store_text);
        Ok(guard)
    }

    fn load_parts(&self) -> Result<(Arc<limbic_engine::Model>, Pack)> {
        let model = crate::models::load_model_with(
            self.model.as_deref(),
            self.gpu_layers
                .map(|g| i32::try_from(g).unwrap_or(i32::MAX)),
        )?;
        let pack_dir = match &self.pack {
            Some(p) => p.clone(),
            None => crate::home::default_pack_dir(&model)?,
        };
        let pack = Pack::load(&pack_dir)
            .with_context(|| format!("loading vector pack {}", pack_dir.display()))?;
        Ok((model, pack))
    }

    fn scorer_from(&self, model: Arc<limbic_engine::Model>, pack: &Pack) -> Result<Scorer> {
        let mut scorer = Scorer::new(
            model,
            pack,
            EngineConfig {
                n_ctx: self.n_ctx,
                max_sessions: self.max_sessions,
                n_batch: self.n_batch,
                threads: self.threads.map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
                ..Default::default()
            },
        )?;
        let bytes = self.state_budget_mb.saturating_mul(1 << 20);
        scorer
            .engine_mut()
            .set_state_budget(usize::try_from(bytes).unwrap_or(usize::MAX));
        Ok(scorer)
    }

    pub fn build_scorer(&self) -> Result<Scorer> {
        let (model, pack) = self.load_parts()?;
        self.scorer_from(model, &pack)
    }
}

/// The pack's tapped layers and the model's size against the profile.
fn check_profile(
    profile: &Profile,
    model: &limbic_engine::Model,
    pack: &Pack,
    n_ctx: u32,
    n_batch: u32,
) -> Result<crate::profile::MemoryEstimate> {
    let mut layers: Vec<u32> = pack
        .manifest()
        .emotions
        .values()
        .flat_map(|e| e.layers.iter().copied())
        .collect();
    layers.sort_unstable();
    layers.dedup();
    check_profile_taps(profile, model, layers.len(), n_ctx, n_batch)
}

/// [`Profile::check_fits`] for `model` with `tapped` probe layers.
pub(crate) fn check_profile_taps(
    profile: &Profile,
    model: &limbic_engine::Model,
    tapped: usize,
    n_ctx: u32,
    n_batch: u32,
) -> Result<crate::profile::MemoryEstimate> {
    let info = model.info();
    profile.check_fits(
        &ModelShape {
            file_bytes: info.weights_bytes,
            n_layer: info.n_layer,
            n_embd: info.n_embd,
            n_vocab: info.n_vocab,
        },
        n_ctx,
        n_batch,
        u32::try_from(tapped).unwrap_or(u32::MAX),
    )
}
