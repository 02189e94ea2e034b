use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::error::EngineError;
use crate::model::Model;
use crate::raw::{ContextParams, RawContext, RawSampler};

use crate::taps::{TapState, TokenTap};

/// How an [`Engine`] is sized.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Total KV-cache size in tokens, shared by all resident sessions.
    pub n_ctx: u32,
    /// Tokens per llama_decode call (also the tap buffer's capacity).
    pub n_batch: u32,
    /// Sessions that can be resident (hold a KV sequence) at once. Each gets n_ctx / max_sessions tokens.
    pub max_sessions: u32,
    /// Layers to tap (0-based block indices; tensor `l_out-<L>`).
    pub taps: Vec<u32>,
    /// CPU threads; `None` = all available cores.
    pub threads: Option<i32>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            n_ctx: 8192,
            n_batch: 512,
            max_sessions: 8,
            taps: Vec::new(),
            threads: None,
        }
    }
}

/// Smallest per-session window that still holds a useful step.
const MIN_SESSION_TOKENS: u32 = 64;

/// Default cap on the host memory that saved KV states of evicted sessions may take
/// (see [`Engine::set_state_budget`]).
pub const DEFAULT_STATE_BUDGET: usize = 256 << 20;

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Tokens of the new text (all of them were decoded and tapped).
    pub new_tokens: usize,
    /// Position of the first new token in the session's sequence.
    pub first_pos: i32,
    /// Earlier steps dropped to make room (the session outgrew its window).
    pub dropped_steps: usize,
    /// Tokens re-decoded without taps to rebuild the session's KV cache (after dropping
    /// steps where the KV cache cannot shift, or because the session had been evicted and
    /// its saved state was not kept).
    pub redecoded_tokens: usize,
    /// Tokens shifted out of the KV cache (oldest steps dropped without re-decoding).
    pub shifted_tokens: usize,
    /// The session had been evicted and its KV state was restored from host memory.
    pub restored: bool,
    /// Pieces the run was decoded in (more than one when it was longer than the window allows).
    pub pieces: usize,
}

/// Sampling parameters for [`Engine::generate`].
#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    /// Constrains what may be sampled (tool calls that must parse).
    pub grammar: Option<Grammar>,
}

/// A GBNF grammar (root rule `root`) for [`GenerateParams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grammar {
    pub text: String,
    /// A regex over the output: the grammar applies only from its first match on
    /// (everything before it is free). `None`: it applies from the first token.
    pub lazy_trigger: Option<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 128,
            temperature: 0.0,
            top_p: 0.95,
            seed: 0,
            grammar: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfGeneration,
    MaxTokens,
    /// The per-token callback asked to stop.
    Callback,
    /// The session's window is full.
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct GenerateOutcome {
    pub tokens: Vec<i32>,
    pub text: String,
    pub stop: StopReason,
}

/// llama.cpp's own timings for this engine's context.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerfStats {
    pub prompt_ms: f64,
    pub prompt_tokens: i64,
    pub eval_ms: f64,
    pub eval_tokens: i64,
}

/// Counters since the engine was created (for benches, `/metrics` and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// `llama_decode` calls.
    pub decode_calls: u64,
    /// Calls whose batch held tokens of more than one session.
    pub batched_decodes: u64,
    /// Tokens passed to `llama_decode` (new tokens plus re-decoded history).
    pub decoded_tokens: u64,
    /// New tokens whose rows were delivered to a sink (or decoded untapped when no layer is tapped).
    pub appended_tokens: u64,
    /// Times a session's retained history was re-decoded, and the tokens that took.
    pub redecodes: u64,
    pub redecoded_tokens: u64,
    /// Window overflows handled by a KV shift, and the tokens shifted out.
    pub shifts: u64,
    pub shifted_out_tokens: u64,
    /// Sessions evicted from their KV sequence (LRU).
    pub evictions: u64,
    /// Evicted sessions whose KV state was saved to host memory / later restored from it.
    pub states_saved: u64,
    pub states_restored: u64,
    /// Saved states that llama.cpp refused on restore (the session was re-decoded instead).
    pub restore_failures: u64,
    /// Evictions whose state was not kept (over the budget, or displaced by newer ones).
    pub states_dropped: u64,
    /// Bytes of saved states held now.
    pub state_bytes: u64,
}

