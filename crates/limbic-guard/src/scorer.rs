//! The scorer: the model, its sessions and the probes. It appends a step to the agent's
//! session, pools the probes over the agent's words and updates the session's tracker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use limbic_engine::{Engine, EngineConfig, Model};
use limbic_probe::{
    Probe, ProbeSet, SessionTracker, SignatureWeights, StepAccumulator, TrackState, TrackerConfig,
};
use limbic_vectors::Pack;

use crate::render::{RenderedStep, TurnFrame};

/// Probe data owned in one place; a borrowed `ProbeSet` is built from it per step
/// (fixed-capacity, no allocation).
pub(crate) struct ProbeBank {
    emotions: Vec<String>,
    probes: Vec<(usize, u32, Vec<f32>, f32, f32)>,
    weights: SignatureWeights,
    n_embd: usize,
}

impl ProbeBank {
    /// One value per emotion, named, taken from the pooled scores by `f`.
    fn per_emotion(
        &self,
        scores: &limbic_probe::StepScores,
        f: fn(&limbic_probe::EmotionScore) -> f32,
    ) -> Vec<(String, f32)> {
        self.emotions
            .iter()
            .zip(scores.emotions())
            .map(|(n, s)| (n.clone(), f(s)))
            .collect()
    }

    pub(crate) fn from_pack(pack: &Pack) -> Result<ProbeBank> {
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

    pub(crate) fn probe_set(&self) -> Result<ProbeSet<'_>> {
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
    pack_dir: PathBuf,
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
            pack_dir: pack.dir().to_path_buf(),
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

    /// Hash of the pack's files (recorded in the audit's configuration rows).
    pub fn pack_hash(&self) -> &str {
        &self.pack_hash
    }

    /// Swaps in another pack for the same model (hot reload): its probes, calibration and
    /// signature weights, and the tapped layers it needs. Sessions, their KV caches and
    /// stress trackers stay (scores are in calibrated units whatever the pack). A pack for
    /// another model, or one that cannot be used, is refused and nothing changes.
    pub fn replace_pack(&mut self, pack: &Pack) -> Result<()> {
        let info = self.engine.model().info();
        pack.check_model(&info.sha256, info.n_embd)?;
        let bank = ProbeBank::from_pack(pack)?;
        let hash = pack_hash(pack.dir())?;
        // Layers tapped beyond the probes' own (evaluation taps) stay tapped.
        let old = self.bank.layers();
        let mut taps = bank.layers();
        taps.extend(
            self.engine
                .tapped_layers()
                .iter()
                .filter(|l| !old.contains(l)),
        );
        taps.sort_unstable();
        taps.dedup();
        self.engine.set_taps(&taps)?;
        self.bank = bank;
        self.pack_hash = hash;
        self.pack_dir = pack.dir().to_path_buf();
        Ok(())
    }

    /// The directory the pack in use was loaded from.
    pub fn pack_dir(&self) -> &Path {
        &self.pack_dir
    }

    /// How many layers the probes tap (a profile caps it).
    pub fn probe_layer_count(&self) -> usize {
        self.bank.layers().len()
    }

    pub fn emotions(&self) -> &[String] {
        &self.bank.emotions
    }

    /// The session's recent stress signatures (oldest first), if it has a tracker.
    pub fn tracker_history(&self, session: &str) -> Option<Vec<f32>> {
        self.trackers
            .get(session)
            .map(|t| t.recent_signatures().collect())
    }

    /// Rebuilds a session's tracker by replaying its recent signatures (the tracker is a
    /// function of its history; older steps only survive in the EWMA, whose weight on
    /// them has decayed).
    pub fn restore_tracker(&mut self, session: &str, history: &[f32]) -> Result<()> {
        let mut tracker =
            SessionTracker::new(self.tracker_config).map_err(|e| anyhow!("tracker: {e:?}"))?;
        for &signature in history {
            tracker
                .update(signature)
                .map_err(|e| anyhow!("restoring the tracker of {session:?}: {e:?}"))?;
        }
        self.trackers.insert(session.to_string(), tracker);
        Ok(())
    }

    /// Appends the step to its session and scores the agent's words.
    pub fn score(&mut self, session: &str, words: &str, action: &str) -> Result<Reading> {
        self.score_many(&[(session, words, action)])
            .pop()
            .unwrap_or_else(|| Err(anyhow!("no reading for the step")))
    }

    /// Scores several steps `(session, words, action)` in shared forward passes (the engine
    /// batches the sessions' new tokens across KV sequences). Trackers are updated in
    /// item order. One reading per item, in order.
    pub fn score_many(&mut self, items: &[(&str, &str, &str)]) -> Vec<Result<Reading>> {
        let model = self.engine.model().clone();
        let set = match self.bank.probe_set() {
            Ok(set) => set,
            Err(e) => return items.iter().map(|_| Err(anyhow!("{e:#}"))).collect(),
        };
        let rendered: Vec<Result<RenderedStep>> = items
            .iter()
            .map(|(_, words, action)| {
                if words.trim().is_empty() {
                    bail!("empty step text: nothing to score");
                }
                self.frame.render(&model, words, Some(action))
            })
            .collect();
        // Only renderable items go to the engine; `slots[k]` is the item of batch entry k.
        let slots: Vec<usize> = (0..items.len()).filter(|&i| rendered[i].is_ok()).collect();
        let batch: Vec<(&str, &[i32])> = slots
            .iter()
            .filter_map(|&i| match &rendered[i] {
                Ok(step) => Some((items[i].0, step.tokens.as_slice())),
                Err(_) => None,
            })
            .collect();
        let mut accs: Vec<StepAccumulator> =
            items.iter().map(|_| StepAccumulator::new(&set)).collect();
        let mut feed_errors: Vec<Option<limbic_probe::ProbeError>> =
            items.iter().map(|_| None).collect();
        let appended = self.engine.append_many(&batch, &mut |k, tap| {
            let i = slots[k];
            if let Ok(step) = &rendered[i] {
                if let Err(e) = accs[i].feed_token(&set, tap.rows.iter(), step.token_kind(tap)) {
                    feed_errors[i].get_or_insert(e);
                }
            }
        });
        let mut decoded: Vec<Option<std::result::Result<(), String>>> =
            items.iter().map(|_| None).collect();
        for (k, r) in appended.into_iter().enumerate() {
            decoded[slots[k]] = Some(r.map(|_| ()).map_err(|e| e.to_string()));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, rendered) in rendered.into_iter().enumerate() {
            let result = match (rendered, decoded[i].take()) {
                (Err(e), _) => Err(e),
                (Ok(_), Some(Err(e))) => Err(anyhow!("decoding the step: {e}")),
                (Ok(_), None) => Err(anyhow!("the engine gave no result for the step")),
                (Ok(_), Some(Ok(()))) => {
                    let scores = accs[i].finish();
                    reading(
                        &self.bank,
                        &mut self.trackers,
                        self.tracker_config,
                        items[i].0,
                        &scores,
                        feed_errors[i].take(),
                    )
                }
            };
            out.push(result);
        }
        out
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
                let kind = step.token_kind(tap);
                observer(tap, kind == limbic_probe::TokenKind::Scored);
                if let Err(e) = acc.feed_token(&set, tap.rows.iter(), kind) {
                    feed_error.get_or_insert(e);
                }
            })?;
        let scores = acc.finish();
        reading(
            &self.bank,
            &mut self.trackers,
            self.tracker_config,
            session,
            &scores,
            feed_error,
        )
    }
}

