//! C exports of the attention capture: create it for a model, install its
//! eval callback in a context, attach it to attention-aware samplers.
//!
//! ```c
//! entropix_attention_capture_params cp = entropix_attention_capture_default_params();
//! entropix_attention_capture *cap = entropix_attention_capture_new(model, &cp);
//! struct llama_context_params ctx_params = llama_context_default_params();
//! ctx_params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; // required
//! ctx_params.cb_eval = entropix_attention_eval_callback;
//! ctx_params.cb_eval_user_data = cap;
//! // ... create the context, then for each attention-aware sampler:
//! entropix_sampler_set_attention(smpl, cap);
//! // ... after the context is freed:
//! entropix_attention_capture_free(cap);
//! ```

use std::ffi::c_void;
use std::sync::Arc;

use llama_cpp_sys_2::{ggml_tensor, llama_model, llama_sampler};

use super::error::{guard, guard_status, Failure, ENTROPIX_NO_ATTENTION, ENTROPIX_OK};
use super::plugin::sampler_ref;
use crate::attention::{eval_callback, AttentionCapture, CaptureConfig};
use crate::metrics::AttentionSource;

/// Parameters of an attention capture.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionCaptureParams {
    /// Layer to capture; negative counts from the end (-1, the default, is
    /// the last layer).
    pub layer: i32,
    /// Also capture the pre-softmax scores (needed for interaction
    /// strength). Default true.
    pub capture_scores: bool,
    /// Scale of the raw scores; 0 (the default) takes the scale the graph
    /// applied (the softmax op's parameter).
    pub attention_scale: f32,
}

impl Default for AttentionCaptureParams {
    fn default() -> Self {
        let c = CaptureConfig::default();
        Self { layer: c.layer, capture_scores: c.capture_scores, attention_scale: c.attention_scale }
    }
}

/// The attention statistics of one step, for C (entropies in bits).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionMetricsOut {
    /// Mean per-head attention entropy, bits.
    pub entropy_bits: f64,
    /// Variance across heads of the per-head entropies, bits².
    pub head_entropy_variance_bits2: f64,
    /// Mean per-head varentropy, bits².
    pub varentropy_bits2: f64,
    /// Mean |a_h - mean over heads| over heads and valid cells.
    pub agreement: f64,
    /// Mean |scaled pre-softmax score| over valid cells; NaN when the scores
    /// were not captured.
    pub interaction_strength: f64,
    /// Number of heads.
    pub n_head: u32,
    /// Number of valid (unmasked) KV cells.
    pub n_valid: u32,
}

/// Default capture parameters (last layer, scores on, derived scale).
#[no_mangle]
pub extern "C" fn entropix_attention_capture_default_params() -> AttentionCaptureParams {
    AttentionCaptureParams::default()
}

/// A new capture for `model` (NULL params: defaults), or NULL with a last
/// error. The caller owns it and frees it with
/// `entropix_attention_capture_free` after the context that uses it; the
/// samplers it is attached to keep their own reference.
///
/// # Safety
/// `model` is a live model; `params` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_capture_new(model: *const llama_model, params: *const AttentionCaptureParams) -> *mut AttentionCapture {
    guard(std::ptr::null_mut(), || {
        let p = if params.is_null() { AttentionCaptureParams::default() } else { *params };
        let config = CaptureConfig { layer: p.layer, capture_scores: p.capture_scores, attention_scale: p.attention_scale };
        let capture = AttentionCapture::for_model_ptr(model, config).map_err(|e| format!("entropix_attention_capture_new: {e}"))?;
        Ok(Arc::into_raw(capture).cast_mut())
    })
}

/// Releases the caller's reference (NULL is accepted).
///
/// # Safety
/// `capture` is NULL or came from `entropix_attention_capture_new`, and no
/// context still uses it as callback user data.
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_capture_free(capture: *mut AttentionCapture) {
    guard((), || {
        if !capture.is_null() {
            drop(Arc::from_raw(capture.cast_const()));
        }
        Ok(())
    })
}

/// The eval callback for `llama_context_params.cb_eval`, with the capture
/// as `cb_eval_user_data`. Needs flash attention off.
///
/// # Safety
/// `user_data` is NULL or a live capture; `t` is a valid tensor.
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_eval_callback(t: *mut ggml_tensor, ask: bool, user_data: *mut c_void) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval_callback(t, ask, user_data))).unwrap_or(!ask)
}

/// Announces the next `llama_decode`: a batch of `n_tokens` tokens whose
/// rows `batch_indices[0..n]` (those with `logits` on) will be sampled.
/// Call before every decode of a multi-output batch (needs a single KV
/// stream: n_seq_max 1 or kv_unified). The rows serve that decode only: a
/// later decode that is not announced falls back to the last token's row.
/// n = 0 returns to that default now. Returns `ENTROPIX_OK`, or with a
/// last error `ENTROPIX_ERR_NULL` (NULL capture, NULL indices with n > 0)
/// or `ENTROPIX_ERR_INVALID` (an index negative or not below `n_tokens`);
/// nothing changes on error.
///
/// # Safety
/// `capture` is a live capture; `batch_indices` holds `n` values (NULL when 0).
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_capture_expect_batch(
    capture: *const AttentionCapture,
    batch_indices: *const i32,
    n: usize,
    n_tokens: i32,
) -> i32 {
    guard_status(|| {
        let what = "entropix_attention_capture_expect_batch";
        let cap = capture.as_ref().ok_or_else(|| Failure::null(format!("{what}: NULL capture")))?;
        if n == 0 {
            cap.expect_last_token();
            return Ok(ENTROPIX_OK);
        }
        let idx = batch_indices_of(what, batch_indices, n)?;
        let n_tokens = usize::try_from(n_tokens).map_err(|_| format!("{what}: negative n_tokens {n_tokens}"))?;
        cap.expect_batch(&idx, n_tokens).map_err(|e| format!("{what}: {e}"))?;
        Ok(ENTROPIX_OK)
    })
}

