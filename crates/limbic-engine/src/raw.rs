//! The audited FFI boundary: every `unsafe` block of limbic lives in this module.
//!
//! Each handle owns exactly one llama.cpp object and frees it on drop. The tap callback
//! copies residual-stream rows into a buffer owned by [`TapState`]; it never calls back
//! into user code, so no Rust closure (and no panic) ever runs inside llama.cpp's graph.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Once;

use llama_cpp_sys_2 as sys;

use crate::engine::Grammar;
use crate::error::EngineError;
use crate::model::CopyFormat;
use crate::taps::TapState;

static BACKEND_INIT: Once = Once::new();

/// Initialises llama.cpp's backends once per process and routes its logging to `tracing`.
pub(crate) fn init_backend() {
    BACKEND_INIT.call_once(|| {
        // SAFETY: `log_bridge` is a plain `extern "C"` function that stays valid for the whole
        // process; llama_backend_init has no preconditions and runs once (guarded by Once).
        unsafe {
            sys::llama_log_set(Some(log_bridge), std::ptr::null_mut());
            sys::llama_backend_init();
        }
    });
}

unsafe extern "C" fn log_bridge(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
    let message = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let message = message.trim_end();
    if message.is_empty() {
        return;
    }
    match level {
        sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama_cpp", "{message}"),
        sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama_cpp", "{message}"),
        sys::GGML_LOG_LEVEL_INFO => tracing::debug!(target: "llama_cpp", "{message}"),
        _ => tracing::trace!(target: "llama_cpp", "{message}"),
    }
}

/// An owned `llama_model`. Immutable after loading, so it may be shared across threads.
pub(crate) struct RawModel(NonNull<sys::llama_model>);

// SAFETY: llama.cpp does not mutate a model after loading; contexts only read it.
unsafe impl Send for RawModel {}
// SAFETY: see above — concurrent reads of a loaded model are supported by llama.cpp.
unsafe impl Sync for RawModel {}

impl RawModel {
    pub(crate) fn load(path: &Path, n_gpu_layers: i32) -> Result<Self, EngineError> {
        init_backend();
        let c_path =
            CString::new(path.to_string_lossy().as_bytes()).map_err(|_| EngineError::Load {
                path: path.to_path_buf(),
                reason: "path contains a NUL byte".into(),
            })?;
        // SAFETY: default params are plain data; the path is a valid C string for the call.
        let ptr = unsafe {
            let mut params = sys::llama_model_default_params();
            params.n_gpu_layers = n_gpu_layers;
            sys::llama_model_load_from_file(c_path.as_ptr(), params)
        };
        NonNull::new(ptr).map(RawModel).ok_or_else(|| EngineError::Load {
            path: path.to_path_buf(),
            reason: "llama.cpp could not load the model (run with RUST_LOG=llama_cpp=debug for its log)"
                .into(),
        })
    }

    /// Writes a copy of the GGUF at `src` to `dst` with its weight matrices stored as
    /// `format`, through llama.cpp's own quantizer (metadata and 1-D tensors are copied
    /// as they are).
    pub(crate) fn write_copy(
        src: &Path,
        dst: &Path,
        format: CopyFormat,
        threads: i32,
    ) -> Result<(), EngineError> {
        init_backend();
        let c = |p: &Path| {
            CString::new(p.to_string_lossy().as_bytes()).map_err(|_| EngineError::Load {
                path: p.to_path_buf(),
                reason: "path contains a NUL byte".into(),
            })
        };
        let (c_src, c_dst) = (c(src)?, c(dst)?);
        // SAFETY: default params are plain data (null pointers for imatrix and overrides);
        // both paths are valid C strings for the duration of the call.
        let status = unsafe {
            let mut params = sys::llama_model_quantize_default_params();
            params.ftype = match format {
                CopyFormat::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
                CopyFormat::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            };
            params.allow_requantize = true;
            params.nthread = threads;
            sys::llama_model_quantize(c_src.as_ptr(), c_dst.as_ptr(), &params)
        };
        if status == 0 {
            Ok(())
        } else {
            Err(EngineError::Load {
                path: src.to_path_buf(),
                reason: format!(
                    "llama.cpp could not write a {} copy (status {status})",
                    format.name()
                ),
            })
        }
    }

    pub(crate) fn as_ptr(&self) -> *const sys::llama_model {
        self.0.as_ptr()
    }

