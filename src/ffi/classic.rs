//! C exports of the classic samplers: `entropix_<family>_default_params()`
//! and `entropix_sampler_init_<family>(const params *)`.
//!
//! Every constructor returns a new `struct llama_sampler *` owned by the
//! caller: free it with `llama_sampler_free`, or hand it to a chain with
//! `llama_sampler_chain_add`, after which the chain owns it. NULL params
//! mean the defaults. Invalid params give NULL and a last error.

use llama_cpp_sys_2::llama_sampler;

use super::error::guard;
use super::plugin::into_llama_sampler;
use crate::core::{ParamError, Sampler};
use crate::samplers::*;

/// Reads `*params` (the defaults when NULL), builds the sampler and wraps
/// it; NULL and a last error on invalid params.
pub(crate) unsafe fn init_from<P: Copy + Default>(
    family: &str,
    params: *const P,
    build: impl FnOnce(P) -> Result<Box<dyn Sampler>, ParamError>,
) -> *mut llama_sampler {
    guard(std::ptr::null_mut(), || {
        let p = if params.is_null() { P::default() } else { *params };
        let sampler = build(p).map_err(|e| format!("entropix_sampler_init_{family}: {e}"))?;
        Ok(into_llama_sampler(sampler))
    })
}

/// Default parameters of the temperature sampler (T = 0.8).
#[no_mangle]
pub extern "C" fn entropix_temperature_default_params() -> TemperatureParams {
    TemperatureParams::default()
}

/// Temperature: logit / T; T <= 0 keeps only the best token.
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_temperature_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_temperature(params: *const TemperatureParams) -> *mut llama_sampler {
    init_from("temperature", params, |p| Ok(Box::new(Temperature::new(p)?)))
}

/// Greedy: selects the highest logit. Ends a chain.
#[no_mangle]
pub extern "C" fn entropix_sampler_init_greedy() -> *mut llama_sampler {
    guard(std::ptr::null_mut(), || Ok(into_llama_sampler(Box::new(Greedy))))
}

/// Default parameters of the dist sampler (seed 0xFFFFFFFF: random).
#[no_mangle]
pub extern "C" fn entropix_dist_default_params() -> DistParams {
    DistParams::default()
}

/// Dist: samples from softmax(logits) with a seeded RNG. Ends a chain.
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_dist_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_dist(params: *const DistParams) -> *mut llama_sampler {
    init_from("dist", params, |p| Ok(Box::new(Dist::new(p)?)))
}

/// Default parameters of top-k (k = 40).
#[no_mangle]
pub extern "C" fn entropix_top_k_default_params() -> TopKParams {
    TopKParams::default()
}

/// Top-k: keeps the k highest logits, sorted descending.
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_top_k_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_top_k(params: *const TopKParams) -> *mut llama_sampler {
    init_from("top_k", params, |p| Ok(Box::new(TopK::new(p)?)))
}