/// `entropix_attention_capture_expect_batch` for a batch that ends with its
/// last output (n_tokens = the largest index + 1). A batch with tokens after
/// its last output needs `expect_batch` (here that decode would get no
/// rows). Returns 0, or -1 with a last error.
///
/// # Safety
/// `capture` is a live capture; `batch_indices` holds `n` values (NULL when 0).
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_capture_expect_outputs(capture: *const AttentionCapture, batch_indices: *const i32, n: usize) -> i32 {
    guard_status(|| {
        let what = "entropix_attention_capture_expect_outputs";
        let cap = capture.as_ref().ok_or_else(|| Failure::null(format!("{what}: NULL capture")))?;
        if n == 0 {
            cap.expect_last_token();
            return Ok(ENTROPIX_OK);
        }
        cap.expect_outputs(&batch_indices_of(what, batch_indices, n)?);
        Ok(ENTROPIX_OK)
    })
}

/// The `n` batch indices at `ptr`, checked (non-NULL, none negative).
///
/// # Safety
/// `ptr` is NULL or holds `n` values.
unsafe fn batch_indices_of(what: &str, ptr: *const i32, n: usize) -> Result<Vec<usize>, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(format!("{what}: NULL indices with n > 0")));
    }
    std::slice::from_raw_parts(ptr, n).iter().map(|&i| usize::try_from(i).map_err(|_| Failure::invalid(format!("{what}: negative batch index {i}")))).collect()
}

/// Chooses the captured row (by batch index) that attached samplers read
/// next; -1: the last captured row. A batch index the last decode did not
/// capture gives the samplers no attention (never another row). Returns
/// `ENTROPIX_OK`, or `ENTROPIX_ERR_NULL` (NULL capture) with a last error.
///
/// # Safety
/// `capture` is a live capture.
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_capture_select_output(capture: *const AttentionCapture, batch_index: i32) -> i32 {
    guard_status(|| {
        let cap = capture.as_ref().ok_or_else(|| Failure::null("entropix_attention_capture_select_output: NULL capture"))?;
        cap.select_output(usize::try_from(batch_index).ok());
        Ok(ENTROPIX_OK)
    })
}

/// Writes the current step's attention metrics to `out`. Returns
/// `ENTROPIX_OK` when fresh, `ENTROPIX_NO_ATTENTION` (not an error) when no
/// fresh attention exists for this step (flash attention on, callback not
/// installed, an output the last decode did not capture; `out` untouched),
/// `ENTROPIX_ERR_NULL` with a last error for a NULL argument.
///
/// # Safety
/// `capture` is a live capture; `out` points to writable memory.
#[no_mangle]
pub unsafe extern "C" fn entropix_attention_capture_metrics(capture: *const AttentionCapture, out: *mut AttentionMetricsOut) -> i32 {
    guard_status(|| {
        let cap = capture.as_ref().ok_or_else(|| Failure::null("entropix_attention_capture_metrics: NULL capture"))?;
        let out = out.as_mut().ok_or_else(|| Failure::null("entropix_attention_capture_metrics: NULL out"))?;
        let Some(m) = cap.metrics() else { return Ok(ENTROPIX_NO_ATTENTION) };
        *out = AttentionMetricsOut {
            entropy_bits: m.entropy_bits,
            head_entropy_variance_bits2: m.head_entropy_variance_bits2,
            varentropy_bits2: m.varentropy_bits2,
            agreement: m.agreement,
            interaction_strength: m.interaction_strength.unwrap_or(f64::NAN),
            n_head: m.n_head as u32,
            n_valid: m.n_valid as u32,
        };
        Ok(ENTROPIX_OK)
    })
}

/// Attaches `capture` to an attention-aware sampler (NULL detaches). The
/// sampler keeps its own reference. Returns `ENTROPIX_OK`, or with a last
/// error `ENTROPIX_ERR_NULL` (NULL sampler) or `ENTROPIX_ERR_INVALID` (not
/// ours, or a sampler that does not use attention).
///
/// # Safety
/// `smpl` is a live sampler; `capture` is NULL or a live capture.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_set_attention(smpl: *mut llama_sampler, capture: *const AttentionCapture) -> i32 {
    guard_status(|| {
        if smpl.is_null() {
            return Err(Failure::null("entropix_sampler_set_attention: the sampler is NULL"));
        }
        let s = sampler_ref(smpl).ok_or("entropix_sampler_set_attention: not a sampler of this library (a chain or llama.cpp's own?)")?;
        let source: Option<Arc<dyn AttentionSource>> = if capture.is_null() {
            None
        } else {
            Arc::increment_strong_count(capture);
            Some(Arc::from_raw(capture) as Arc<dyn AttentionSource>)
        };
        if s.set_attention_source(source) {
            Ok(ENTROPIX_OK)
        } else {
            Err(format!("entropix_sampler_set_attention: the `{}` sampler does not use attention", s.name()).into())
        }
    })
}

/// True when `smpl` is one of ours and reads attention (it then needs a
/// capture attached and flash attention off).
///
/// # Safety
/// `smpl` is NULL or a live sampler.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_needs_attention(smpl: *const llama_sampler) -> bool {
    guard(false, || Ok(sampler_ref(smpl).is_some_and(|s| s.needs_attention())))
}