    pub(crate) fn vocab(&self) -> *const sys::llama_vocab {
        // SAFETY: the model pointer is valid for self's lifetime; the vocab lives inside it.
        unsafe { sys::llama_model_get_vocab(self.as_ptr()) }
    }

    pub(crate) fn n_embd(&self) -> i32 {
        // SAFETY: valid model pointer.
        unsafe { sys::llama_model_n_embd(self.as_ptr()) }
    }

    pub(crate) fn n_layer(&self) -> i32 {
        // SAFETY: valid model pointer.
        unsafe { sys::llama_model_n_layer(self.as_ptr()) }
    }

    pub(crate) fn n_vocab(&self) -> i32 {
        // SAFETY: valid vocab pointer.
        unsafe { sys::llama_vocab_n_tokens(self.vocab()) }
    }

    pub(crate) fn n_ctx_train(&self) -> i32 {
        // SAFETY: valid model pointer.
        unsafe { sys::llama_model_n_ctx_train(self.as_ptr()) }
    }

    pub(crate) fn bos(&self) -> Option<i32> {
        // SAFETY: valid vocab pointer.
        let (add, bos) = unsafe {
            (
                sys::llama_vocab_get_add_bos(self.vocab()),
                sys::llama_vocab_bos(self.vocab()),
            )
        };
        (add && bos >= 0).then_some(bos)
    }

    pub(crate) fn is_end_of_generation(&self, token: i32) -> bool {
        // SAFETY: valid vocab pointer; any token id is accepted.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token) }
    }

