//! C exports of the `penalties` samplers: repetition / frequency / presence
//! penalties, repetition penalty with distance decay, length penalty, token
//! bans, logit bias and DRY.
//!
//! Every constructor returns a new `struct llama_sampler *` owned by the
//! caller: free it with `llama_sampler_free`, or hand it to a chain with
//! `llama_sampler_chain_add`, after which the chain owns it. NULL params
//! mean the defaults. Arrays and strings passed in are copied: the caller
//! keeps ownership of them and may free them as soon as the call returns.
//! A NULL array with a count > 0, or invalid params, give NULL and a reason
//! in `entropix_last_error()`.

use std::ffi::{c_char, CStr};

use llama_cpp_sys_2::{
    llama_detokenize, llama_logit_bias, llama_sampler, llama_token, llama_tokenize, llama_vocab, llama_vocab_n_tokens,
};

use super::classic::init_from;
use super::error::guard;
use super::plugin::into_llama_sampler;
use crate::core::{ParamError, TokenId};
use crate::samplers::penalties::*;

/// Copies `n` elements from `ptr` (NULL allowed when `n == 0`).
unsafe fn copy_array<T: Copy>(ptr: *const T, n: usize, name: &'static str) -> Result<Vec<T>, ParamError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(ParamError::new(name, "NULL", "must not be NULL when its count is > 0"));
    }
    if n > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(ParamError::new(name, n, "count too large"));
    }
    // SAFETY: the caller promises `n` readable elements at `ptr`.
    Ok(std::slice::from_raw_parts(ptr, n).to_vec())
}

/// Default parameters of the penalties sampler (last_n 64, repeat 1.1,
/// freq 0, present 0).
#[no_mangle]
pub extern "C" fn entropix_penalties_default_params() -> PenaltiesParams {
    PenaltiesParams::default()
}

/// Repetition, frequency and presence penalties over the last
/// `penalty_last_n` accepted tokens; the same results as llama.cpp's
/// `llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present)`
/// (which needs no vocabulary size here). Reads the history from
/// `llama_sampler_accept`.
///
/// Returns a new sampler owned by the caller (after
/// `llama_sampler_chain_add` the chain owns it), or NULL on invalid params.
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_penalties_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_penalties(params: *const PenaltiesParams) -> *mut llama_sampler {
    init_from("penalties", params, |p| Ok(Box::new(Penalties::new(p)?)))
}

/// Default parameters of the distance-decayed repetition penalty (factor
/// 1.1, decay 0, one_time true, limit 75).
#[no_mangle]
pub extern "C" fn entropix_repetition_decay_default_params() -> RepetitionDecayParams {
    RepetitionDecayParams::default()
}

/// Repetition penalty whose divisor at distance d (1 = last token) is
/// `factor * d^decay`, sign-aware (seed 004).
///
/// Returns a new sampler owned by the caller (after
/// `llama_sampler_chain_add` the chain owns it), or NULL on invalid params.
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_repetition_decay_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_repetition_decay(params: *const RepetitionDecayParams) -> *mut llama_sampler {
    init_from("repetition_decay", params, |p| Ok(Box::new(RepetitionDecay::new(p)?)))
}

/// Default parameters of the length penalty (factor 0: off).
#[no_mangle]
pub extern "C" fn entropix_length_penalty_default_params() -> LengthPenaltyParams {
    LengthPenaltyParams::default()
}

/// Length penalty (seed 004): the logits of the `n_stop_tokens` ids at
/// `stop_tokens` are scaled, sign-aware, by `max(L, 1)^factor` where L is
/// the number of tokens accepted since the last reset. The array is copied.
///
/// Returns a new sampler owned by the caller (after
/// `llama_sampler_chain_add` the chain owns it), or NULL on invalid params
/// or when `stop_tokens` is NULL with `n_stop_tokens > 0`.
///
/// # Safety
/// `params` is NULL or valid; `stop_tokens` is NULL (only with
/// `n_stop_tokens == 0`) or points to `n_stop_tokens` tokens.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_length_penalty(
    params: *const LengthPenaltyParams,
    stop_tokens: *const llama_token,
    n_stop_tokens: usize,
) -> *mut llama_sampler {
    init_from("length_penalty", params, |p| {
        let stops = copy_array(stop_tokens, n_stop_tokens, "stop_tokens")?;
        Ok(Box::new(LengthPenalty::new(p, stops)?))
    })
}

/// Token ban: the `n_ids` ids at `ids` get a logit of -inf. The array is
/// copied; ids absent from the candidates are ignored.
///
/// Returns a new sampler owned by the caller (after
/// `llama_sampler_chain_add` the chain owns it), or NULL when `ids` is NULL
/// with `n_ids > 0`.
///
/// # Safety
/// `ids` is NULL (only with `n_ids == 0`) or points to `n_ids` tokens.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_token_ban(ids: *const llama_token, n_ids: usize) -> *mut llama_sampler {
    guard(std::ptr::null_mut(), || {
        let ids = copy_array(ids, n_ids, "ids").map_err(|e| format!("entropix_sampler_init_token_ban: {e}"))?;
        Ok(into_llama_sampler(Box::new(TokenBan::new(ids))))
    })
}

