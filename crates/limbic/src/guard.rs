//! The guard: one agent step in, one audited decision out.
//!
//! `Scorer` owns the engine and the probes: it appends the step to the agent's session,
//! pools the probes over the agent's words and updates the session's tracker. `Guard` adds
//! the policy and the audit log, and falls back to the policy's fail mode when scoring is
//! impossible (no model, no pack, a decode error).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use limbic_audit::{AuditLog, AuditOptions, ConfigRecord, DecisionRecord, StepRecord};
use limbic_engine::{Engine, EngineConfig, Model};
use limbic_policy::{Decision, Policy, PolicyHandle, PolicyWatcher, StepView};
use limbic_probe::{
    Probe, ProbeSet, SessionTracker, SignatureWeights, StepAccumulator, TokenKind, TrackState,
    TrackerConfig,
};
use limbic_vectors::Pack;
use serde::{Deserialize, Serialize};

use crate::render::TurnFrame;

/// Largest accepted step text (bytes); longer steps are refused, not truncated.
pub const MAX_STEP_TEXT: usize = 32 * 1024;
/// Largest accepted action arguments (bytes of JSON).
pub const MAX_ACTION_ARGS: usize = 64 * 1024;

/// One agent step as it arrives (JSON Lines, HTTP body, hook translation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInput {
    pub session: String,
    #[serde(default)]
    pub step: Option<u64>,
    pub text: String,
    pub action: ActionInput,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionInput {
    pub tool: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

impl ActionInput {
    /// The tool and its arguments as one line of text.
    pub fn text(&self) -> String {
        match &self.args {
            serde_json::Value::Null => self.tool.clone(),
            args => format!("{} {}", self.tool, args),
        }
    }
}

/// The audit log used when none is given: `$LIMBIC_HOME/audit.db`.
pub fn default_audit_path() -> Result<PathBuf> {
    Ok(crate::models::limbic_home()?.join("audit.db"))
}

impl StepInput {
    pub fn validate(&self) -> Result<()> {
        if self.session.trim().is_empty() || self.session.len() > 256 {
            bail!("session must be 1..256 characters");
        }
        if self.text.len() > MAX_STEP_TEXT {
            bail!(
                "step text is {} bytes; the limit is {MAX_STEP_TEXT}",
                self.text.len()
            );
        }
        if self.action.tool.trim().is_empty() || self.action.tool.len() > 256 {
            bail!("action.tool must be 1..256 characters");
        }
        let args_len = self.action.args.to_string().len();
        if args_len > MAX_ACTION_ARGS {
            bail!("action.args is {args_len} bytes of JSON; the limit is {MAX_ACTION_ARGS}");
        }
        Ok(())
    }

    /// The action as the model reads it: the tool and its arguments.
    pub fn action_text(&self) -> String {
        self.action.text()
    }
}

/// The guard's answer for one step (also the `limbic check` output line).
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub session: String,
    pub step: u64,
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reroute: Option<limbic_policy::Reroute>,
    pub stress: f32,
    pub spike: bool,
    pub scores: BTreeMap<String, f32>,
    pub peaks: BTreeMap<String, f32>,
    pub rule: String,
    pub reason: String,
    pub classes: Vec<String>,
    pub latency_ms: f64,
    /// Of `latency_ms`, the time spent committing the audit rows.
    pub audit_ms: f64,
    /// Why the probes could not score this step (the fail mode decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unscored: Option<String>,
}

/// Probe data owned in one place; a borrowed `ProbeSet` is built from it per step
/// (fixed-capacity, no allocation).
struct ProbeBank {
    emotions: Vec<String>,
    probes: Vec<(usize, u32, Vec<f32>, f32, f32)>,
    weights: SignatureWeights,
    n_embd: usize,
}