    pub(crate) fn chat_template(&self) -> Option<String> {
        // SAFETY: returns a pointer into the model's metadata (or NULL), valid while the model lives.
        let ptr = unsafe { sys::llama_model_chat_template(self.as_ptr(), std::ptr::null()) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, owned by the model.
        Some(
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// Tokenizes `text`; `add_special` adds BOS where the model wants it, `parse_special`
    /// turns template markers like `<|im_start|>` into their control tokens.
    pub(crate) fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<i32>, EngineError> {
        let len = i32::try_from(text.len()).map_err(|_| EngineError::InputTooLarge {
            what: "text",
            limit: i32::MAX as usize,
            got: text.len(),
        })?;
        let mut tokens = vec![0i32; text.len() + 8];
        for _ in 0..2 {
            let capacity = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
            // SAFETY: `text` is valid for `len` bytes; `tokens` has room for `capacity` ids.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab(),
                    text.as_ptr().cast(),
                    len,
                    tokens.as_mut_ptr(),
                    capacity,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            // A negative count is the size llama.cpp needs; retry once with it.
            tokens.resize(n.unsigned_abs() as usize, 0);
        }
        Err(EngineError::Tokenize(
            "llama.cpp kept asking for a larger buffer".into(),
        ))
    }

    pub(crate) fn token_piece(&self, token: i32) -> String {
        let mut buf = [0u8; 128];
        // SAFETY: buf is writable for its length; llama.cpp writes at most that many bytes.
        let n = unsafe {
            sys::llama_token_to_piece(
                self.vocab(),
                token,
                buf.as_mut_ptr().cast(),
                buf.len() as i32,
                0,
                false,
            )
        };
        if n <= 0 {
            return String::new();
        }
        String::from_utf8_lossy(&buf[..(n as usize).min(buf.len())]).into_owned()
    }

    /// Formats a conversation with llama.cpp's built-in template matcher.
    pub(crate) fn apply_chat_template(
        &self,
        template: &str,
        messages: &[(String, String)],
        add_assistant: bool,
    ) -> Result<String, EngineError> {
        let tmpl = CString::new(template)
            .map_err(|_| EngineError::Template("template contains a NUL byte".into()))?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|(role, content)| {
                Ok((
                    CString::new(role.as_str())?,
                    CString::new(content.as_str())?,
                ))
            })
            .collect::<Result<_, std::ffi::NulError>>()
            .map_err(|_| EngineError::Template("a message contains a NUL byte".into()))?;
        let chat: Vec<sys::llama_chat_message> = owned
            .iter()
            .map(|(role, content)| sys::llama_chat_message {
                role: role.as_ptr(),
                content: content.as_ptr(),
            })
            .collect();
        let mut buf = vec![
            0u8;
            2 * messages
                .iter()
                .map(|m| m.1.len() + m.0.len())
                .sum::<usize>()
                + 256
        ];
        for _ in 0..2 {
            let capacity = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: all pointers in `chat` point into `owned`, alive for the call; buf is writable.
            let n = unsafe {
                sys::llama_chat_apply_template(
                    tmpl.as_ptr(),
                    chat.as_ptr(),
                    chat.len(),
                    add_assistant,
                    buf.as_mut_ptr().cast(),
                    capacity,
                )
            };
            if n < 0 {
                return Err(EngineError::Template(
                    "llama.cpp does not recognise this model's chat template".into(),
                ));
            }
            if (n as usize) <= buf.len() {
                buf.truncate(n as usize);
                return String::from_utf8(buf)
                    .map_err(|_| EngineError::Template("template produced invalid UTF-8".into()));
            }
            buf.resize(n as usize, 0);
        }
        Err(EngineError::Template("template output kept growing".into()))
    }
}

impl Drop for RawModel {
    fn drop(&mut self) {
        // SAFETY: we own the model; contexts hold an Arc to the owning `Model`, so none outlive it.
        unsafe { sys::llama_model_free(self.0.as_ptr()) }
    }
}

/// One token of a (possibly multi-sequence) decode batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchToken {
    pub token: i32,
    pub pos: i32,
    pub seq: i32,
    /// Produce an output row (logits; the last layer's residual is pruned to these rows).
    pub output: bool,
}

/// Context creation parameters that limbic controls.
pub(crate) struct ContextParams {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_seq_max: u32,
    pub n_threads: i32,
}

/// An owned `llama_context` with limbic's tap callback installed.
pub(crate) struct RawContext {
    ptr: NonNull<sys::llama_context>,
    batch: sys::llama_batch,
    batch_capacity: usize,
    /// The CPU worker threads, kept for the context's life. Without one, ggml (built
    /// without OpenMP) creates and joins a thread pool for every graph it computes, and a
    /// tapped decode computes its graph in one piece per tapped layer.
    threadpool: Option<NonNull<sys::ggml_threadpool>>,
}

// SAFETY: a llama_context may move between threads; it is never used from two at once
// because every method takes `&mut self` (the daemon serialises access behind a mutex).
unsafe impl Send for RawContext {}

impl RawContext {
    /// Creates a context whose eval callback writes into `taps`. The caller must keep the
    /// `TapState` at a stable address (boxed) and alive for as long as this context.
    pub(crate) fn new(
        model: &RawModel,
        params: &ContextParams,
        taps: *mut TapState,
    ) -> Result<Self, EngineError> {
        // SAFETY: default params are plain data; the model pointer is valid; `taps` outlives
        // the context (guaranteed by `Engine`, which drops the context first).
        let ptr = unsafe {
            let mut p = sys::llama_context_default_params();
            p.n_ctx = params.n_ctx;
            p.n_batch = params.n_batch;
            p.n_ubatch = params.n_batch;
            p.n_seq_max = params.n_seq_max;
            p.n_threads = params.n_threads;
            p.n_threads_batch = params.n_threads;
            p.kv_unified = true;
            p.no_perf = false;
            p.cb_eval = Some(tap_callback);
            p.cb_eval_user_data = taps.cast();
            sys::llama_init_from_model(model.as_ptr().cast_mut(), p)
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            EngineError::Context(format!(
                "llama.cpp could not create a context of {} tokens for {} sessions",
                params.n_ctx, params.n_seq_max
            ))
        })?;
        let batch_capacity = params.n_batch as usize;
        // SAFETY: allocates a token batch with one sequence id per token.
        let batch = unsafe { sys::llama_batch_init(params.n_batch as i32, 0, 1) };
        // Idle workers sleep at once instead of polling: between decodes this thread
        // scores, decides and commits to SQLite, and a polling worker takes the core it
        // needs (measured with ggml's default polling: 8 concurrent sessions 12% slower, and
        // decode collapsing to a fifth beside a compile). A second, polling pool for
        // one-token decodes measured slower still.
        // SAFETY: plain-data params; a null pool (creation failed) is simply not attached,
        // and ggml falls back to a pool per graph. The pool outlives the context (Drop).
        let threadpool = unsafe {
            let mut tp = sys::ggml_threadpool_params_default(params.n_threads);
            tp.poll = 0;
            let pool = NonNull::new(sys::ggml_threadpool_new(&mut tp));
            if let Some(pool) = pool {
                sys::llama_attach_threadpool(ptr.as_ptr(), pool.as_ptr(), pool.as_ptr());
            }
            pool
        };
        Ok(RawContext {
            ptr,
            batch,
            batch_capacity,
            threadpool,
        })
    }

