//! C exports of the AlphaSampler, and its llama.cpp lookahead backend
//! ([`LlamaLookahead`]), which lives here because it talks to llama.cpp and
//! the attention capture (layers the pure sampler modules must not use).
//!
//! ```c
//! // The context: one KV stream shared by the main and the spare
//! // sequences, flash attention off, the capture's callback installed.
//! entropix_alpha_params ap = entropix_alpha_default_params();
//! struct llama_context_params cp = llama_context_default_params();
//! cp.n_seq_max = ap.lookahead_k + 1;
//! cp.kv_unified = true;
//! cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
//! cp.cb_eval = entropix_attention_eval_callback;
//! cp.cb_eval_user_data = cap;
//! struct llama_context *ctx = llama_init_from_model(model, cp);
//! struct llama_sampler *alpha = entropix_sampler_init_alpha(&ap);
//! entropix_alpha_set_lookahead(alpha, ctx, cap, 0); // main sequence 0
//! llama_sampler_chain_add(chain, alpha);            // the chain owns it
//! // ... decode, llama_sampler_sample(chain, ctx, -1), ...
//! // free the chain before the context, the context before the capture.
//! ```

use std::ffi::c_int;
use std::sync::Arc;

use llama_cpp_sys_2 as sys;
use llama_cpp_sys_2::{llama_context, llama_sampler};
use serde_json::json;

use super::classic::init_from;
use super::error::{guard, guard_status, Failure, ENTROPIX_OK};
use super::plugin::sampler_ref;
use crate::attention::AttentionCapture;
use crate::core::{Sampler, TokenId};
use crate::metrics::{attention_metrics, AttentionMetrics, AttentionSource};
use crate::samplers::alpha::{AlphaParams, AlphaSampler, LookaheadBackend};

/// The COLD-state lookahead on a llama.cpp context: decodes the candidates
/// one step ahead in spare sequences with ONE batched `llama_decode`, reads
/// each candidate's last-layer attention row from the capture, and
/// restores the KV cache exactly.
///
/// Per lookahead of c candidates, with `pos` the position of the token
/// whose output is being sampled, as the host decoded it (read from the
/// capture's row for this step: the graph's RoPE positions; for a model
/// without RoPE, `llama_memory_seq_pos_max(main_seq)`):
/// 1. the spare sequences must be empty (checked; a host's other
///    sequences are never touched), and `main_seq` must hold `pos`;
/// 2. `llama_memory_seq_cp(main_seq, spare_i, -1, pos + 1)`: the spares
///    see the main sequence up to and including the sampled token, and
///    nothing the host decoded after it (draft tokens of speculative
///    decoding, say); metadata only with a unified KV cache;
/// 3. one batch: candidate i at position `pos + 1` in sequence `spare_i`,
///    batch index i, no logits (the scores need attention rows only);
///    `expect_outputs(0..c)` on the capture first;
/// 4. after the decode `llama_memory_seq_rm(spare_i, -1, -1)` for every
///    spare in ascending order (frees the new cells and moves llama.cpp's
///    search head back to the first of them, where the main sequence's
///    next token then goes, as without the lookahead), and the capture is
///    restored to its state before the lookahead (its rows, announcement
///    and selection: the host and the chain's other samplers still read
///    the step being sampled). This cleanup runs on every path, errors
///    included.
///
/// Spare sequences: the c lowest ids other than `main_seq` (e.g. 1, 2, 3
/// for main 0), or `spare_seq_base .. spare_seq_base + c` when set.
///
/// Side effects the host must know: after a lookahead the context has no
/// outputs until the next decode (`llama_get_logits_ith` returns NULL, or
/// aborts in a debug build of llama.cpp). `llama_sampler_sample` copies the logits before the
/// chain runs, so it is unaffected; a host that reads the logits again
/// after sampling (llama.cpp's `common_sampler` does when a grammar
/// rejects the token) must not use the lookahead. The sampler reads the
/// main step's attention before the lookahead.
///
/// Requirements: `n_seq_max >= lookahead_k + 1`, `kv_unified = true` (the
/// capture needs one KV stream), flash attention off, the capture's
/// callback installed on this context, `n_batch >= lookahead_k`.
///
/// Lifetime: the backend borrows the context; it is the host's to attach
/// and to detach. The context is used only inside a lookahead (the
/// sampler's `apply`), never by `state_json`, `reset`, `clone` or `free`,
/// so the context must outlive the samplers' applies, not the samplers.
/// The backend is not `Clone`: a cloned alpha sampler starts without a
/// lookahead, and the host attaches it to its own sequence. The capture is
/// reference-counted. The context must not be used from another thread
/// while the sampler applies.
pub struct LlamaLookahead {
    ctx: *mut llama_context,
    capture: Arc<AttentionCapture>,
    main_seq: i32,
    spare_seq_base: Option<i32>,
    /// The context's `n_seq_max`, read once when attached.
    n_seq_max: i32,
}