impl ProbeBank {
    fn from_pack(pack: &Pack) -> Result<ProbeBank> {
        let emotions: Vec<String> = pack.emotions().map(str::to_string).collect();
        let mut probes = Vec::new();
        for (index, name) in emotions.iter().enumerate() {
            let entry = pack
                .emotion(name)
                .ok_or_else(|| anyhow!("pack lists {name} but has no entry"))?;
            for &layer in &entry.layers {
                let direction = pack
                    .direction(name, layer)
                    .ok_or_else(|| anyhow!("pack: {name} has no direction at layer {layer}"))?;
                let cal = entry
                    .calibration_for(layer)
                    .ok_or_else(|| anyhow!("pack: {name} has no calibration at layer {layer}"))?;
                let sign = f32::from(entry.sign.signum());
                // Fold the sign into the direction so a higher z always means "more".
                let dir: Vec<f32> = direction.iter().map(|v| v * sign).collect();
                probes.push((index, layer, dir, cal.mean as f32 * sign, cal.std as f32));
            }
        }
        let names: Vec<&str> = emotions.iter().map(String::as_str).collect();
        let weights = match pack.signature() {
            Some(sig) => {
                let w: Vec<f32> = names
                    .iter()
                    .map(|n| sig.weights.get(*n).copied().unwrap_or(0.0) as f32)
                    .collect();
                SignatureWeights::new(&w)
            }
            None => SignatureWeights::defaults_for(&names),
        }
        .map_err(|e| anyhow!("signature weights: {e:?}"))?;
        let bank = ProbeBank {
            emotions,
            probes,
            weights,
            n_embd: pack.model().n_embd as usize,
        };
        bank.probe_set()?;
        Ok(bank)
    }

    fn probe_set(&self) -> Result<ProbeSet<'_>> {
        let mut set = ProbeSet::new(self.n_embd, self.emotions.len())
            .map_err(|e| anyhow!("probe set: {e:?}"))?;
        for (emotion, layer, dir, mean, std) in &self.probes {
            set.push(Probe {
                emotion: *emotion,
                layer: *layer,
                direction: dir,
                mean: *mean,
                std: *std,
            })
            .map_err(|e| anyhow!("probe {emotion}@{layer}: {e:?}"))?;
        }
        Ok(set)
    }

    fn layers(&self) -> Vec<u32> {
        let mut layers: Vec<u32> = self.probes.iter().map(|p| p.1).collect();
        layers.sort_unstable();
        layers.dedup();
        layers
    }
}

/// Probe readings of one step.
#[derive(Debug, Clone)]
pub struct Reading {
    pub scores: Vec<(String, f32)>,
    pub peaks: Vec<(String, f32)>,
    pub signature: f32,
    pub track: TrackState,
}

/// The model, its session state and the probes.
pub struct Scorer {
    engine: Engine,
    frame: TurnFrame,
    bank: ProbeBank,
    trackers: HashMap<String, SessionTracker>,
    tracker_config: TrackerConfig,
    pack_hash: String,
}

