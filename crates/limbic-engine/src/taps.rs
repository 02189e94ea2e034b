//! Residual-stream taps: which layers are captured and the buffer they are copied into.
//!
//! The buffer is sized once (tapped layers × batch capacity × n_embd) when taps are set, so
//! the per-token path never allocates. The eval callback (in `raw`) fills it during a decode;
//! the engine then hands it to the caller one token at a time as a [`TokenTap`].

/// Capture state shared with llama.cpp's eval callback through a raw pointer.
pub(crate) struct TapState {
    n_embd: usize,
    capacity_tokens: usize,
    /// `slot_of_layer[L]` = index of layer L among the tapped layers, if tapped.
    slot_of_layer: Vec<Option<u16>>,
    layers: Vec<u32>,
    /// slots × capacity_tokens × n_embd floats.
    buf: Vec<f32>,
    filled_rows: Vec<usize>,
    /// Off while re-decoding history nobody asked to see, so those graphs are not split.
    pub(crate) capture: bool,
    /// Stop the forward pass once the deepest tapped layer is copied: an observer step
    /// needs no logits and no later layer (see `Engine::set_exit_after_taps`).
    pub(crate) exit_after_deepest: bool,
    /// First anomaly seen inside the callback (it cannot return errors itself).
    pub(crate) fault: Option<String>,
}

impl TapState {
    pub(crate) fn new(n_embd: usize, n_layer: usize, capacity_tokens: usize) -> Self {
        TapState {
            n_embd,
            capacity_tokens,
            slot_of_layer: vec![None; n_layer],
            layers: Vec::new(),
            buf: Vec::new(),
            filled_rows: Vec::new(),
            capture: true,
            exit_after_deepest: false,
            fault: None,
        }
    }

    /// Replaces the tapped layer set (sorted, deduplicated) and sizes the buffer for it.
    pub(crate) fn set_layers(&mut self, layers: &[u32]) {
        let mut layers = layers.to_vec();
        layers.sort_unstable();
        layers.dedup();
        self.slot_of_layer.iter_mut().for_each(|s| *s = None);
        for (slot, &layer) in layers.iter().enumerate() {
            self.slot_of_layer[layer as usize] = Some(slot as u16);
        }
        self.buf = vec![0.0; layers.len() * self.capacity_tokens * self.n_embd];
        self.filled_rows = vec![0; layers.len()];
        self.layers = layers;
    }

    pub(crate) fn layers(&self) -> &[u32] {
        &self.layers
    }

    /// Whether the callback should stop the graph after delivering `slot`'s rows.
    pub(crate) fn stops_after(&self, slot: usize) -> bool {
        self.exit_after_deepest && slot + 1 == self.layers.len()
    }

    pub(crate) fn begin_decode(&mut self) {
        self.filled_rows.iter_mut().for_each(|r| *r = 0);
        self.fault = None;
    }

    /// Maps a ggml tensor name to a tap slot: only `l_out-<L>` with L tapped qualifies.
    pub(crate) fn slot_for_tensor(&self, name: &[u8]) -> Option<usize> {
        if !self.capture || self.layers.is_empty() {
            return None;
        }
        let digits = name.strip_prefix(b"l_out-")?;
        if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let layer = digits
            .iter()
            .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
        self.slot_of_layer
            .get(layer)
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// Room for `rows` rows of `width` floats in `slot`, or `None` (recording a fault) when
    /// the tensor is not what we expect or would overflow the buffer.
    pub(crate) fn reserve_rows(
        &mut self,
        slot: usize,
        width: i64,
        rows: i64,
        contiguous_f32: bool,
    ) -> Option<&mut [f32]> {
        let layer = self.layers.get(slot).copied().unwrap_or(u32::MAX);
        if !contiguous_f32 || width != self.n_embd as i64 || rows < 0 {
            self.fault.get_or_insert_with(|| {
                format!(
                    "tap l_out-{layer}: expected contiguous f32 rows of {} values",
                    self.n_embd
                )
            });
            return None;
        }
        let rows = rows as usize;
        let start = self.filled_rows[slot];
        if start + rows > self.capacity_tokens {
            self.fault.get_or_insert_with(|| {
                format!(
                    "tap l_out-{layer}: {} rows exceed the batch capacity",
                    start + rows
                )
            });
            return None;
        }
        self.filled_rows[slot] = start + rows;
        let base = (slot * self.capacity_tokens + start) * self.n_embd;
        Some(&mut self.buf[base..base + rows * self.n_embd])
    }

    /// Checks that every tapped layer delivered exactly one row per decoded token.
    pub(crate) fn check_complete(&self, n_tokens: usize) -> Result<(), String> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        for (slot, &rows) in self.filled_rows.iter().enumerate() {
            if rows != n_tokens {
                return Err(format!(
                    "tap l_out-{} delivered {rows} rows for {n_tokens} tokens",
                    self.layers[slot]
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn token_view(&self, index: usize) -> TapRows<'_> {
        TapRows { state: self, index }
    }
}

/// The tapped residual rows of one token: one `n_embd` row per tapped layer.
#[derive(Clone, Copy)]
pub struct TapRows<'a> {
    state: &'a TapState,
    index: usize,
}

impl<'a> TapRows<'a> {
    /// The tapped layers, ascending.
    pub fn layers(&self) -> &'a [u32] {
        &self.state.layers
    }

    /// The row of `layer`, if it is tapped.
    pub fn layer(&self, layer: u32) -> Option<&'a [f32]> {
        let slot = self
            .state
            .slot_of_layer
            .get(layer as usize)
            .copied()
            .flatten()?;
        Some(self.slot(usize::from(slot)))
    }

    /// `(layer, row)` pairs for every tapped layer.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &'a [f32])> + 'a {
        let this = *self;
        self.state
            .layers
            .iter()
            .enumerate()
            .map(move |(slot, &layer)| (layer, this.slot(slot)))
    }

