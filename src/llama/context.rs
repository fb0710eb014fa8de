//! An inference context: KV cache, decoding and logits.

use llama_cpp_sys_2 as sys;

use super::error::LlamaError;
use super::model::Model;
use crate::core::TokenId;

/// Whether llama.cpp may fuse attention (flash attention). Attention
/// capture needs it off: the fused kernel never materialises the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// llama.cpp decides (on where supported).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

/// How to create a context.
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// Context size in tokens (`-c`); 0 takes the model's training length.
    pub n_ctx: u32,
    /// Logical batch size: most tokens per `llama_decode` call.
    pub n_batch: u32,
    /// Physical batch (ubatch) size.
    pub n_ubatch: u32,
    /// Number of sequences the KV cache holds.
    pub n_seq_max: u32,
    /// CPU threads; ggml's threads spin, so never more than the cores.
    pub n_threads: i32,
    /// Flash attention policy.
    pub flash_attention: FlashAttention,
    /// Graph eval callback and its user data (for attention capture).
    pub cb_eval: sys::ggml_backend_sched_eval_callback,
    /// User data passed to `cb_eval`.
    pub cb_eval_user_data: *mut std::ffi::c_void,
    /// Turn llama.cpp's own timing off.
    pub no_perf: bool,
    /// One KV buffer shared by all sequences (a single stream). Attention
    /// capture with several sequences needs it.
    pub kv_unified: bool,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            n_ctx: 2048,
            n_batch: 512,
            n_ubatch: 512,
            n_seq_max: 1,
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
            flash_attention: FlashAttention::Auto,
            cb_eval: None,
            cb_eval_user_data: std::ptr::null_mut(),
            no_perf: false,
            kv_unified: false,
        }
    }
}

/// A llama.cpp context bound to a model; freed on drop. Not thread-safe.
pub struct Context<'m> {
    ptr: *mut sys::llama_context,
    model: &'m Model,
    batch: sys::llama_batch,
    batch_capacity: usize,
}

impl<'m> Context<'m> {
    /// Creates a context for `model`.
    pub fn new(model: &'m Model, options: &ContextOptions) -> Result<Self, LlamaError> {
        let mut p = unsafe { sys::llama_context_default_params() };
        p.n_ctx = options.n_ctx;
        p.n_batch = options.n_batch;
        p.n_ubatch = options.n_ubatch.min(options.n_batch);
        p.n_seq_max = options.n_seq_max;
        p.n_threads = options.n_threads;
        p.n_threads_batch = options.n_threads;
        p.flash_attn_type = match options.flash_attention {
            FlashAttention::Auto => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        p.cb_eval = options.cb_eval;
        p.cb_eval_user_data = options.cb_eval_user_data;
        p.no_perf = options.no_perf;
        p.kv_unified = options.kv_unified;
        let ptr = unsafe { sys::llama_init_from_model(model.as_ptr(), p) };
        if ptr.is_null() {
            return Err(LlamaError::Context { n_ctx: options.n_ctx, hint: "out of memory, or n_ctx/n_batch/n_seq_max not supported by this model" });
        }
        let batch_capacity = options.n_batch.max(1) as usize;
        let batch = unsafe { sys::llama_batch_init(batch_capacity as i32, 0, options.n_seq_max.max(1) as i32) };
        Ok(Self { ptr, model, batch, batch_capacity })
    }

    /// The raw context pointer, valid while `self` lives.
    pub fn as_ptr(&self) -> *mut sys::llama_context {
        self.ptr
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Context size in tokens.
    pub fn n_ctx(&self) -> usize {
        unsafe { sys::llama_n_ctx(self.ptr) as usize }
    }

    /// Largest batch one `llama_decode` call takes.
    pub fn n_batch(&self) -> usize {
        self.batch_capacity
    }

    /// Decodes `tokens` of sequence `seq` at positions `pos0..`, in chunks
    /// of n_batch. Logits are kept for the last token, or for every token
    /// when `all_logits`; their output indices are 0.. in order within the
    /// LAST chunk only (llama.cpp keeps only the last call's outputs).
    pub fn decode(&mut self, tokens: &[TokenId], pos0: i32, seq: i32, all_logits: bool) -> Result<(), LlamaError> {
        for (c, chunk) in tokens.chunks(self.batch_capacity).enumerate() {
            let base = pos0 + (c * self.batch_capacity) as i32;
            let last_chunk = (c + 1) * self.batch_capacity >= tokens.len();
            let entries: Vec<(TokenId, i32, i32, bool)> = chunk
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, base + i as i32, seq, all_logits || (last_chunk && i + 1 == chunk.len())))
                .collect();
            self.decode_entries(&entries)?;
        }
        Ok(())
    }

    /// Decodes one batch given as (token, position, sequence, wants_logits)
    /// entries; at most n_batch of them.
    pub fn decode_entries(&mut self, entries: &[(TokenId, i32, i32, bool)]) -> Result<(), LlamaError> {
        assert!(entries.len() <= self.batch_capacity, "batch larger than n_batch");
        let b = &mut self.batch;
        b.n_tokens = entries.len() as i32;
        for (i, &(token, pos, seq, logits)) in entries.iter().enumerate() {
            // SAFETY: llama_batch_init allocated batch_capacity entries with
            // room for n_seq_max sequence ids each.
            unsafe {
                *b.token.add(i) = token;
                *b.pos.add(i) = pos;
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)).add(0) = seq;
                *b.logits.add(i) = logits as i8;
            }
        }
        let rc = unsafe { sys::llama_decode(self.ptr, self.batch) };
        if rc != 0 {
            return Err(LlamaError::Decode(rc));
        }
        Ok(())
    }

    /// The logits of output `idx` (-1: the last output), n_vocab floats.
    pub fn logits(&self, idx: i32) -> &[f32] {
        let p = unsafe { sys::llama_get_logits_ith(self.ptr, idx) };
        assert!(!p.is_null(), "no logits for output {idx}");
        unsafe { std::slice::from_raw_parts(p, self.model.n_vocab()) }
    }

    /// Removes positions `p0..p1` of sequence `seq` from the KV cache
    /// (`p1 < 0`: to the end). Returns false when llama.cpp cannot.
    pub fn remove_positions(&mut self, seq: i32, p0: i32, p1: i32) -> bool {
        unsafe { sys::llama_memory_seq_rm(sys::llama_get_memory(self.ptr), seq, p0, p1) }
    }

    /// Copies positions `p0..p1` of sequence `src` to `dst`.
    pub fn copy_sequence(&mut self, src: i32, dst: i32, p0: i32, p1: i32) {
        unsafe { sys::llama_memory_seq_cp(sys::llama_get_memory(self.ptr), src, dst, p0, p1) }
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr), true) }
    }

    /// llama.cpp's timings: (prompt ms, prompt tokens, eval ms, eval tokens).
    pub fn perf(&self) -> (f64, i32, f64, i32) {
        let d = unsafe { sys::llama_perf_context(self.ptr) };
        (d.t_p_eval_ms, d.n_p_eval, d.t_eval_ms, d.n_eval)
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ptr);
        }
    }
}