/// Hash of a pack's manifest and vector files, for the audit's configuration record.
pub(crate) fn pack_hash(dir: &Path) -> Result<String> {
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

/// Feeds `signature` to the session's tracker, creating it on first use.
fn update_tracker(
    trackers: &mut HashMap<String, SessionTracker>,
    config: TrackerConfig,
    session: &str,
    signature: f32,
) -> Result<TrackState> {
    let tracker = match trackers.entry(session.to_string()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(SessionTracker::new(config).map_err(|e| anyhow!("tracker: {e:?}"))?)
        }
    };
    tracker
        .update(signature)
        .map_err(|e| anyhow!("tracker: {e:?}"))
}

/// The step's reading from its pooled scores; updates the session's tracker. (A free
/// function so it can run while a `ProbeSet` still borrows the bank.)
fn reading(
    bank: &ProbeBank,
    trackers: &mut HashMap<String, SessionTracker>,
    config: TrackerConfig,
    session: &str,
    scores: &limbic_probe::StepScores,
    feed_error: Option<limbic_probe::ProbeError>,
) -> Result<Reading> {
    if scores.scored_tokens == 0 {
        bail!(
            "no token of the step could be scored{}",
            feed_error.map(|e| format!(" ({e:?})")).unwrap_or_default()
        );
    }
    let signature = bank.weights.stress_signature(scores);
    let track = update_tracker(trackers, config, session, signature)?;
    Ok(Reading {
        scores: bank.per_emotion(scores, |s| s.mean_z),
        peaks: bank.per_emotion(scores, |s| s.peak_z),
        signature,
        track,
    })
}