    fn slot(&self, slot: usize) -> &'a [f32] {
        let n = self.state.n_embd;
        let base = (slot * self.state.capacity_tokens + self.index) * n;
        &self.state.buf[base..base + n]
    }
}

/// What a sink sees for each decoded token.
pub struct TokenTap<'a> {
    /// Position of the token in its session's sequence (0 = the first token, the attention sink).
    pub pos: i32,
    pub token: i32,
    /// Index of the token within the text passed to this call.
    pub index: usize,
    pub rows: TapRows<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_map_only_tapped_l_out_layers() {
        let mut s = TapState::new(4, 30, 8);
        s.set_layers(&[12, 3, 12]);
        assert_eq!(s.layers(), &[3, 12]);
        assert_eq!(s.slot_for_tensor(b"l_out-3"), Some(0));
        assert_eq!(s.slot_for_tensor(b"l_out-12"), Some(1));
        assert_eq!(s.slot_for_tensor(b"l_out-4"), None);
        assert_eq!(s.slot_for_tensor(b"l_out-99999"), None);
        assert_eq!(s.slot_for_tensor(b"attn_norm-3"), None);
        assert_eq!(s.slot_for_tensor(b"l_out-"), None);
        s.capture = false;
        assert_eq!(s.slot_for_tensor(b"l_out-3"), None);
    }

    #[test]
    fn rows_are_laid_out_per_token_and_checked() {
        let mut s = TapState::new(2, 4, 3);
        s.set_layers(&[1, 2]);
        s.begin_decode();
        s.reserve_rows(0, 2, 3, true)
            .unwrap()
            .copy_from_slice(&[1., 2., 3., 4., 5., 6.]);
        assert!(
            s.check_complete(3).is_err(),
            "layer 2 has not delivered yet"
        );
        s.reserve_rows(1, 2, 3, true)
            .unwrap()
            .copy_from_slice(&[7., 8., 9., 10., 11., 12.]);
        s.check_complete(3).unwrap();
        let t1 = s.token_view(1);
        assert_eq!(t1.layer(1), Some(&[3., 4.][..]));
        assert_eq!(t1.layer(2), Some(&[9., 10.][..]));
        assert_eq!(t1.layer(3), None);
        assert_eq!(t1.iter().count(), 2);
        assert!(
            s.reserve_rows(0, 2, 1, true).is_none(),
            "overflow is refused"
        );
        assert!(s.check_complete(3).is_err());
    }

    #[test]
    fn unexpected_tensor_shapes_are_faults_not_panics() {
        let mut s = TapState::new(2, 4, 3);
        s.set_layers(&[0]);
        s.begin_decode();
        assert!(s.reserve_rows(0, 3, 1, true).is_none());
        assert!(s.reserve_rows(0, 2, 1, false).is_none());
        assert!(s.check_complete(0).unwrap_err().contains("contiguous f32"));
    }
}