// SAFETY: the context pointer is only used from the thread that calls the
// sampler, one call at a time (a documented requirement on the host);
// llama.cpp contexts may move between threads.
unsafe impl Send for LlamaLookahead {}

impl std::fmt::Debug for LlamaLookahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaLookahead")
            .field("ctx", &self.ctx)
            .field("main_seq", &self.main_seq)
            .field("spare_seq_base", &self.spare_seq_base)
            .field("n_seq_max", &self.n_seq_max)
            .finish()
    }
}

impl LlamaLookahead {
    /// A backend on `ctx` whose generation runs in sequence `main_seq`,
    /// reading attention from `capture` (whose callback must be installed
    /// on `ctx`). Errors on a NULL context or a `main_seq` outside
    /// `[0, n_seq_max)`.
    ///
    /// # Safety
    /// `ctx` is NULL or a live context that outlives every lookahead of
    /// the samplers this backend is attached to, used by one thread at a
    /// time.
    pub unsafe fn new(ctx: *mut llama_context, capture: Arc<AttentionCapture>, main_seq: i32) -> Result<Self, String> {
        if ctx.is_null() {
            return Err("the context is NULL".into());
        }
        let n_seq_max = sys::llama_n_seq_max(ctx) as i32;
        if !(0..n_seq_max).contains(&main_seq) {
            return Err(format!("main_seq {main_seq} outside [0, n_seq_max = {n_seq_max})"));
        }
        Ok(Self { ctx, capture, main_seq, spare_seq_base: None, n_seq_max })
    }

    /// Uses sequences `base .. base + c` as spares instead of the lowest
    /// ids other than `main_seq`.
    pub fn with_spare_seq_base(mut self, base: i32) -> Self {
        self.spare_seq_base = Some(base);
        self
    }

    /// The capture this backend reads.
    pub fn capture(&self) -> &Arc<AttentionCapture> {
        &self.capture
    }

    /// The context's `n_seq_max` (read when the backend was made).
    pub fn n_seq_max(&self) -> i32 {
        self.n_seq_max
    }

    /// `llama_memory_seq_pos_max(main_seq)`: the last position the main
    /// sequence holds (-1 when empty).
    fn main_pos_max(&self) -> i32 {
        // SAFETY: a live context; main_seq < n_seq_max (checked in new).
        unsafe { sys::llama_memory_seq_pos_max(sys::llama_get_memory(self.ctx), self.main_seq) }
    }

    /// The spare sequences for `n` candidates, or why there are not enough.
    pub fn spare_seqs(&self, n: usize) -> Result<Vec<i32>, String> {
        let n_seq_max = self.n_seq_max;
        let ids: Vec<i32> = match self.spare_seq_base {
            None => (0..n_seq_max).filter(|&s| s != self.main_seq).take(n).collect(),
            Some(base) => (base..base.saturating_add(n as i32)).collect(),
        };
        if ids.len() < n || ids.iter().any(|&s| s < 0 || s >= n_seq_max || s == self.main_seq) {
            return Err(format!(
                "{n} lookahead candidates need {n} spare sequences besides main sequence {} in [0, n_seq_max = {n_seq_max}) \
                 (create the context with n_seq_max >= lookahead_k + 1)",
                self.main_seq
            ));
        }
        Ok(ids)
    }

