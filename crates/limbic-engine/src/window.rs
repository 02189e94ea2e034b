//! Session windows and KV residency: overflow (KV shift, or re-decode where the memory
//! cannot shift), LRU eviction with the evicted sequence's state saved to host memory,
//! and restore (or re-decode) when a session comes back.

use crate::engine::{AppendOutcome, Engine};
use crate::error::EngineError;

impl Engine {
    /// Makes session `id` ready to take `incoming` more tokens: resident, with room in its
    /// window. Returns its KV sequence. `protect` are sessions that must stay resident
    /// (the others of the same batch).
    pub(crate) fn prepare(
        &mut self,
        id: &str,
        incoming: usize,
        protect: &[&str],
        outcome: &mut AppendOutcome,
    ) -> Result<i32, EngineError> {
        let (resident, saved) = self
            .sessions
            .get(id)
            .map(|s| (s.seq.is_some(), s.saved.is_some()))
            .ok_or_else(|| EngineError::UnknownSession(id.to_string()))?;
        // A saved state is restored before an overflow so that the overflow can shift it
        // (dropping tokens first would invalidate the saved positions).
        if !resident && saved {
            self.ensure_resident(id, protect, outcome)?;
        }
        self.make_room(id, incoming, outcome)?;
        self.ensure_resident(id, protect, outcome)
    }

    /// Drops the oldest whole steps of `id` if `incoming` more tokens would not fit its
    /// window. A resident session's KV cache is shifted (the pinned header stays at its
    /// positions, later tokens move down); otherwise the retained tokens are re-decoded
    /// on residency.
    fn make_room(
        &mut self,
        id: &str,
        incoming: usize,
        outcome: &mut AppendOutcome,
    ) -> Result<(), EngineError> {
        let window = self.session_window();
        let shift = self.shift;
        let Some(session) = self.sessions.get_mut(id) else {
            return Err(EngineError::UnknownSession(id.to_string()));
        };
        if session.pinned + incoming > window {
            return Err(EngineError::InputTooLarge {
                what: "step piece (tokens)",
                limit: window - session.pinned,
                got: incoming,
            });
        }
        if session.tokens.len() + incoming <= window {
            return Ok(());
        }
        let shifting = shift && session.seq.is_some();
        // A shift is cheap, so it keeps three quarters of the window; a re-decode keeps half
        // so that overflows (and their re-decodes) stay rare.
        let keep = if shifting { window * 3 / 4 } else { window / 2 };
        let target = keep.max(session.pinned + incoming);
        let mut retained = session.tokens.len();
        let mut drop_tokens = 0;
        while retained + incoming > target {
            let Some(n) = session.steps.pop_front() else {
                break;
            };
            retained -= n;
            drop_tokens += n;
            outcome.dropped_steps += 1;
        }
        let pinned = session.pinned;
        session.tokens.drain(pinned..pinned + drop_tokens);
        let mut keep_resident = false;
        if let (Some(seq), true) = (session.seq, shifting) {
            let (p0, p1) = (pinned as i32, (pinned + drop_tokens) as i32);
            if self.ctx.remove_range(seq, p0, p1) {
                self.ctx.shift_positions(seq, p1, -(drop_tokens as i32));
                session.shift_pending = true;
                keep_resident = true;
                outcome.shifted_tokens += drop_tokens;
                self.stats.shifts += 1;
                self.stats.shifted_out_tokens += drop_tokens as u64;
            }
        }
        if !keep_resident {
            // Positions changed: the KV cache (or a saved state) no longer matches and is
            // rebuilt from the retained tokens on residency.
            self.discard_residency(id);
            self.drop_saved(id);
        }
        Ok(())
    }