    /// Decodes one batch of tokens that may belong to several sequences (each entry says its
    /// sequence, position and whether it produces an output row: logits, and the last
    /// layer's residual).
    pub(crate) fn decode(&mut self, entries: &[BatchToken]) -> Result<(), EngineError> {
        if entries.is_empty() || entries.len() > self.batch_capacity {
            return Err(EngineError::Decode(format!(
                "batch of {} tokens (capacity {})",
                entries.len(),
                self.batch_capacity
            )));
        }
        let n = entries.len();
        // SAFETY: the batch arrays were allocated for `batch_capacity` >= n entries with one
        // sequence id each; we write only indices < n.
        let status = unsafe {
            for (i, e) in entries.iter().enumerate() {
                *self.batch.token.add(i) = e.token;
                *self.batch.pos.add(i) = e.pos;
                *self.batch.n_seq_id.add(i) = 1;
                *(*self.batch.seq_id.add(i)) = e.seq;
                *self.batch.logits.add(i) = i8::from(e.output);
            }
            self.batch.n_tokens = n as i32;
            sys::llama_decode(self.ptr.as_ptr(), self.batch)
        };
        match status {
            0 => Ok(()),
            1 => Err(EngineError::Decode(
                "no room in the KV cache for this batch (context full)".into(),
            )),
            2 => Err(EngineError::Decode("decode was aborted".into())),
            s => Err(EngineError::Decode(format!(
                "llama_decode failed with status {s}"
            ))),
        }
    }