    /// Checks that `lookahead_k` candidates fit (spare sequences, batch).
    pub fn check_capacity(&self, lookahead_k: usize) -> Result<(), String> {
        self.spare_seqs(lookahead_k)?;
        // SAFETY: a live context.
        let n_batch = unsafe { sys::llama_n_batch(self.ctx) } as usize;
        if n_batch < lookahead_k {
            return Err(format!("n_batch {n_batch} < lookahead_k {lookahead_k}"));
        }
        Ok(())
    }

    /// The position of the token being sampled, as the host decoded it:
    /// the RoPE position of the capture's current row, checked against
    /// what the main sequence holds; for a model without RoPE the main
    /// sequence's last position.
    fn sampled_position(&self, mem: sys::llama_memory_t) -> Result<i32, String> {
        // SAFETY: a live context; main_seq < n_seq_max.
        let (pos_min, pos_max) = unsafe { (sys::llama_memory_seq_pos_min(mem, self.main_seq), sys::llama_memory_seq_pos_max(mem, self.main_seq)) };
        if pos_max < 0 {
            return Err(format!("main sequence {} is empty: nothing to look ahead from", self.main_seq));
        }
        let pos = self.capture.selected_position().map_err(|e| format!("the position of the token being sampled is unknown: {e}"))?;
        match pos {
            None => Ok(pos_max),
            Some(p) if (pos_min..=pos_max).contains(&p) => Ok(p),
            Some(p) => Err(format!(
                "the row being sampled is at position {p}, which main sequence {} does not hold (positions {pos_min}..={pos_max}): \
                 is main_seq the sequence being sampled?",
                self.main_seq
            )),
        }
    }

    /// The decode and the row extraction; the caller restores the cache.
    unsafe fn decode_candidates(&self, tokens: &[TokenId], spares: &[i32], n_past: i32) -> Result<Vec<AttentionMetrics>, String> {
        let n = tokens.len();
        let mut tok: Vec<sys::llama_token> = tokens.to_vec();
        let mut pos: Vec<sys::llama_pos> = vec![n_past; n];
        let mut n_seq_id: Vec<i32> = vec![1; n];
        let mut seq_ids: Vec<sys::llama_seq_id> = spares.to_vec();
        let mut seq_ptrs: Vec<*mut sys::llama_seq_id> = seq_ids.iter_mut().map(|s| s as *mut _).collect();
        // Only the attention rows are scored, and llama.cpp computes the
        // attention of every token of the ubatch (outputs are selected after
        // the last layer's attention), so no candidate asks for logits: that
        // skips the output head and the last FFN (3 candidates on the CPU
        // here: 17.6 ms with logits on all, 13.4 on one, 11.6 on none; one
        // plain token 6.4). The graph still ends in `result_output` (with
        // no rows), which the capture counts, as for any prompt chunk
        // decoded without outputs.
        let mut logits: Vec<i8> = vec![0; n];
        let batch = sys::llama_batch {
            n_tokens: n as i32,
            token: tok.as_mut_ptr(),
            embd: std::ptr::null_mut(),
            pos: pos.as_mut_ptr(),
            n_seq_id: n_seq_id.as_mut_ptr(),
            seq_id: seq_ptrs.as_mut_ptr(),
            logits: logits.as_mut_ptr(),
        };
        let indices: Vec<usize> = (0..n).collect();
        self.capture.expect_outputs(&indices);
        // SAFETY: every array holds n entries and outlives the call;
        // llama_decode only reads the batch.
        let rc = sys::llama_decode(self.ctx, batch);
        if rc != 0 {
            return Err(format!("lookahead llama_decode returned {rc}"));
        }
        let rows = self.capture.rows().ok_or_else(|| {
            format!(
                "no attention captured for the lookahead ({}); needs flash attention off, the capture's callback on this context and kv_unified = true",
                self.capture.problem().unwrap_or_else(|| "no fresh rows".into())
            )
        })?;
        indices
            .iter()
            .map(|&i| {
                let row = rows.iter().find(|r| r.batch_index == Some(i)).ok_or_else(|| format!("no attention row for lookahead candidate {i}"))?;
                attention_metrics(&row.probs, row.n_head, row.n_kv, None).ok_or_else(|| format!("empty attention row for lookahead candidate {i}"))
            })
            .collect()
    }
}