pub(crate) struct Session {
    /// KV sequence id while resident.
    pub(crate) seq: Option<i32>,
    /// The retained tokens, at positions 0..len when resident.
    pub(crate) tokens: Vec<i32>,
    /// Leading tokens that are never dropped (BOS and any pinned header).
    pub(crate) pinned: usize,
    /// Token count of each retained step after the pinned header, oldest first.
    pub(crate) steps: VecDeque<usize>,
    pub(crate) last_used: u64,
    /// KV state saved when the session was evicted (positions 0..tokens.len()).
    pub(crate) saved: Option<Vec<u8>>,
    /// Positions were shifted and the K-shift is applied only by the next decode: the KV
    /// data must not be saved until then.
    pub(crate) shift_pending: bool,
    /// Every layer's KV cells are computed (the session generates, or reads logits).
    /// Otherwise observer appends may stop at the deepest tapped layer.
    pub(crate) full_forward: bool,
}

/// A llama.cpp context with sessions, taps and steering. Not `Sync`: one caller at a time.
pub struct Engine {
    // Field order matters: the context must drop before the tap state it points into.
    pub(crate) ctx: RawContext,
    pub(crate) taps: Box<TapState>,
    pub(crate) model: Arc<Model>,
    pub(crate) config: EngineConfig,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) free_seqs: Vec<i32>,
    pub(crate) clock: u64,
    pub(crate) all_outputs: bool,
    steering_active: bool,
    /// Observer appends stop the forward pass at the deepest tapped layer.
    pub(crate) exit_after_taps: bool,
    /// The memory supports K-shift and shifting is enabled.
    pub(crate) shift: bool,
    pub(crate) state_budget: usize,
    pub(crate) saved_bytes: usize,
    pub(crate) stats: EngineStats,
}