/// Logit bias with the signature and results of llama.cpp's
/// `llama_sampler_init_logit_bias`: `logit += bias` for each listed token
/// present among the candidates. `n_vocab` is accepted for signature parity
/// and not needed (ids outside the vocabulary simply never match).
/// `n_logit_bias <= 0` gives a sampler that changes nothing. The array is
/// copied. (If an id is listed twice all its biases add up, also on arrays
/// that are not in vocabulary order, where llama.cpp adds only the first.)
///
/// Returns a new sampler owned by the caller (after
/// `llama_sampler_chain_add` the chain owns it), or NULL when `logit_bias`
/// is NULL with `n_logit_bias > 0` or a bias is NaN.
///
/// # Safety
/// `logit_bias` is NULL (only with `n_logit_bias <= 0`) or points to
/// `n_logit_bias` entries.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_logit_bias(
    n_vocab: i32,
    n_logit_bias: i32,
    logit_bias: *const llama_logit_bias,
) -> *mut llama_sampler {
    let _ = n_vocab;
    guard(std::ptr::null_mut(), || {
        let err = |e: ParamError| format!("entropix_sampler_init_logit_bias: {e}");
        let n = usize::try_from(n_logit_bias).unwrap_or(0);
        let raw = copy_array(logit_bias, n, "logit_bias").map_err(err)?;
        let entries = raw.iter().map(|b| LogitBiasEntry { token: b.token, bias: b.bias }).collect();
        Ok(into_llama_sampler(Box::new(LogitBias::new(entries).map_err(err)?)))
    })
}

/// Default parameters of DRY (multiplier 0.8, base 1.75, allowed_length 2,
/// penalty_last_n -1 = the context size).
#[no_mangle]
pub extern "C" fn entropix_dry_default_params() -> DryParams {
    DryParams::default()
}

/// DRY ("Don't Repeat Yourself"), with the results of llama.cpp's
/// `llama_sampler_init_dry`. `n_ctx_train` is the context size that
/// `penalty_last_n == -1` stands for (<= 0: unknown, then the whole history
/// since the last reset counts). The `n_breakers` sequence breakers at
/// `breakers` are NUL-terminated UTF-8 strings resolved through `vocab`
/// exactly as llama.cpp does (cut to 40 bytes; NULL or empty entries are
/// skipped; a breaker that tokenizes to several tokens is matched as a
/// head token plus tail tokens). `vocab` is only read during this call and
/// may be NULL when there are no breakers. The strings are copied.
///
/// Returns a new sampler owned by the caller (after
/// `llama_sampler_chain_add` the chain owns it), or NULL on invalid params,
/// `breakers` NULL with `n_breakers > 0`, or breakers without a `vocab`.
///
/// # Safety
/// `vocab` is NULL or a live vocabulary (`llama_model_get_vocab`); `params`
/// is NULL or valid; `breakers` is NULL (only with `n_breakers == 0`) or
/// points to `n_breakers` pointers, each NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_dry(
    vocab: *const llama_vocab,
    n_ctx_train: i32,
    params: *const DryParams,
    breakers: *const *const c_char,
    n_breakers: usize,
) -> *mut llama_sampler {
    init_from("dry", params, |p| {
        let ptrs = copy_array(breakers, n_breakers, "breakers")?;
        let strings: Vec<Vec<u8>> =
            ptrs.iter().filter(|s| !s.is_null()).map(|&s| CStr::from_ptr(s).to_bytes().to_vec()).filter(|s| !s.is_empty()).collect();
        // llama.cpp resolves nothing when DRY is disabled.
        let seqs = if strings.is_empty() || p.is_disabled() {
            Vec::new()
        } else {
            if vocab.is_null() {
                return Err(ParamError::new("vocab", "NULL", "a vocabulary is needed to resolve sequence breakers"));
            }
            resolve_breakers(vocab, &strings)
        };
        Ok(Box::new(Dry::new(p, seqs, n_ctx_train)?))
    })
}

/// Resolves breaker strings through the vocabulary (see
/// [`breakers_from_strings`]).
unsafe fn resolve_breakers(vocab: *const llama_vocab, strings: &[Vec<u8>]) -> Vec<Vec<TokenId>> {
    let n_vocab = llama_vocab_n_tokens(vocab).max(0);
    let mut buf: Vec<u8> = vec![0; 64];
    let pieces: Vec<Vec<u8>> = (0..n_vocab).map(|t| detokenize_one(vocab, t, &mut buf)).collect();
    let mut tok_buf: Vec<llama_token> = vec![0; 64];
    breakers_from_strings(strings, &pieces, |text| tokenize(vocab, text, &mut tok_buf))
}

/// The text of one token as llama.cpp's `vocab.detokenize({token}, true)`.
unsafe fn detokenize_one(vocab: *const llama_vocab, token: llama_token, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        let n = llama_detokenize(vocab, &token, 1, buf.as_mut_ptr().cast::<c_char>(), buf.len() as i32, false, true);
        let need = (-(n as i64)) as usize;
        if n >= 0 || need <= buf.len() {
            return buf[..n.max(0) as usize].to_vec();
        }
        buf.resize(need, 0);
    }
}

/// `text` tokenized as llama.cpp's `vocab.tokenize(text, false, false)`.
unsafe fn tokenize(vocab: *const llama_vocab, text: &[u8], buf: &mut Vec<llama_token>) -> Vec<TokenId> {
    let len = i32::try_from(text.len()).unwrap_or(i32::MAX);
    loop {
        let n = llama_tokenize(vocab, text.as_ptr().cast::<c_char>(), len, buf.as_mut_ptr(), buf.len() as i32, false, false);
        let need = (-(n as i64)) as usize;
        if n >= 0 || n == i32::MIN || need <= buf.len() {
            return buf[..n.max(0) as usize].to_vec();
        }
        buf.resize(need, 0);
    }
}