impl LookaheadBackend for LlamaLookahead {
    fn look_ahead(&mut self, tokens: &[TokenId]) -> Result<Vec<AttentionMetrics>, String> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let spares = self.spare_seqs(tokens.len())?;
        // SAFETY: a live context used by this thread only (constructor
        // contract); every sequence id is in [0, n_seq_max).
        unsafe {
            let n_batch = sys::llama_n_batch(self.ctx) as usize;
            if tokens.len() > n_batch {
                return Err(format!("{} lookahead candidates exceed n_batch {n_batch}", tokens.len()));
            }
            let mem = sys::llama_get_memory(self.ctx);
            let pos = self.sampled_position(mem)?;
            if let Some(&busy) = spares.iter().find(|&&s| sys::llama_memory_seq_pos_max(mem, s) >= 0) {
                return Err(format!("spare sequence {busy} is in use; the lookahead only uses empty sequences"));
            }
            let saved = self.capture.set_aside();
            for &s in &spares {
                sys::llama_memory_seq_cp(mem, self.main_seq, s, -1, pos + 1);
            }
            let result = self.decode_candidates(tokens, &spares, pos + 1);
            // Restore: drop the spares' cells (ascending, see the type docs)
            // and the capture's state, whatever happened.
            for &s in &spares {
                sys::llama_memory_seq_rm(mem, s, -1, -1);
            }
            self.capture.restore(saved);
            result
        }
    }

    /// The capture's graph counter and the main sequence's last position.
    fn stamp(&self) -> Option<(u64, i64)> {
        Some((self.capture.graphs_done(), self.main_pos_max() as i64))
    }

    fn describe(&self) -> serde_json::Value {
        json!({
            "kind": "llama.cpp",
            "main_seq": self.main_seq,
            "spare_seq_base": self.spare_seq_base,
            "n_seq_max": self.n_seq_max,
        })
    }
}

/// Default parameters of the alpha sampler: window 100, COLD below 0.6,
/// HOT above 1.8, repetition penalty over the last 128 tokens, lookahead
/// on (it runs only once a context is attached) with 3 candidates, mass
/// 0.9, weights 0.8 / 0.2, seed 0xFFFFFFFF (random).
#[no_mangle]
pub extern "C" fn entropix_alpha_default_params() -> AlphaParams {
    guard(AlphaParams::default(), || Ok(AlphaParams::default()))
}

/// The reference settings of the AlphaSampler (seed 000): its
/// reference implementation's exact values (the `reference` preset).
/// The defaults depart from them where `eval` measured better text.
#[no_mangle]
pub extern "C" fn entropix_alpha_reference_params() -> AlphaParams {
    guard(AlphaParams::reference(), || Ok(AlphaParams::reference()))
}

/// AlphaSampler (seed 000): alpha = normalised token entropy + normalised
/// attention entropy picks COLD / MIXED / HOT and the temperature, top-k,
/// top-p and repetition penalty; COLD steps can look one token ahead
/// (`entropix_alpha_set_lookahead`). Ends a chain (it selects a token).
/// Its attention comes from an attention capture
/// (`entropix_sampler_set_attention`, or `entropix_alpha_set_lookahead`,
/// which attaches the capture too); without one the attention half of
/// alpha is 0 (`attention_available: false` in
/// `entropix_sampler_state_json`).
///
/// Returns a new sampler owned by the caller (free it with
/// `llama_sampler_free`, or add it to a chain, which then owns it); NULL
/// with `entropix_last_error()` on invalid params.
///
/// # Safety
/// `params` is NULL (defaults) or points to a valid `entropix_alpha_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_alpha(params: *const AlphaParams) -> *mut llama_sampler {
    init_from("alpha", params, |p| Ok(Box::new(AlphaSampler::new(p)?)))
}

