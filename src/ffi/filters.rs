//! C exports of the `filters` samplers: `entropix_<family>_default_params()`
//! and `entropix_sampler_init_<family>(const params *)`.
//!
//! Every constructor returns a new `struct llama_sampler *` owned by the
//! caller: free it with `llama_sampler_free`, or hand it to a chain with
//! `llama_sampler_chain_add`, after which the chain owns it. NULL params
//! mean the defaults. Invalid params give NULL and a last error
//! (`entropix_last_error()`). None of these samplers selects a token: end
//! the chain with one that does (dist, greedy, mirostat, ...).

use llama_cpp_sys_2::llama_sampler;

use super::classic::init_from;
use crate::samplers::filters::*;

/// Default parameters of top-p (p = 0.95, min_keep = 1).
#[no_mangle]
pub extern "C" fn entropix_top_p_default_params() -> TopPParams {
    TopPParams::default()
}

/// Top-p (nucleus): keeps the smallest set of most probable candidates
/// whose probabilities sum to at least p (at least `min_keep`), sorted
/// descending, with `p` set to their softmax probability. Same survivors
/// as `llama_sampler_init_top_p(p, min_keep)`. p must be in [0, 1]; 1
/// disables. The caller owns the result (the chain, once added).
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_top_p_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_top_p(params: *const TopPParams) -> *mut llama_sampler {
    init_from("top_p", params, |p| Ok(Box::new(TopP::new(p)?)))
}

/// Default parameters of min-p (p = 0.05, min_keep = 1).
#[no_mangle]
pub extern "C" fn entropix_min_p_default_params() -> MinPParams {
    MinPParams::default()
}

/// Min-p: keeps the candidates with probability >= p times the top
/// probability (at least `min_keep`). Same survivors as
/// `llama_sampler_init_min_p(p, min_keep)`. p must be in [0, 1]; 0
/// disables. The caller owns the result (the chain, once added).
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_min_p_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_min_p(params: *const MinPParams) -> *mut llama_sampler {
    init_from("min_p", params, |p| Ok(Box::new(MinP::new(p)?)))
}

/// Default parameters of locally typical sampling (p = 0.95, min_keep = 1).
#[no_mangle]
pub extern "C" fn entropix_typical_default_params() -> TypicalParams {
    TypicalParams::default()
}

/// Locally typical sampling: keeps the candidates whose surprise is closest
/// to the entropy until their probabilities sum past p (at least
/// `min_keep`). Same survivors as `llama_sampler_init_typical(p,
/// min_keep)`; the survivors come out sorted. p must be in [0, 1]; 1
/// disables. The caller owns the result (the chain, once added).
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_typical_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_typical(params: *const TypicalParams) -> *mut llama_sampler {
    init_from("typical", params, |p| Ok(Box::new(Typical::new(p)?)))
}

/// Default parameters of top-nσ (n = 1.0).
#[no_mangle]
pub extern "C" fn entropix_top_n_sigma_default_params() -> TopNSigmaParams {
    TopNSigmaParams::default()
}

/// Top-nσ: sets to -inf every logit below max - n·σ (σ the standard
/// deviation of the logits that are not -inf). Same result as
/// `llama_sampler_init_top_n_sigma(n)`. n must be finite; n <= 0
/// disables. The caller owns the result (the chain, once added).
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_top_n_sigma_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_top_n_sigma(params: *const TopNSigmaParams) -> *mut llama_sampler {
    init_from("top_n_sigma", params, |p| Ok(Box::new(TopNSigma::new(p)?)))
}

/// Default parameters of the entropy-based dynamic temperature
/// (temp = 0.8, delta = 0.5, exponent = 1.0).
#[no_mangle]
pub extern "C" fn entropix_temp_ext_default_params() -> TempExtParams {
    TempExtParams::default()
}

/// Entropy-based dynamic temperature: with H the entropy (nats) and n the
/// number of candidates, T = T_lo + (T_hi - T_lo) · (H / ln n)^exponent,
/// T_lo = max(0, temp - delta), T_hi = temp + delta; then logits / T and
/// `p` set to the softmax. Same result as `llama_sampler_init_temp_ext(temp,
/// delta, exponent)`; delta <= 0 is a plain temperature. The caller owns
/// the result (the chain, once added).
///
/// # Safety
/// `params` is NULL or points to a valid `entropix_temp_ext_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_temp_ext(params: *const TempExtParams) -> *mut llama_sampler {
    init_from("temp_ext", params, |p| Ok(Box::new(TempExt::new(p)?)))
}

/// Default parameters of the sigmoid dynamic temperature (temp = 1.0,
/// min_temp = 0.0, k = 10, c = 0.5).
#[no_mangle]
pub extern "C" fn entropix_dynamic_temperature_default_params() -> DynamicTemperatureParams {
    DynamicTemperatureParams::default()
}

/// Sigmoid dynamic temperature (kalomaze's early form): with p_max the top
/// probability, T = temp - (temp - min_temp) / (1 + exp(-k (p_max - c))),
/// then logits / T (T <= 0 keeps only the best token). min_temp == temp
/// is a plain temperature. The caller owns the result (the chain, once
/// added).
///
/// # Safety
/// `params` is NULL or points to a valid
/// `entropix_dynamic_temperature_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_dynamic_temperature(params: *const DynamicTemperatureParams) -> *mut llama_sampler {
    init_from("dynamic_temperature", params, |p| Ok(Box::new(DynamicTemperature::new(p)?)))
}