impl Scorer {
    /// `engine_config.taps` adds layers to observe beyond the probes' own (for evaluation).
    pub fn new(model: Arc<Model>, pack: &Pack, engine_config: EngineConfig) -> Result<Scorer> {
        let info = model.info();
        pack.check_model(&info.sha256, info.n_embd)?;
        let bank = ProbeBank::from_pack(pack)?;
        let frame = TurnFrame::for_model(&model)?;
        let mut taps = bank.layers();
        taps.extend_from_slice(&engine_config.taps);
        let engine = Engine::new(
            model,
            EngineConfig {
                taps,
                ..engine_config
            },
        )?;
        Ok(Scorer {
            engine,
            frame,
            bank,
            trackers: HashMap::new(),
            tracker_config: TrackerConfig::default(),
            pack_hash: pack_hash(pack.dir())?,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        self.engine.model()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Direct engine access (benchmarks decode baselines on the same context).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn emotions(&self) -> &[String] {
        &self.bank.emotions
    }

    /// Appends the step to its session and scores the agent's words.
    pub fn score(&mut self, session: &str, words: &str, action: &str) -> Result<Reading> {
        self.score_observed(session, words, action, &mut |_, _| {})
    }

    /// [`Scorer::score`], also showing every token's tapped rows to `observer`, with
    /// whether the token counts as the agent's words.
    pub fn score_observed(
        &mut self,
        session: &str,
        words: &str,
        action: &str,
        observer: &mut dyn FnMut(&limbic_engine::TokenTap<'_>, bool),
    ) -> Result<Reading> {
        if words.trim().is_empty() {
            bail!("empty step text: nothing to score");
        }
        let model = self.engine.model().clone();
        let step = self.frame.render(&model, words, Some(action))?;
        let set = self.bank.probe_set()?;
        let mut acc = StepAccumulator::new(&set);
        let mut feed_error = None;
        self.engine
            .append_tokens(session, &step.tokens, &mut |tap| {
                let kind = if tap.pos == 0 || !step.words.contains(&tap.index) {
                    TokenKind::Skipped
                } else {
                    TokenKind::Scored
                };
                observer(tap, kind == TokenKind::Scored);
                if let Err(e) = acc.feed_token(&set, tap.rows.iter(), kind) {
                    feed_error.get_or_insert(e);
                }
            })?;
        let scores = acc.finish();
        if scores.scored_tokens == 0 {
            bail!(
                "no token of the step could be scored{}",
                feed_error.map(|e| format!(" ({e:?})")).unwrap_or_default()
            );
        }
        let signature = self.bank.weights.stress_signature(&scores);
        let config = self.tracker_config;
        let tracker = match self.trackers.entry(session.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(SessionTracker::new(config).map_err(|e| anyhow!("tracker: {e:?}"))?)
            }
        };
        let track = tracker
            .update(signature)
            .map_err(|e| anyhow!("tracker: {e:?}"))?;
        let per_emotion = |f: fn(&limbic_probe::EmotionScore) -> f32| {
            self.bank
                .emotions
                .iter()
                .zip(scores.emotions())
                .map(|(n, s)| (n.clone(), f(s)))
                .collect::<Vec<_>>()
        };
        Ok(Reading {
            scores: per_emotion(|s| s.mean_z),
            peaks: per_emotion(|s| s.peak_z),
            signature,
            track,
        })
    }
}

/// Hash of a pack's manifest and vector files, for the audit's configuration record.
fn pack_hash(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading pack {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut hasher = Sha256::new();
    for path in entries {
        hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    Ok(hex::encode(hasher.finalize()))
}

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
    pub fn check(&mut self, input: &StepInput) -> Result<StepOutcome> {
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
                .score(&input.session, &input.text, &input.action_text())
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
        let mut outcome = StepOutcome {
            session: input.session.clone(),
            step: step_index,
            decision: decision.kind.as_str().to_string(),
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
        input: &StepInput,
        outcome: &StepOutcome,
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
            .map(|s| s.pack_hash.clone())
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
                decision: outcome.decision.clone(),
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

/// Options shared by every command that builds a guard.
#[derive(clap::Args, Debug, Clone)]
pub struct GuardArgs {
    /// A GGUF path or a known model name (default: the default model, fetched if missing).
    #[arg(long, env = "LIMBIC_MODEL")]
    pub model: Option<String>,
    /// Vector pack directory (default: the committed pack for the model, under vectors/).
    #[arg(long, env = "LIMBIC_PACK")]
    pub pack: Option<PathBuf>,
    /// Policy file (TOML); default: the built-in default policy.
    #[arg(long, env = "LIMBIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// Audit database (SQLite); default: $LIMBIC_HOME/audit.db.
    #[arg(long, env = "LIMBIC_AUDIT")]
    pub audit: Option<PathBuf>,
    /// Store only the sha256 of each step's text in the audit log, not the text.
    #[arg(long)]
    pub hash_text: bool,
    /// KV-cache size in tokens shared by the resident sessions.
    #[arg(long, default_value_t = 8192)]
    pub n_ctx: u32,
    /// Sessions that keep their KV cache resident at once.
    #[arg(long, default_value_t = 8)]
    pub max_sessions: u32,
}

impl GuardArgs {
    pub fn audit_path(&self) -> Result<PathBuf> {
        match &self.audit {
            Some(p) => Ok(p.clone()),
            None => default_audit_path(),
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
        let model = crate::load_model(self.model.as_deref())?;
        let pack_dir = match &self.pack {
            Some(p) => p.clone(),
            None => crate::vectors_cmd::default_pack_dir(&model)?,
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