/// Probe readings of one generated turn (native mode).
#[derive(Debug, Clone)]
pub struct TurnReading {
    pub text: String,
    pub tokens: usize,
    pub stop: limbic_engine::StopReason,
    /// As tapped (the control vector's push included).
    pub raw: (f32, Vec<(String, f32)>),
    /// With the control vector's direct push subtracted from the tapped rows: at each
    /// tapped layer, the sum of the vectors added at that layer and the ones before it.
    pub corrected: (f32, Vec<(String, f32)>),
    /// The new prompt tokens, as the model read them (`None`: nothing new was read).
    pub prompt: Option<(f32, Vec<(String, f32)>)>,
}

impl Scorer {
    /// Control vectors that move each `toward` emotion's probe reading up by `strength`
    /// sigmas and each `away` one down, at `layers` (empty: every layer the pack probes
    /// those emotions at). A layer an emotion has no probe at is skipped for it.
    pub fn steering_vectors(
        &self,
        toward: &[String],
        away: &[String],
        strength: f32,
        layers: &[u32],
    ) -> Result<Vec<(u32, Vec<f32>)>> {
        let mut out: std::collections::BTreeMap<u32, Vec<f32>> = Default::default();
        let n_layer = self.engine.model().info().n_layer;
        for (names, sign) in [(toward, 1.0f32), (away, -1.0f32)] {
            for name in names {
                let index = self
                    .bank
                    .emotions
                    .iter()
                    .position(|e| e == name)
                    .ok_or_else(|| anyhow!("steering: the pack has no emotion {name:?}"))?;
                for (_, layer, dir, _, std) in self.bank.probes.iter().filter(|p| p.0 == index) {
                    if (!layers.is_empty() && !layers.contains(layer)) || *layer == 0 {
                        continue;
                    }
                    if *layer >= n_layer {
                        bail!("steering: layer {layer} is not in the model");
                    }
                    // dir / |dir|² · std shifts the calibrated z by exactly one.
                    let norm2: f32 = dir.iter().map(|v| v * v).sum();
                    if norm2 <= f32::EPSILON {
                        continue;
                    }
                    let scale = sign * strength * std / norm2;
                    let v = out
                        .entry(*layer)
                        .or_insert_with(|| vec![0.0; self.bank.n_embd]);
                    v.iter_mut().zip(dir).for_each(|(o, d)| *o += scale * d);
                }
            }
        }
        if out.is_empty() {
            bail!("steering: none of the chosen layers has a probe for the steered emotions");
        }
        Ok(out.into_iter().collect())
    }

    /// The session's tracker state if `signature` were its next step (nothing changes).
    pub fn peek_track(&self, session: &str, signature: f32) -> Result<TrackState> {
        let mut tracker = match self.trackers.get(session) {
            Some(t) => t.clone(),
            None => {
                SessionTracker::new(self.tracker_config).map_err(|e| anyhow!("tracker: {e:?}"))?
            }
        };
        tracker
            .update(signature)
            .map_err(|e| anyhow!("tracker: {e:?}"))
    }