    /// The logits of output row `i` of the last decode (-1 = the last output).
    pub(crate) fn logits(&self, i: i32, n_vocab: usize) -> Option<&[f32]> {
        // SAFETY: llama.cpp returns NULL for an invalid index; otherwise a row of n_vocab floats
        // valid until the next decode, which needs `&mut self`, so the borrow keeps it valid.
        unsafe {
            let ptr = sys::llama_get_logits_ith(self.ptr.as_ptr(), i);
            (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr, n_vocab))
        }
    }

    pub(crate) fn clear_sequence(&mut self, seq: i32) {
        // SAFETY: valid context; removing a whole sequence never fails.
        unsafe {
            let mem = sys::llama_get_memory(self.ptr.as_ptr());
            sys::llama_memory_seq_rm(mem, seq, -1, -1);
        }
    }

    /// Removes positions `from..` of a sequence; false if llama.cpp cannot cut it there.
    pub(crate) fn clear_sequence_from(&mut self, seq: i32, from: i32) -> bool {
        // SAFETY: valid context.
        unsafe {
            let mem = sys::llama_get_memory(self.ptr.as_ptr());
            sys::llama_memory_seq_rm(mem, seq, from, -1)
        }
    }

    pub(crate) fn sequence_max_pos(&self, seq: i32) -> i32 {
        // SAFETY: valid context.
        unsafe {
            let mem = sys::llama_get_memory(self.ptr.as_ptr());
            sys::llama_memory_seq_pos_max(mem, seq)
        }
    }

    /// Whether the memory can move positions (RoPE K-shift); false for some caches/models.
    pub(crate) fn can_shift(&self) -> bool {
        // SAFETY: valid context; the memory handle lives inside it.
        unsafe {
            let mem = sys::llama_get_memory(self.ptr.as_ptr());
            !mem.is_null() && sys::llama_memory_can_shift(mem)
        }
    }

    /// Removes positions `p0..p1` of a sequence; false if llama.cpp cannot cut it there.
    pub(crate) fn remove_range(&mut self, seq: i32, p0: i32, p1: i32) -> bool {
        // SAFETY: valid context.
        unsafe {
            let mem = sys::llama_get_memory(self.ptr.as_ptr());
            sys::llama_memory_seq_rm(mem, seq, p0, p1)
        }
    }

    /// Adds `delta` to the positions `p0..` of a sequence. llama.cpp re-rotates the keys
    /// (K-shift) at the start of the next decode; call only when `can_shift()`.
    pub(crate) fn shift_positions(&mut self, seq: i32, p0: i32, delta: i32) {
        // SAFETY: valid context; llama.cpp only records the shift here.
        unsafe {
            let mem = sys::llama_get_memory(self.ptr.as_ptr());
            sys::llama_memory_seq_add(mem, seq, p0, -1, delta);
        }
    }

    /// Bytes that saving the sequence would take.
    pub(crate) fn sequence_state_size(&mut self, seq: i32) -> usize {
        // SAFETY: valid context; only measures (writes into a counting sink).
        unsafe { sys::llama_state_seq_get_size(self.ptr.as_ptr(), seq) }
    }

    /// Copies a sequence's KV state (positions, keys, values) into host memory; `None` if
    /// llama.cpp reports a failure or the size changed under us.
    pub(crate) fn save_sequence(&mut self, seq: i32, size: usize) -> Option<Vec<u8>> {
        if size == 0 {
            return None;
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` is writable for `size` bytes; llama.cpp writes at most that many and
        // returns 0 (after logging) when the state does not fit.
        let written = unsafe {
            sys::llama_state_seq_get_data(self.ptr.as_ptr(), buf.as_mut_ptr(), size, seq)
        };
        (written == size).then_some(buf)
    }

    /// Loads a state saved by [`RawContext::save_sequence`] into sequence `seq` (which it
    /// replaces). False if llama.cpp refuses it (the sequence is then left empty).
    pub(crate) fn restore_sequence(&mut self, seq: i32, data: &[u8]) -> bool {
        // SAFETY: `data` is readable for its length; llama.cpp validates the contents and
        // returns 0 on failure.
        let read = unsafe {
            sys::llama_state_seq_set_data(self.ptr.as_ptr(), data.as_ptr(), data.len(), seq)
        };
        if read == 0 || read > data.len() {
            self.clear_sequence(seq);
            return false;
        }
        true
    }

    /// Sets (or clears, with `None`) the control vector. `data` starts at layer 1, n_embd per layer.
    pub(crate) fn set_control_vector(
        &mut self,
        data: Option<&[f32]>,
        n_embd: i32,
        layer_range: (i32, i32),
    ) -> Result<(), EngineError> {
        // SAFETY: `data` (if any) is valid for its length during the call; llama.cpp copies it.
        let status = unsafe {
            match data {
                Some(d) => sys::llama_set_adapter_cvec(
                    self.ptr.as_ptr(),
                    d.as_ptr(),
                    d.len(),
                    n_embd,
                    layer_range.0,
                    layer_range.1,
                ),
                None => sys::llama_set_adapter_cvec(
                    self.ptr.as_ptr(),
                    std::ptr::null(),
                    0,
                    n_embd,
                    -1,
                    -1,
                ),
            }
        };
        if status == 0 {
            Ok(())
        } else {
            Err(EngineError::Steering(format!(
                "llama.cpp rejected the control vector (status {status})"
            )))
        }
    }

    pub(crate) fn perf(&self) -> crate::PerfStats {
        // SAFETY: valid context; returns plain data.
        let d = unsafe { sys::llama_perf_context(self.ptr.as_ptr()) };
        crate::PerfStats {
            prompt_ms: d.t_p_eval_ms,
            prompt_tokens: d.n_p_eval as i64,
            eval_ms: d.t_eval_ms,
            eval_tokens: d.n_eval as i64,
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::llama_context {
        self.ptr.as_ptr()
    }
}

impl Drop for RawContext {
    fn drop(&mut self) {
        // SAFETY: we own the batch, the context and the pool; each is freed exactly once,
        // the pool last, after the context that computes with it is gone.
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_detach_threadpool(self.ptr.as_ptr());
            sys::llama_free(self.ptr.as_ptr());
            if let Some(pool) = self.threadpool.take() {
                sys::ggml_threadpool_free(pool.as_ptr());
            }
        }
    }
}

/// A sampler chain (greedy, or temperature + top-p with a seed).
pub(crate) struct RawSampler(NonNull<sys::llama_sampler>);

impl RawSampler {
    /// A sampler chain: the grammar (if any) first, so every later stage only sees tokens
    /// the grammar allows; then greedy (`temperature <= 0`) or top-p + temperature.
    pub(crate) fn new(
        model: &RawModel,
        temperature: f32,
        top_p: f32,
        seed: u32,
        grammar: Option<&Grammar>,
    ) -> Result<Self, EngineError> {
        let grammar_sampler = match grammar {
            Some(g) => Some(grammar_sampler(model, g)?),
            None => None,
        };
        // SAFETY: each init returns a fresh sampler that the chain takes ownership of.
        let ptr = unsafe {
            let chain = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
            if let Some(g) = grammar_sampler {
                sys::llama_sampler_chain_add(chain, g.as_ptr());
            }
            if temperature <= 0.0 {
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_greedy());
            } else {
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_top_p(top_p, 1));
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_temp(temperature));
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_dist(seed));
            }
            chain
        };
        NonNull::new(ptr)
            .map(RawSampler)
            .ok_or_else(|| EngineError::Decode("could not create a sampler".into()))
    }

    /// Samples from the last output row of the last decode.
    pub(crate) fn sample(&mut self, ctx: &RawContext) -> i32 {
        // SAFETY: both pointers valid; idx -1 = the last output of the last decode.
        unsafe { sys::llama_sampler_sample(self.0.as_ptr(), ctx.as_ptr(), -1) }
    }
}

/// llama.cpp's grammar sampler for `grammar` (lazy: it starts constraining only once the
/// output matches the trigger pattern, so free text can come first).
fn grammar_sampler(
    model: &RawModel,
    grammar: &Grammar,
) -> Result<NonNull<sys::llama_sampler>, EngineError> {
    let bad = |what: &str| EngineError::Grammar(format!("{what} contains a NUL byte"));
    let text = CString::new(grammar.text.as_str()).map_err(|_| bad("the grammar"))?;
    let root = CString::new("root").map_err(|_| bad("the root name"))?;
    let ptr = match &grammar.lazy_trigger {
        None => {
            // SAFETY: valid vocab; the strings outlive the call (llama.cpp copies them).
            unsafe { sys::llama_sampler_init_grammar(model.vocab(), text.as_ptr(), root.as_ptr()) }
        }
        Some(trigger) => {
            let pattern = CString::new(trigger.as_str()).map_err(|_| bad("the trigger"))?;
            let mut patterns = [pattern.as_ptr()];
            // SAFETY: as above; one pattern, no trigger tokens.
            unsafe {
                sys::llama_sampler_init_grammar_lazy_patterns(
                    model.vocab(),
                    text.as_ptr(),
                    root.as_ptr(),
                    patterns.as_mut_ptr(),
                    1,
                    std::ptr::null(),
                    0,
                )
            }
        }
    };
    NonNull::new(ptr).ok_or_else(|| {
        EngineError::Grammar("llama.cpp could not parse the grammar (see its log)".into())
    })
}

impl Drop for RawSampler {
    fn drop(&mut self) {
        // SAFETY: we own the chain (and through it, its samplers).
        unsafe { sys::llama_sampler_free(self.0.as_ptr()) }
    }
}

/// llama.cpp's eval callback. With `ask` it answers whether we want this tensor's data
/// (only `l_out-<L>` for tapped layers, so untapped graphs are not split); without `ask`
/// it copies the computed rows into the tap buffer. It lets the graph continue, except
/// after the deepest tapped layer of an observer decode: returning `false` there makes
/// ggml's scheduler skip the rest of the graph (later layers, output norm, logits), whose
/// results nobody reads — the KV cells of those layers are left unwritten, which is why
/// only sessions that never generate are decoded this way.
unsafe extern "C" fn tap_callback(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user_data: *mut c_void,
) -> bool {
    if t.is_null() || user_data.is_null() {
        return !ask;
    }
    // SAFETY: user_data is the boxed TapState installed by RawContext::new, alive while the
    // context lives; llama.cpp calls back on the thread running llama_decode, which holds
    // `&mut Engine`, so there is no concurrent access.
    let state = unsafe { &mut *user_data.cast::<TapState>() };
    // SAFETY: ggml tensor names are fixed-size NUL-terminated arrays.
    let name = unsafe { CStr::from_ptr((*t).name.as_ptr()) }.to_bytes();
    let Some(slot) = state.slot_for_tensor(name) else {
        return !ask;
    };
    if ask {
        return true;
    }
    // SAFETY: reading plain fields of a live tensor.
    let (ty, ne0, ne1, nb0, nb1) = unsafe {
        let t = &*t;
        (t.type_, t.ne[0], t.ne[1], t.nb[0], t.nb[1])
    };
    let contiguous_f32 = ty == sys::GGML_TYPE_F32 && nb0 == 4 && nb1 as i64 == 4 * ne0;
    let Some(dst) = state.reserve_rows(slot, ne0, ne1, contiguous_f32) else {
        return true;
    };
    // SAFETY: `dst` has exactly ne0*ne1 f32 of room (checked by reserve_rows); the tensor is
    // contiguous f32 of that size; ggml_backend_tensor_get also works for GPU-resident tensors.
    unsafe {
        sys::ggml_backend_tensor_get(t, dst.as_mut_ptr().cast(), 0, std::mem::size_of_val(dst));
    }
    !state.stops_after(slot)
}