/// Attaches the COLD-state lookahead of an alpha sampler to `ctx`, whose
/// generation runs in sequence `main_seq`, and attaches `capture` as the
/// sampler's attention source. NULL `ctx` detaches the lookahead (the
/// attention source stays). Returns `ENTROPIX_OK`, or with
/// `entropix_last_error()`: `ENTROPIX_ERR_NULL` (NULL sampler, or NULL
/// capture with a context), `ENTROPIX_ERR_INVALID` (not an alpha sampler
/// of this library, `main_seq` out of range, `n_seq_max < lookahead_k + 1`,
/// `n_batch < lookahead_k`); nothing changes on error.
///
/// Lifetime: the host attaches and detaches. The sampler borrows `ctx`
/// (it never frees it) and uses it only while it applies (the lookahead
/// itself), never in `entropix_sampler_state_json`, reset, clone or free:
/// `ctx` must stay alive while the sampler (or its chain) samples, and must
/// not be used by another thread meanwhile. Detach (NULL `ctx`) or free
/// the sampler before sampling with it after `llama_free(ctx)`. The
/// sampler keeps its own reference to `capture`. A clone of the sampler
/// (`llama_sampler_clone`, e.g. one per parallel slot) starts without the
/// lookahead: attach each clone to its own sequence (`main_seq`, with
/// spare sequences no other slot uses).
///
/// Required context settings: `n_seq_max >= lookahead_k + 1` (sequences
/// other than `main_seq` are the spares and must be empty when a
/// lookahead runs), `kv_unified = true`, flash attention off
/// (`LLAMA_FLASH_ATTN_TYPE_DISABLED`), `cb_eval =
/// entropix_attention_eval_callback` with `cb_eval_user_data = capture`.
/// The candidates are decoded one position after the token being sampled,
/// as the host decoded it (the position the capture read from the graph
/// for the row being sampled), so a host may sample from any output row
/// of its batch (announced with `entropix_attention_capture_expect_batch`
/// and chosen with `entropix_attention_capture_select_output`). After a
/// lookahead step the KV cache is exactly as before, but the context has
/// no outputs until the next decode (`llama_get_logits_ith` returns NULL,
/// or aborts in a debug build of llama.cpp): `llama_sampler_sample` copies
/// the logits before the chain runs and is unaffected, but a host that
/// reads the logits again after sampling (llama.cpp's `common_sampler`
/// does when a grammar rejects the sampled token) must not enable the
/// lookahead.
///
/// # Safety
/// `smpl` is NULL or a live sampler; `ctx` is NULL or a live context;
/// `capture` is NULL or a live capture.
#[no_mangle]
pub unsafe extern "C" fn entropix_alpha_set_lookahead(
    smpl: *mut llama_sampler,
    ctx: *mut llama_context,
    capture: *const AttentionCapture,
    main_seq: i32,
) -> c_int {
    const F: &str = "entropix_alpha_set_lookahead";
    guard_status(|| {
        if smpl.is_null() {
            return Err(Failure::null(format!("{F}: the sampler is NULL")));
        }
        let s = sampler_ref(smpl).ok_or_else(|| format!("{F}: not a sampler of this library (a chain or llama.cpp's own?)"))?;
        let name = s.name();
        let alpha = s.downcast_mut::<AlphaSampler>().ok_or_else(|| format!("{F}: the `{name}` sampler is not an alpha sampler"))?;
        if ctx.is_null() {
            alpha.set_lookahead(None);
            return Ok(ENTROPIX_OK);
        }
        if capture.is_null() {
            return Err(Failure::null(format!("{F}: capture is NULL (the lookahead reads attention from it)")));
        }
        Arc::increment_strong_count(capture);
        let cap: Arc<AttentionCapture> = Arc::from_raw(capture);
        let backend = LlamaLookahead::new(ctx, Arc::clone(&cap), main_seq).map_err(|e| format!("{F}: {e}"))?;
        backend.check_capacity(alpha.params().lookahead_k as usize).map_err(|e| format!("{F}: {e}"))?;
        let source: Arc<dyn AttentionSource> = cap;
        alpha.set_lookahead(Some(Box::new(backend)));
        alpha.set_attention_source(Some(source));
        Ok(ENTROPIX_OK)
    })
}