    /// Records `signature` as the session's next step.
    pub fn commit_track(&mut self, session: &str, signature: f32) -> Result<TrackState> {
        update_tracker(&mut self.trackers, self.tracker_config, session, signature)
    }

    /// Appends `prompt` to the engine session `engine_id` and generates, with `steering`
    /// added for this turn only. Every new prompt token and every generated token is
    /// projected; `on_piece` sees each generated piece and may stop generation.
    pub fn generate_turn(
        &mut self,
        engine_id: &str,
        prompt: &[i32],
        params: &limbic_engine::GenerateParams,
        steering: Option<&[(u32, Vec<f32>)]>,
        on_piece: &mut dyn FnMut(&str) -> std::ops::ControlFlow<()>,
    ) -> Result<TurnReading> {
        use limbic_probe::TokenKind;
        self.engine.set_steering(steering)?;
        let set = self.bank.probe_set()?;
        let mut acc_prompt = StepAccumulator::new(&set);
        let mut acc_raw = StepAccumulator::new(&set);
        let mut acc_corrected = StepAccumulator::new(&set);
        let mut corrected_rows: Vec<(u32, Vec<f32>)> = Vec::new();
        // A vector added at layer l rides the residual stream into every later layer's
        // output, so the direct push at a tapped layer L is the sum of the vectors at l <= L.
        let pushes: Vec<(u32, Vec<f32>)> = steering
            .map(|vectors| {
                self.engine
                    .tapped_layers()
                    .iter()
                    .map(|&tapped| {
                        let mut sum = vec![0.0f32; self.bank.n_embd];
                        for (_, v) in vectors.iter().filter(|(l, _)| *l <= tapped) {
                            sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
                        }
                        (tapped, sum)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let result = self.engine.generate(
            engine_id,
            prompt,
            params,
            &mut |tap| {
                // The attention sink's residual dwarfs everything else (as in observing).
                let kind = if tap.pos == 0 {
                    TokenKind::Skipped
                } else {
                    TokenKind::Scored
                };
                let _ = acc_prompt.feed_token(&set, tap.rows.iter(), kind);
            },
            &mut |tap, piece| {
                let _ = acc_raw.feed_token(&set, tap.rows.iter(), TokenKind::Scored);
                match steering {
                    Some(_) => {
                        corrected_rows.clear();
                        corrected_rows.extend(tap.rows.iter().map(|(layer, row)| {
                            let mut row = row.to_vec();
                            if let Some((_, push)) = pushes.iter().find(|(l, _)| *l == layer) {
                                row.iter_mut().zip(push).for_each(|(r, p)| *r -= p);
                            }
                            (layer, row)
                        }));
                        let rows = corrected_rows.iter().map(|(l, r)| (*l, r.as_slice()));
                        let _ = acc_corrected.feed_token(&set, rows, TokenKind::Scored);
                    }
                    None => {
                        let _ = acc_corrected.feed_token(&set, tap.rows.iter(), TokenKind::Scored);
                    }
                }
                on_piece(piece)
            },
        );
        // Steering is per turn: never leave it on for the next request.
        let cleared = self.engine.set_steering(None);
        let outcome = result?;
        cleared?;
        let named = |scores: &limbic_probe::StepScores| -> Option<(f32, Vec<(String, f32)>)> {
            (scores.scored_tokens > 0).then(|| {
                (
                    self.bank.weights.stress_signature(scores),
                    self.bank.per_emotion(scores, |s| s.mean_z),
                )
            })
        };
        let prompt_reading = named(&acc_prompt.finish());
        // A turn that ended at once (no token) is read from its prompt instead.
        let fallback = || {
            prompt_reading
                .clone()
                .ok_or_else(|| anyhow!("nothing of the turn could be scored"))
        };
        let raw = match named(&acc_raw.finish()) {
            Some(r) => r,
            None => fallback()?,
        };
        let corrected = match named(&acc_corrected.finish()) {
            Some(r) => r,
            None => fallback()?,
        };
        Ok(TurnReading {
            tokens: outcome.tokens.len(),
            text: outcome.text,
            stop: outcome.stop,
            raw,
            corrected,
            prompt: prompt_reading,
        })
    }
}
