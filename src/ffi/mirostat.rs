//! C exports of the `mirostat` samplers: `entropix_mirostat_default_params()`,
//! `entropix_sampler_init_mirostat(const params *)` and the same pair for
//! v2.
//!
//! Every constructor returns a new `struct llama_sampler *` owned by the
//! caller: free it with `llama_sampler_free`, or hand it to a chain with
//! `llama_sampler_chain_add`, after which the chain owns it. NULL params
//! mean the defaults. Invalid params give NULL and a last error.

use llama_cpp_sys_2::llama_sampler;

use super::classic::init_from;
use crate::samplers::mirostat::{Mirostat, MirostatParams, MirostatV2, MirostatV2Params};

/// Default parameters of Mirostat v1: n_vocab 0 (the candidate count),
/// seed 0xFFFFFFFF (random), tau 5.0 bits, eta 0.1, m 100.
#[no_mangle]
pub extern "C" fn entropix_mirostat_default_params() -> MirostatParams {
    MirostatParams::default()
}

/// Mirostat v1 (Basu et al. 2021): top-k with k from a Zipf fit over the
/// top m candidates and the running surprise bound mu (starts at 2 tau),
/// then a seeded draw. Ends a chain (it selects a token). mu moves only
/// when the chain accepts a token (`llama_sampler_accept`), by the surprise
/// of that token.
///
/// Returns a new sampler owned by the caller (free it with
/// `llama_sampler_free`, or add it to a chain, which then owns it); NULL
/// with `entropix_last_error()` on invalid params.
///
/// # Safety
/// `params` is NULL (defaults) or points to a valid
/// `entropix_mirostat_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_mirostat(params: *const MirostatParams) -> *mut llama_sampler {
    init_from("mirostat", params, |p| Ok(Box::new(Mirostat::new(p)?)))
}

/// Default parameters of Mirostat v2: seed 0xFFFFFFFF (random), tau 5.0
/// bits, eta 0.1.
#[no_mangle]
pub extern "C" fn entropix_mirostat_v2_default_params() -> MirostatV2Params {
    MirostatV2Params::default()
}

/// Mirostat v2: keeps the candidates whose surprise is at most mu bits
/// (mu starts at 2 tau), then a seeded draw. Ends a chain (it selects a
/// token). mu moves only when the chain accepts a token
/// (`llama_sampler_accept`), by the surprise of that token.
///
/// Returns a new sampler owned by the caller (free it with
/// `llama_sampler_free`, or add it to a chain, which then owns it); NULL
/// with `entropix_last_error()` on invalid params.
///
/// # Safety
/// `params` is NULL (defaults) or points to a valid
/// `entropix_mirostat_v2_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_mirostat_v2(params: *const MirostatV2Params) -> *mut llama_sampler {
    init_from("mirostat_v2", params, |p| Ok(Box::new(MirostatV2::new(p)?)))
}
