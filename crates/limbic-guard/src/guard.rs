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
use limbic_audit::{AuditLog, AuditOptions, ConfigRecord, DecisionRecord, StepRecord};
use limbic_engine::EngineConfig;
use limbic_policy::{Decision, Policy, PolicyHandle, PolicyWatcher, StepView};
use limbic_vectors::Pack;

use crate::api::{StepAnswer, StepRequest};
use crate::scorer::Scorer;

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
        }
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

    /// The hot-reload handle, when the policy file is watched.
    pub fn policy_handle(&self) -> Option<PolicyHandle> {
        self.policy.handle()
    }

    /// Scores, decides and records one step. The outcome is returned only after its audit
    /// row is committed; an audit failure is an error (the decision is not acknowledged).
    pub fn check(&mut self, input: &StepRequest) -> Result<StepAnswer> {
        input.validate()?;
        let started = Instant::now();
        let ts_start = limbic_audit::now_unix_ms();
        let policy = self.policy.current();
        let step_index = match input.step {
            Some(s) => s,
            None => self.next_step.get(&input.session).copied().unwrap_or(1),
        };
        self.next_step.insert(input.session.clone(), step_index + 1);

        let reading = match &mut self.scorer {
            Ok(scorer) => scorer
                .score(&input.session, &input.text, &input.action.text())
                .map_err(|e| format!("{e:#}")),
            Err(reason) => Err(reason.clone()),
        };
        let (decision, unscored, stress, spike, scores, peaks): (Decision, _, _, _, _, _) =
            match &reading {
                Ok(r) => {
                    let named: Vec<(&str, f32)> =
                        r.scores.iter().map(|(n, z)| (n.as_str(), *z)).collect();
                    let view = StepView {
                        tool: &input.action.tool,
                        args: &input.action.args,
                        stress: r.signature,
                        spike: r.track.spike,
                        scores: &named,
                    };
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
        let audit_started = Instant::now();
        self.record(input, &outcome, &decision, &policy, ts_start, stress)?;
        outcome.audit_ms = audit_started.elapsed().as_secs_f64() * 1e3;
        outcome.latency_ms += outcome.audit_ms;
        Ok(outcome)
    }

    fn record(
        &mut self,
        input: &StepRequest,
        outcome: &StepAnswer,
        decision: &Decision,
        policy: &Policy,
        ts_start: i64,
        stress: f32,
    ) -> Result<()> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let pack_hash = self
            .scorer
            .as_ref()
            .map(|s| s.pack_hash().to_string())
            .unwrap_or_default();
        let key = (policy.hash().to_string(), pack_hash.clone());
        if self.recorded_config.as_ref() != Some(&key) {
            audit.record_config(&ConfigRecord {
                policy_hash: policy.hash().to_string(),
                pack_hash,
                model_sha256: self.model_sha.clone(),
                model_name: self.model_name.clone(),
                limbic_version: env!("CARGO_PKG_VERSION").to_string(),
                settings: serde_json::json!({
                    "policy": policy.origin(),
                    "fail_mode": policy.fail_mode().as_str(),
                    "store_text": audit.options().store_text,
                }),
                started_at_ms: limbic_audit::now_unix_ms(),
            })?;
            self.recorded_config = Some(key);
        }
        audit.append_step(
            &StepRecord {
                session_id: input.session.clone(),
                step_index: u32::try_from(outcome.step).unwrap_or(u32::MAX),
                ts_start_ms: ts_start,
                ts_end_ms: limbic_audit::now_unix_ms(),
                tool: input.action.tool.clone(),
                args: input.action.args.clone(),
                text: input.text.clone(),
                scores: outcome.scores.clone(),
                peak: outcome.peaks.clone(),
                stress_signature: stress,
                spike: outcome.spike,
                latency_ms: outcome.latency_ms,
            },
            &DecisionRecord {
                decision: outcome.decision.as_str().to_string(),
                reroute: decision
                    .reroute
                    .as_ref()
                    .map(|r| r.kind().as_str().to_string()),
                rule_id: decision.rule_id.clone(),
                reason: decision.reason.clone(),
                classes: decision.classes.clone(),
            },
        )?;
        Ok(())
    }
}

/// What a guard is built from. Every field has a sane default: the default model (fetched
/// when missing), its committed pack, the built-in default policy and `$LIMBIC_HOME/audit.db`.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// A GGUF path or a known model name.
    pub model: Option<String>,
    /// Vector pack directory.
    pub pack: Option<PathBuf>,
    /// Policy file (TOML).
    pub policy: Option<PathBuf>,
    /// Audit database (SQLite).
    pub audit: Option<PathBuf>,
    /// Store only the sha256 of each step's text in the audit log.
    pub hash_text: bool,
    /// KV-cache size in tokens shared by the resident sessions.
    pub n_ctx: u32,
    /// Sessions that keep their KV cache resident at once.
    pub max_sessions: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            model: None,
            pack: None,
            policy: None,
            audit: None,
            hash_text: false,
            n_ctx: 8192,
            max_sessions: 8,
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

    /// Builds the guard. A policy or audit problem is an error; a model or pack problem
    /// leaves the guard in the policy's fail mode (reported by `scorer_error`).
    pub fn build(&self, watch_policy: bool) -> Result<Guard> {
        let policy = PolicySource::load(self.policy.as_deref(), watch_policy)?;
        let audit_path = self.audit_path()?;
        if let Some(dir) = audit_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let audit = AuditLog::open(
            &audit_path,
            AuditOptions {
                store_text: !self.hash_text,
                ..Default::default()
            },
        )?;
        let scorer = self.build_scorer().map_err(|e| format!("{e:#}"));
        Ok(Guard::new(scorer, policy, Some(audit)))
    }

    pub fn build_scorer(&self) -> Result<Scorer> {
        let model = crate::models::load_model(self.model.as_deref())?;
        let pack_dir = match &self.pack {
            Some(p) => p.clone(),
            None => crate::home::default_pack_dir(&model)?,
        };
        let pack = Pack::load(&pack_dir)
            .with_context(|| format!("loading vector pack {}", pack_dir.display()))?;
        Scorer::new(
            model,
            &pack,
            EngineConfig {
                n_ctx: self.n_ctx,
                max_sessions: self.max_sessions,
                ..Default::default()
            },
        )
    }
}
