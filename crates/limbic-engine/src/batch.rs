//! Appending runs of tokens to sessions: several sessions share each `llama_decode` batch
//! (one KV sequence each, as llama-server does with slots), and runs longer than a
//! session's window are decoded in pieces.

use std::collections::HashMap;

use crate::engine::{AppendOutcome, Engine};
use crate::error::EngineError;
use crate::raw::BatchToken;
use crate::taps::TokenTap;

/// One item of a batch while it is being decoded.
struct Member<'a> {
    item: usize,
    id: &'a str,
    tokens: &'a [i32],
    /// Tokens already decoded and committed.
    done: usize,
    /// Tokens per piece.
    piece: usize,
    outcome: AppendOutcome,
    failed: Option<EngineError>,
}

/// A token of the current wave, with where it goes.
struct Slot {
    member: usize,
    index: usize,
}

impl Engine {
    /// Appends one run of tokens to each of several sessions, decoding them together:
    /// the pieces of all items share `llama_decode` calls (split at `n_batch` tokens).
    ///
    /// - `sink(item_index, tap)` sees every new token of every item exactly once; the
    ///   tokens of one item arrive in order (`tap.index` counts from 0 within the item),
    ///   items interleave.
    /// - Sessions are created on first use. An item longer than the session's window
    ///   (minus its pinned header) is decoded in pieces of a quarter of that room, each a
    ///   step of its own, with the oldest steps shifted out as needed.
    /// - Items that name the same session are applied in order, in separate decodes; at
    ///   most [`Engine::max_resident_sessions`] sessions share a decode.
    /// - Each item gets its own result, in item order. Bad items (empty, token ids outside
    ///   the vocabulary) fail alone, before anything is decoded. A failed `llama_decode`
    ///   fails the items of that wave (their sessions are rebuilt from their retained
    ///   tokens on next use; rows already delivered stay delivered); later rounds go on.
    pub fn append_many(
        &mut self,
        items: &[(&str, &[i32])],
        sink: &mut dyn FnMut(usize, &TokenTap<'_>),
    ) -> Vec<Result<AppendOutcome, EngineError>> {
        let mut results: Vec<Option<Result<AppendOutcome, EngineError>>> =
            items.iter().map(|_| None).collect();
        let n_vocab = self.model.info().n_vocab as i32;
        let capacity = self.max_resident_sessions();
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut last_round: HashMap<&str, usize> = HashMap::new();
        for (i, &(id, tokens)) in items.iter().enumerate() {
            if tokens.is_empty() {
                results[i] = Some(Err(EngineError::EmptyText));
                continue;
            }
            // An invalid id would fail llama_decode for every session in the batch.
            if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
                results[i] = Some(Err(EngineError::Decode(format!(
                    "token id {bad} is outside the vocabulary (0..{n_vocab})"
                ))));
                continue;
            }
            if !self.sessions.contains_key(id) {
                if let Err(e) = self.open_session(id, &[]) {
                    results[i] = Some(Err(e));
                    continue;
                }
            }
            let mut r = last_round.get(id).map_or(0, |r| r + 1);
            while r < rounds.len() && rounds[r].len() >= capacity {
                r += 1;
            }
            if r == rounds.len() {
                rounds.push(Vec::new());
            }
            rounds[r].push(i);
            last_round.insert(id, r);
        }
        for round in rounds {
            let members: Vec<Member<'_>> = round
                .iter()
                .map(|&item| Member {
                    item,
                    id: items[item].0,
                    tokens: items[item].1,
                    done: 0,
                    piece: self.piece_size(items[item].0, items[item].1.len()),
                    outcome: AppendOutcome {
                        new_tokens: items[item].1.len(),
                        ..AppendOutcome::default()
                    },
                    failed: None,
                })
                .collect();
            for member in self.run_round(members, sink) {
                results[member.item] = Some(match member.failed {
                    Some(e) => Err(e),
                    None => Ok(member.outcome),
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::EmptyText)))
            .collect()
    }

    /// Tokens per piece for a run of `len` tokens: the whole run if it fits the room the
    /// pinned header leaves, else a quarter of that room, so that each piece still sees at
    /// least a quarter window of earlier context after an overflow (which keeps three
    /// quarters of the window when shifting, half when re-decoding).
    fn piece_size(&self, id: &str, len: usize) -> usize {
        let pinned = self.sessions.get(id).map_or(0, |s| s.pinned);
        let room = self.session_window().saturating_sub(pinned).max(1);
        if len <= room {
            len.max(1)
        } else {
            (room / 4).max(1)
        }
    }

    /// Decodes the items of one round (distinct sessions, all resident together) in
    /// waves: each wave takes the next piece of every unfinished item.
    fn run_round<'a>(
        &mut self,
        mut members: Vec<Member<'a>>,
        sink: &mut dyn FnMut(usize, &TokenTap<'_>),
    ) -> Vec<Member<'a>> {
        let protect: Vec<&str> = members.iter().map(|m| m.id).collect();
        let n_batch = self.config.n_batch as usize;
        let capture = !self.taps.layers().is_empty();
        loop {
            // Overflow and eviction first, for every member of the wave.
            let mut wave: Vec<(usize, i32, usize, usize)> = Vec::new();
            for (m, member) in members.iter_mut().enumerate() {
                if member.failed.is_some() || member.done == member.tokens.len() {
                    continue;
                }
                let n = member.piece.min(member.tokens.len() - member.done);
                match self.prepare(member.id, n, &protect, &mut member.outcome) {
                    Ok(seq) => {
                        let start = self.sessions.get(member.id).map_or(0, |s| s.tokens.len());
                        wave.push((m, seq, start, n));
                    }
                    Err(e) => {
                        self.discard_residency(member.id);
                        member.failed = Some(e);
                    }
                }
            }
            if wave.is_empty() {
                return members;
            }
            // One session that needs every layer keeps the whole batch's graph complete.
            let exit_early = wave.iter().all(|&(m, ..)| self.stops_early(members[m].id));
            let mut entries = Vec::new();
            let mut slots = Vec::new();
            for &(m, seq, start, n) in &wave {
                let member = &members[m];
                for k in 0..n {
                    entries.push(BatchToken {
                        token: member.tokens[member.done + k],
                        pos: (start + k) as i32,
                        seq,
                        output: false,
                    });
                    slots.push(Slot {
                        member: m,
                        index: member.done + k,
                    });
                }
            }
            for (chunk, chunk_slots) in entries.chunks_mut(n_batch).zip(slots.chunks(n_batch)) {
                if let Err(e) = self.decode_chunk(chunk, capture, exit_early) {
                    for &(m, ..) in &wave {
                        self.discard_residency(members[m].id);
                        members[m].failed =
                            Some(EngineError::Decode(format!("batched decode failed: {e}")));
                    }
                    return members;
                }
                self.stats.appended_tokens += chunk.len() as u64;
                if !capture {
                    continue;
                }
                for (i, (entry, slot)) in chunk.iter().zip(chunk_slots).enumerate() {
                    sink(
                        members[slot.member].item,
                        &TokenTap {
                            pos: entry.pos,
                            token: entry.token,
                            index: slot.index,
                            rows: self.taps.token_view(i),
                        },
                    );
                }
            }
            for &(m, _, start, n) in &wave {
                let member = &mut members[m];
                if let Some(s) = self.sessions.get_mut(member.id) {
                    s.tokens
                        .extend_from_slice(&member.tokens[member.done..member.done + n]);
                    s.steps.push_back(n);
                    s.shift_pending = false;
                }
                if member.outcome.pieces == 0 {
                    member.outcome.first_pos = start as i32;
                }
                member.outcome.pieces += 1;
                member.done += n;
            }
        }
    }