impl Engine {
    pub fn new(model: Arc<Model>, config: EngineConfig) -> Result<Engine, EngineError> {
        let info = model.info();
        if config.max_sessions == 0 || config.n_batch == 0 {
            return Err(EngineError::Context(
                "max_sessions and n_batch must be at least 1".into(),
            ));
        }
        let per_session = config.n_ctx / config.max_sessions;
        if per_session < MIN_SESSION_TOKENS {
            return Err(EngineError::Context(format!(
                "context too small: {} tokens for {} sessions leaves {per_session} per session (need at least {MIN_SESSION_TOKENS})",
                config.n_ctx, config.max_sessions
            )));
        }
        let mut taps = Box::new(TapState::new(
            info.n_embd as usize,
            info.n_layer as usize,
            config.n_batch as usize,
        ));
        check_layers(&config.taps, info.n_layer)?;
        taps.set_layers(&config.taps);
        let threads = config.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(4)
        });
        let params = ContextParams {
            n_ctx: config.n_ctx,
            n_batch: config.n_batch,
            n_seq_max: config.max_sessions,
            n_threads: threads.max(1),
        };
        let taps_ptr: *mut TapState = &mut *taps;
        let ctx = RawContext::new(&model.raw, &params, taps_ptr)?;
        let all_outputs = config.taps.contains(&(info.n_layer - 1));
        let shift = ctx.can_shift();
        Ok(Engine {
            ctx,
            taps,
            free_seqs: (0..config.max_sessions as i32).rev().collect(),
            model,
            config,
            sessions: HashMap::new(),
            clock: 0,
            all_outputs,
            steering_active: false,
            exit_after_taps: true,
            shift,
            state_budget: DEFAULT_STATE_BUDGET,
            saved_bytes: 0,
            stats: EngineStats::default(),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tokens one session may hold before its oldest steps are dropped (`n_ctx /
    /// max_sessions`). Runs of any length are accepted; a run longer than the window
    /// minus the pinned header is decoded in pieces of a quarter of that room.
    pub fn session_window(&self) -> usize {
        (self.config.n_ctx / self.config.max_sessions) as usize
    }

    /// Sessions that can hold a KV sequence at once (and so share one batched decode).
    pub fn max_resident_sessions(&self) -> usize {
        self.config.max_sessions as usize
    }

    /// Counters since creation.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            state_bytes: self.saved_bytes as u64,
            ..self.stats
        }
    }

    /// Whether window overflows shift the KV cache (true when llama.cpp's memory supports
    /// it and shifting was not turned off) rather than re-decoding the retained tokens.
    pub fn kv_shift(&self) -> bool {
        self.shift
    }

    /// Turns KV shifting on (only effective if the memory supports it) or off (overflows
    /// then re-decode the retained half window, as a fresh decode would compute it).
    pub fn set_kv_shift(&mut self, enabled: bool) {
        self.shift = enabled && self.ctx.can_shift();
    }

    /// Whether observer appends (sessions that never generated) stop the forward pass once
    /// the deepest tapped layer is copied (on by default). The layers after it, the output
    /// norm and the logits are skipped: their results are never read when scoring a step,
    /// and they are a large part of the work (SmolLM2's pack taps nothing past layer 21 of
    /// 30). The tapped rows are the same either way.
    pub fn set_exit_after_taps(&mut self, enabled: bool) {
        self.exit_after_taps = enabled;
    }

    pub fn exit_after_taps(&self) -> bool {
        self.exit_after_taps
    }

    /// Whether decodes of session `id` may stop after the deepest tapped layer: the cut-off
    /// is on and the session never needed every layer.
    pub(crate) fn stops_early(&self, id: &str) -> bool {
        self.exit_after_taps && self.sessions.get(id).is_some_and(|s| !s.full_forward)
    }

    /// Marks a session (created if missing) as needing every layer: its logits are read
    /// or it generates. A KV cache that was cut short by observer appends is dropped and
    /// rebuilt in full on next use. [`Engine::generate`] does this itself.
    pub fn keep_full_forward(&mut self, id: &str) -> Result<(), EngineError> {
        if !self.sessions.contains_key(id) {
            self.open_session(id, &[])?;
        }
        let decoded = self
            .sessions
            .get(id)
            .is_some_and(|s| !s.full_forward && s.tokens.len() > s.pinned);
        if decoded {
            self.discard_residency(id);
            self.drop_saved(id);
        }
        if let Some(s) = self.sessions.get_mut(id) {
            s.full_forward = true;
        }
        Ok(())
    }

    /// Host memory (bytes) that saved KV states of evicted sessions may take; 0 turns
    /// saving off (evicted sessions are re-decoded). Lowering it drops the least recently
    /// used saved states at once.
    pub fn set_state_budget(&mut self, bytes: usize) {
        self.state_budget = bytes;
        self.trim_saved_states(0, None);
    }

    pub fn state_budget(&self) -> usize {
        self.state_budget
    }

    /// Whether the session holds a KV sequence now.
    pub fn is_resident(&self, id: &str) -> bool {
        self.sessions.get(id).is_some_and(|s| s.seq.is_some())
    }

    /// Whether an evicted session has a saved KV state waiting to be restored.
    pub fn has_saved_state(&self, id: &str) -> bool {
        self.sessions.get(id).is_some_and(|s| s.saved.is_some())
    }

    /// Replaces the tapped layers. Sizing happens here, never on the per-token path.
    pub fn set_taps(&mut self, layers: &[u32]) -> Result<(), EngineError> {
        check_layers(layers, self.model.info().n_layer)?;
        self.taps.set_layers(layers);
        self.config.taps = self.taps.layers().to_vec();
        // The last block's output is pruned to the output rows unless every token is an output.
        self.all_outputs = self.config.taps.contains(&(self.model.info().n_layer - 1));
        Ok(())
    }

    pub fn tapped_layers(&self) -> &[u32] {
        self.taps.layers()
    }

    pub fn has_session(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Number of tokens the session currently retains.
    pub fn session_len(&self, id: &str) -> Option<usize> {
        self.sessions.get(id).map(|s| s.tokens.len())
    }

    /// The tokens a session retains (pinned header, then the kept steps), oldest first.
    pub fn session_tokens(&self, id: &str) -> Option<&[i32]> {
        self.sessions.get(id).map(|s| s.tokens.as_slice())
    }

    /// Creates a session whose first tokens (BOS + `header`) are pinned: never dropped
    /// when the session outgrows its window. Replaces an existing session of that id.
    pub fn open_session(&mut self, id: &str, header: &[i32]) -> Result<(), EngineError> {
        self.close_session(id);
        let mut tokens: Vec<i32> = self.model.bos_token().into_iter().collect();
        tokens.extend_from_slice(header);
        if tokens.len() + 1 > self.session_window() / 2 {
            return Err(EngineError::InputTooLarge {
                what: "session header (tokens)",
                limit: self.session_window() / 2,
                got: tokens.len(),
            });
        }
        let pinned = tokens.len();
        self.sessions.insert(
            id.to_string(),
            Session {
                seq: None,
                tokens,
                pinned,
                steps: VecDeque::new(),
                last_used: 0,
                saved: None,
                shift_pending: false,
                full_forward: false,
            },
        );
        Ok(())
    }

    /// Forgets a session, frees its KV sequence and any saved state.
    pub fn close_session(&mut self, id: &str) {
        if let Some(session) = self.sessions.remove(id) {
            if let Some(seq) = session.seq {
                self.ctx.clear_sequence(seq);
                self.free_seqs.push(seq);
            }
            if let Some(saved) = session.saved {
                self.saved_bytes -= saved.len();
            }
        }
    }

    /// Tokenizes `text` (plain, no control tokens) and appends it as one step.
    pub fn append_text(
        &mut self,
        id: &str,
        text: &str,
        sink: &mut dyn FnMut(&TokenTap<'_>),
    ) -> Result<AppendOutcome, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::EmptyText);
        }
        let tokens = self.model.tokenize(text, false)?;
        self.append_tokens(id, &tokens, sink)
    }

    /// Appends one step of tokens to a session (created on first use), decoding only the
    /// new tokens; `sink` sees the tapped rows of each new token exactly once, in order.
    /// Any length is accepted (see [`Engine::session_window`]); this is
    /// [`Engine::append_many`] with one item.
    pub fn append_tokens(
        &mut self,
        id: &str,
        tokens: &[i32],
        sink: &mut dyn FnMut(&TokenTap<'_>),
    ) -> Result<AppendOutcome, EngineError> {
        self.append_many(&[(id, tokens)], &mut |_, tap| sink(tap))
            .pop()
            .unwrap_or(Err(EngineError::EmptyText))
    }

    /// Removes a session's tokens from `len` on (e.g. to regenerate with steering).
    pub fn rollback(&mut self, id: &str, len: usize) -> Result<(), EngineError> {
        let session = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownSession(id.to_string()))?;
        if len < session.pinned || len > session.tokens.len() {
            return Err(EngineError::Context(format!(
                "cannot roll session {id:?} back to {len} tokens (it holds {}, {} pinned)",
                session.tokens.len(),
                session.pinned
            )));
        }
        session.tokens.truncate(len);
        // Recount steps: drop whole steps past `len`, trimming the one it cuts.
        let mut kept = session.pinned;
        let mut steps = VecDeque::new();
        for &n in &session.steps {
            if kept >= len {
                break;
            }
            let take = n.min(len - kept);
            steps.push_back(take);
            kept += take;
        }
        session.steps = steps;
        match session.seq {
            Some(seq) => {
                // Whole-sequence clears never fail; a partial removal is followed by a check.
                let mem_ok = self.ctx.clear_sequence_from(seq, len as i32)
                    && self.ctx.sequence_max_pos(seq) < len as i32;
                if !mem_ok {
                    self.discard_residency(id);
                }
            }
            // The saved state holds the cut tokens; re-decode on next use instead.
            None => self.drop_saved(id),
        }
        Ok(())
    }

    /// Generates up to `params.max_tokens` after appending `prompt` to the session.
    /// `on_token` sees each sampled token with its tapped rows and may stop generation.
    pub fn generate(
        &mut self,
        id: &str,
        prompt: &[i32],
        params: &GenerateParams,
        on_prompt: &mut dyn FnMut(&TokenTap<'_>),
        on_token: &mut dyn FnMut(&TokenTap<'_>, &str) -> ControlFlow<()>,
    ) -> Result<GenerateOutcome, EngineError> {
        self.keep_full_forward(id)?;
        self.append_tokens(id, prompt, on_prompt)?;
        let mut sampler = RawSampler::new(
            &self.model.raw,
            params.temperature,
            params.top_p,
            params.seed,
            params.grammar.as_ref(),
        )?;
        let mut generated = Vec::new();
        let mut text = String::new();
        let mut stop = StopReason::MaxTokens;
        while generated.len() < params.max_tokens {
            let token = sampler.sample(&self.ctx);
            if self.model.is_end_of_generation(token) {
                stop = StopReason::EndOfGeneration;
                break;
            }
            let window = self.session_window();
            let (seq, pos) = match self.sessions.get(id) {
                Some(Session {
                    seq: Some(seq),
                    tokens,
                    ..
                }) if tokens.len() < window => (*seq, tokens.len()),
                _ => {
                    stop = StopReason::ContextFull;
                    break;
                }
            };
            let piece = self.model.token_piece(token);
            let mut flow = None;
            let result = self.decode_run(seq, pos, &[token], true, false, &mut |tap| {
                flow = Some(on_token(tap, &piece));
            });
            if let Err(e) = result {
                self.discard_residency(id);
                return Err(e);
            }
            // With no layer tapped the run captures nothing: the token is still reported.
            let flow = match flow {
                Some(flow) => flow,
                None => on_token(
                    &TokenTap {
                        pos: pos as i32,
                        token,
                        index: 0,
                        rows: self.taps.token_view(0),
                    },
                    &piece,
                ),
            };
            if let Some(s) = self.sessions.get_mut(id) {
                s.tokens.push(token);
                match s.steps.back_mut() {
                    Some(last) => *last += 1,
                    None => s.steps.push_back(1),
                }
            }
            generated.push(token);
            text.push_str(&piece);
            if flow.is_break() {
                stop = StopReason::Callback;
                break;
            }
        }
        Ok(GenerateOutcome {
            tokens: generated,
            text,
            stop,
        })
    }

    /// Adds `vector[layer]` to the output of each given block for tokens decoded from now on
    /// (KV entries already in the cache keep what they were computed with). `None` clears it.
    /// Layer 0 cannot be steered (llama.cpp's control vectors start at layer 1).
    pub fn set_steering(
        &mut self,
        steering: Option<&[(u32, Vec<f32>)]>,
    ) -> Result<(), EngineError> {
        let info = self.model.info();
        let n_embd = info.n_embd as usize;
        let Some(layers) = steering.filter(|l| !l.is_empty()) else {
            self.ctx
                .set_control_vector(None, info.n_embd as i32, (-1, -1))?;
            self.steering_active = false;
            return Ok(());
        };
        let mut data = vec![0.0f32; (info.n_layer as usize - 1) * n_embd];
        let (mut lo, mut hi) = (u32::MAX, 0);
        for (layer, vector) in layers {
            if *layer == 0 || *layer >= info.n_layer {
                return Err(EngineError::Steering(format!(
                    "layer {layer} cannot be steered (valid: 1..{})",
                    info.n_layer - 1
                )));
            }
            if vector.len() != n_embd {
                return Err(EngineError::Steering(format!(
                    "layer {layer}: vector has {} values, the model's width is {n_embd}",
                    vector.len()
                )));
            }
            if vector.iter().any(|v| !v.is_finite()) {
                return Err(EngineError::Steering(format!(
                    "layer {layer}: vector has non-finite values"
                )));
            }
            let off = (*layer as usize - 1) * n_embd;
            data[off..off + n_embd]
                .iter_mut()
                .zip(vector)
                .for_each(|(d, v)| *d += v);
            lo = lo.min(*layer);
            hi = hi.max(*layer);
        }
        self.ctx
            .set_control_vector(Some(&data), info.n_embd as i32, (lo as i32, hi as i32))?;
        self.steering_active = true;
        Ok(())
    }

    pub fn steering_active(&self) -> bool {
        self.steering_active
    }

    /// Logits of the last decoded token.
    pub fn last_logits(&self) -> Option<&[f32]> {
        self.ctx.logits(-1, self.model.info().n_vocab as usize)
    }

    pub fn perf(&self) -> PerfStats {
        self.ctx.perf()
    }
}

fn check_layers(layers: &[u32], n_layer: u32) -> Result<(), EngineError> {
    match layers.iter().find(|&&l| l >= n_layer) {
        Some(bad) => Err(EngineError::Taps(format!(
            "layer {bad} does not exist (the model has layers 0..{})",
            n_layer - 1
        ))),
        None => Ok(()),
    }
}