    /// Gives the session a KV sequence, evicting the least recently used other session if
    /// needed, then restores its saved state or re-decodes its retained tokens.
    pub(crate) fn ensure_resident(
        &mut self,
        id: &str,
        protect: &[&str],
        outcome: &mut AppendOutcome,
    ) -> Result<i32, EngineError> {
        self.clock += 1;
        let clock = self.clock;
        let session = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownSession(id.to_string()))?;
        session.last_used = clock;
        if let Some(seq) = session.seq {
            return Ok(seq);
        }
        if self.free_seqs.is_empty() {
            let victim = self
                .sessions
                .iter()
                .filter(|(k, s)| {
                    s.seq.is_some() && k.as_str() != id && !protect.contains(&k.as_str())
                })
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                self.evict(&victim);
            }
        }
        let seq = self
            .free_seqs
            .pop()
            .ok_or_else(|| EngineError::Context("no free KV sequence".into()))?;
        self.ctx.clear_sequence(seq);
        let saved = self.take_saved(id);
        let history = self
            .sessions
            .get(id)
            .map(|s| s.tokens.clone())
            .unwrap_or_default();
        if let Some(data) = saved {
            let restored = self.ctx.restore_sequence(seq, &data)
                && self.ctx.sequence_max_pos(seq) + 1 == history.len() as i32;
            if restored {
                self.stats.states_restored += 1;
                outcome.restored = true;
                if let Some(s) = self.sessions.get_mut(id) {
                    s.seq = Some(seq);
                }
                return Ok(seq);
            }
            self.ctx.clear_sequence(seq);
            self.stats.restore_failures += 1;
            tracing::warn!(
                session = id,
                "saved KV state was refused; re-decoding instead"
            );
        }
        if !history.is_empty() {
            // An observer session's history is rebuilt as it was built: tapped (rows
            // ignored) only so that the graph can stop after the deepest tapped layer.
            let truncated = self.stops_early(id);
            if let Err(e) = self.decode_run(seq, 0, &history, truncated, truncated, &mut |_| {}) {
                self.ctx.clear_sequence(seq);
                self.free_seqs.push(seq);
                return Err(e);
            }
            outcome.redecoded_tokens += history.len();
            self.stats.redecodes += 1;
            self.stats.redecoded_tokens += history.len() as u64;
        }
        if let Some(s) = self.sessions.get_mut(id) {
            s.seq = Some(seq);
            s.shift_pending = false;
        }
        Ok(seq)
    }

    /// LRU eviction: saves the sequence's KV state to host memory when the budget allows
    /// (restored on the session's next step), then frees the sequence.
    fn evict(&mut self, id: &str) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let Some(seq) = session.seq else {
            return;
        };
        let savable = !session.shift_pending && !session.tokens.is_empty();
        let last_used = session.last_used;
        self.stats.evictions += 1;
        let mut saved = None;
        if savable && self.state_budget > 0 {
            let size = self.ctx.sequence_state_size(seq);
            if size > 0 && size <= self.state_budget {
                self.trim_saved_states(size, Some(last_used));
                if self.saved_bytes + size <= self.state_budget {
                    saved = self.ctx.save_sequence(seq, size);
                }
            }
        }
        match &saved {
            Some(data) => {
                self.saved_bytes += data.len();
                self.stats.states_saved += 1;
            }
            None => self.stats.states_dropped += 1,
        }
        self.ctx.clear_sequence(seq);
        self.free_seqs.push(seq);
        if let Some(s) = self.sessions.get_mut(id) {
            s.seq = None;
            s.shift_pending = false;
            s.saved = saved;
        }
    }

    /// Drops least recently used saved states until `incoming` more bytes fit the budget;
    /// with `newer_than`, only states of sessions used before that clock are dropped (a
    /// state is never displaced by an older one).
    pub(crate) fn trim_saved_states(&mut self, incoming: usize, newer_than: Option<u64>) {
        while self.saved_bytes + incoming > self.state_budget {
            let oldest = self
                .sessions
                .iter()
                .filter(|(_, s)| s.saved.is_some())
                .filter(|(_, s)| newer_than.is_none_or(|t| s.last_used < t))
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else {
                return;
            };
            self.drop_saved(&oldest);
            self.stats.states_dropped += 1;
        }
    }

    /// Frees the session's KV sequence without saving it (its contents are suspect or
    /// stale); the retained tokens are re-decoded on next use.
    pub(crate) fn discard_residency(&mut self, id: &str) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.shift_pending = false;
            if let Some(seq) = session.seq.take() {
                self.ctx.clear_sequence(seq);
                self.free_seqs.push(seq);
            }
        }
    }

    fn take_saved(&mut self, id: &str) -> Option<Vec<u8>> {
        let saved = self.sessions.get_mut(id)?.saved.take()?;
        self.saved_bytes -= saved.len();
        Some(saved)
    }

    pub(crate) fn drop_saved(&mut self, id: &str) {
        self.take_saved(id);
    }
}