    /// Decodes one sequence's run from position `start` in chunks of `n_batch` tokens;
    /// with `capture`, `sink` sees each token's rows (indices count from 0 within `tokens`),
    /// and `exit_early` stops each graph after the deepest tapped layer.
    pub(crate) fn decode_run(
        &mut self,
        seq: i32,
        start: usize,
        tokens: &[i32],
        capture: bool,
        exit_early: bool,
        sink: &mut dyn FnMut(&TokenTap<'_>),
    ) -> Result<(), EngineError> {
        let capture = capture && !self.taps.layers().is_empty();
        let batch = self.config.n_batch as usize;
        let mut entries = Vec::with_capacity(tokens.len().min(batch));
        for (chunk_index, chunk) in tokens.chunks(batch).enumerate() {
            let offset = chunk_index * batch;
            entries.clear();
            entries.extend(chunk.iter().enumerate().map(|(i, &token)| BatchToken {
                token,
                pos: (start + offset + i) as i32,
                seq,
                output: false,
            }));
            self.decode_chunk(&mut entries, capture, exit_early)?;
            if !capture {
                continue;
            }
            for (i, entry) in entries.iter().enumerate() {
                sink(&TokenTap {
                    pos: entry.pos,
                    token: entry.token,
                    index: offset + i,
                    rows: self.taps.token_view(i),
                });
            }
        }
        Ok(())
    }

    /// One `llama_decode` call (at most `n_batch` tokens). Sets the output flags: every
    /// token when the last layer is tapped (llama.cpp prunes that layer to output rows),
    /// else the last token (for logits and sampling). With `exit_early` (and `capture`)
    /// the graph stops after the deepest tapped layer: no logits, later layers' KV unset.
    fn decode_chunk(
        &mut self,
        entries: &mut [BatchToken],
        capture: bool,
        exit_early: bool,
    ) -> Result<(), EngineError> {
        let all = capture && self.all_outputs;
        let n = entries.len();
        for (i, e) in entries.iter_mut().enumerate() {
            e.output = all || i + 1 == n;
        }
        self.taps.capture = capture;
        self.taps.exit_after_deepest = capture && exit_early;
        self.taps.begin_decode();
        self.stats.decode_calls += 1;
        self.stats.decoded_tokens += n as u64;
        if entries.iter().any(|e| e.seq != entries[0].seq) {
            self.stats.batched_decodes += 1;
        }
        self.ctx.decode(entries)?;
        if capture {
            self.taps.check_complete(n).map_err(EngineError::Taps)?;
        }
        Ok(())
    }
}
