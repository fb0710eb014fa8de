//! C exports of the `dirichlet` family: the adaptive Dirichlet sampler
//! (seed 003), its parameter profiles, and the prompt-logits hook shared by
//! every sampler of this library that initialises from the prompt.
//!
//! The constructor returns a new `struct llama_sampler *` owned by the
//! caller: free it with `llama_sampler_free`, or hand it to a chain with
//! `llama_sampler_chain_add`, after which the chain owns it. NULL params
//! mean the defaults. Invalid params give NULL and a last error.
//!
//! The `int` functions return `ENTROPIX_OK` (0) on success,
//! `ENTROPIX_ERR_NULL` when a required pointer is NULL and
//! `ENTROPIX_ERR_INVALID` for any other bad input, with the reason in
//! `entropix_last_error()`, as every `int` function of this library does.

use std::ffi::{c_char, c_int, CStr};
use std::path::Path;

use llama_cpp_sys_2::llama_sampler;

use super::classic::init_from;
use super::error::{guard, guard_status, Failure, ENTROPIX_OK as OK};
use super::plugin::sampler_ref;
use crate::samplers::dirichlet::{load_profile_over, DirichletParams, DirichletSampler};

/// Default parameters of the adaptive Dirichlet sampler, all in nats: the
/// reference DSConfig (EMA coefficients 0.70, cross-entropy coefficients
/// 0.65, emwa_logp base 4 / factor 3, perturbation base 10 / coefficient 1,
/// noise floor -12, outlier top-k 6, argmax and Dirichlet thresholds
/// weight 0.1 / bias 1.2), seed 003's target entropy
/// `0.2 emwa_cross_ent + 0.35 emwa_entropy + 1.5`, support 128 tokens
/// plus a lumped remainder, fit and temp_tune settings of seed 003, seed
/// 0xFFFFFFFF (random).
#[no_mangle]
pub extern "C" fn entropix_dirichlet_default_params() -> DirichletParams {
    guard(DirichletParams::default(), || Ok(DirichletParams::default()))
}

/// The reference settings of the adaptive Dirichlet sampler (seed 003): its
/// reference implementation's exact values (the `reference` preset).
/// The defaults depart from them where `eval` measured better text.
#[no_mangle]
pub extern "C" fn entropix_dirichlet_reference_params() -> DirichletParams {
    guard(DirichletParams::reference(), || Ok(DirichletParams::reference()))
}

/// The adaptive Dirichlet sampler (seed 003): moving averages of the
/// model's log-probabilities, a Dirichlet fitted to them, an entropy-tuned
/// temperature and Dirichlet perturbation of the tempered distribution.
/// Ends a chain (it selects a token). State moves only when the chain
/// accepts a token (`llama_sampler_accept`). Initialise it from the
/// prompt's logits with `entropix_sampler_observe_prompt_logits` (decode
/// the prompt with logits for every position); otherwise the first sampled
/// position initialises it.
///
/// Returns a new sampler owned by the caller (free it with
/// `llama_sampler_free`, or add it to a chain, which then owns it); NULL
/// with `entropix_last_error()` on invalid params.
///
/// # Safety
/// `params` is NULL (defaults) or points to a valid
/// `entropix_dirichlet_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_dirichlet(params: *const DirichletParams) -> *mut llama_sampler {
    init_from("dirichlet", params, |p| Ok(Box::new(DirichletSampler::new(p)?)))
}

/// Loads a Dirichlet profile (JSON: `{"format": "entropix-dirichlet-profile",
/// "version": 1, "params": {...}, "meta": {...}}`, or a bare params object;
/// values in nats) into `*inout`: fields the profile names replace those
/// of `*inout`, the others keep their values. Returns 0, or 1 (NULL
/// `path`/`inout`) / 2 (unreadable file, invalid JSON, unknown field,
/// invalid values) with `entropix_last_error()`; `*inout` is unchanged on
/// error. Nothing is retained: `path` and `inout` stay the caller's.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `inout` is NULL or points to
/// a valid, writable `entropix_dirichlet_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_dirichlet_load_profile(path: *const c_char, inout: *mut DirichletParams) -> c_int {
    const F: &str = "entropix_dirichlet_load_profile";
    guard_status(|| {
        if inout.is_null() {
            return Err(Failure::null(format!("{F}: params pointer is NULL")));
        }
        if path.is_null() {
            return Err(Failure::null(format!("{F}: path is NULL")));
        }
        let Ok(path) = CStr::from_ptr(path).to_str() else {
            return Err(Failure::invalid(format!("{F}: path is not valid UTF-8")));
        };
        match load_profile_over(Path::new(path), &*inout) {
            Ok(params) => {
                *inout = params;
                Ok(OK)
            }
            Err(e) => Err(Failure::invalid(format!("{F}: {e}"))),
        }
    })
}

/// Initialises a sampler of this library from the logits of every prompt
/// position: `logits` holds `n_positions * n_vocab` floats, row-major by
/// position (decode the prompt with `logits[i] = true` for every token and
/// pass `llama_get_logits(ctx)`; the rows must be the prompt's positions
/// in order). Call it after decoding the prompt and before sampling.
/// Works for every sampler of this library that uses prompt logits (e.g.
/// `entropix_sampler_init_dirichlet`); `smpl` is the sampler itself, not a
/// chain holding it (use `llama_sampler_chain_get`). Returns 0, or 1 (NULL
/// `smpl`/`logits`) / 2 (not one of ours, does not use prompt logits,
/// `n_positions` or `n_vocab` not positive) with `entropix_last_error()`.
/// The logits are read during the call only; nothing is retained, and the
/// sampler stays the caller's (or its chain's).
///
/// # Safety
/// `smpl` is NULL or a live `struct llama_sampler *` not used from another
/// thread during the call; `logits` is NULL or points to
/// `n_positions * n_vocab` readable floats.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_observe_prompt_logits(smpl: *mut llama_sampler, logits: *const f32, n_positions: i32, n_vocab: i32) -> c_int {
    const F: &str = "entropix_sampler_observe_prompt_logits";
    guard_status(|| {
        if smpl.is_null() {
            return Err(Failure::null(format!("{F}: sampler is NULL")));
        }
        if logits.is_null() {
            return Err(Failure::null(format!("{F}: logits is NULL")));
        }
        let Some(s) = sampler_ref(smpl) else {
            return Err(Failure::invalid(format!("{F}: not an entropix sampler (a chain or llama.cpp's own?)")));
        };
        if n_positions <= 0 || n_vocab <= 0 {
            return Err(Failure::invalid(format!("{F}: n_positions ({n_positions}) and n_vocab ({n_vocab}) must be positive")));
        }
        let Some(len) = (n_positions as usize).checked_mul(n_vocab as usize).filter(|&l| l <= isize::MAX as usize / 4) else {
            return Err(Failure::invalid(format!("{F}: n_positions * n_vocab overflows")));
        };
        // SAFETY: the caller promises `len` readable floats at `logits`.
        let rows = std::slice::from_raw_parts(logits, len);
        if s.observe_prompt_logits(rows, n_vocab as usize) {
            Ok(OK)
        } else {
            Err(Failure::invalid(format!("{F}: the `{}` sampler does not use prompt logits", s.name())))
        }
    })
}
