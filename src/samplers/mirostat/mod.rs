//! Mirostat: a feedback controller on surprise (Basu, Ramachandran, Keskar
//! and Varshney 2021, "Mirostat: A Neural Text Decoding Algorithm that
//! Directly Controls Perplexity", ICLR, arXiv:2007.14966).
//!
//! Both versions keep a running "maximum surprise" `mu` (bits), truncate
//! the candidates with it, sample from the renormalised survivors and move
//! `mu` toward the target surprise `tau`:
//! `mu <- mu - eta * (surprise(accepted token) - tau)`.
//!
//! - [`Mirostat`] (v1): estimates the Zipf exponent of the top `m`
//!   candidates, derives a top-k size from it and `mu`, keeps the top k.
//! - [`MirostatV2`] (v2): keeps the candidates whose surprise is at most `mu`.
//!
//! Same results as llama.cpp's `llama_sampler_init_mirostat` and
//! `llama_sampler_init_mirostat_v2` (checked by `tests/oracle_mirostat.rs`),
//! with one deliberate difference: llama.cpp updates `mu` inside `apply`
//! from the token *it* selected; here `apply` changes nothing persistent and
//! `mu` moves only in `accept(token)`, from the surprise of the token that
//! was actually accepted (which a later stage or the host may have chosen).
//! Where llama.cpp's arithmetic is undefined (float-to-int conversion of a
//! NaN or out-of-range k in v1) we define the result; see [`Mirostat`].
//!
//! Sums run in f64. llama.cpp normalises in f32, adding the terms in
//! descending order, so once thousands of candidates survive its small
//! terms vanish against the running sum: its `p` come out high (by a few
//! 1e-4 at most on the oracle inputs) and its `mu` drifts from ours by
//! the resulting error in the surprise (up to ~4e-3 bits after 8 steps
//! with eta = 1). With exact probabilities the two updates agree within
//! 1e-5 bits.
//!
//! Neither version sorts the whole vocabulary (llama.cpp sorts all of it
//! on every call): v1 gathers the top candidates in one scan, v2 cuts on
//! a logit threshold and sorts only the survivors.

mod v1;
mod v2;

pub use v1::{estimate_k, zipf_exponent, Mirostat, MirostatParams};
pub use v2::{MirostatV2, MirostatV2Params};

use crate::core::{Sampler, TokenId};

/// The samplers of this family with default parameters, for the crate
/// registry.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    let seed = 1234;
    vec![
        ("mirostat", Box::new(Mirostat::new(MirostatParams { seed, ..Default::default() }).unwrap()) as Box<dyn Sampler>),
        ("mirostat-v2", Box::new(MirostatV2::new(MirostatV2Params { seed, ..Default::default() }).unwrap())),
    ]
}

/// What the last `apply` left for `accept`: the kept candidates and their
/// renormalised probabilities. Scratch, overwritten by every `apply` and
/// cleared by every `accept`.
#[derive(Debug, Clone, Default)]
struct Observed {
    /// (token, probability after renormalisation over the kept set).
    kept: Vec<(TokenId, f32)>,
}

impl Observed {
    /// Records the survivors of this step (sorted, renormalised).
    fn record(&mut self, survivors: &[crate::core::TokenData]) {
        self.kept.clear();
        self.kept.extend(survivors.iter().map(|t| (t.id, t.p)));
    }

    /// Surprise in bits, `-log2 p`, of `token` under the distribution the
    /// last `apply` sampled from; `None` when the token was not kept or
    /// was kept with probability 0 (its surprise is infinite there). The
    /// computation is in f32, as llama.cpp does it.
    fn surprise_bits(&self, token: TokenId) -> Option<f32> {
        self.kept.iter().find(|&&(id, _)| id == token).and_then(|&(_, p)| (p > 0.0).then(|| -p.log2()))
    }
}

/// Shared state update of both versions: `mu - eta * (surprise - tau)`, in
/// f32 in llama.cpp's order of operations. Returns the surprise used.
fn update_mu(mu: &mut f32, observed: &mut Observed, token: TokenId, tau: f32, eta: f32) -> Option<f32> {
    let surprise = observed.surprise_bits(token);
    if let Some(s) = surprise {
        *mu -= eta * (s - tau);
    }
    observed.kept.clear();
    surprise
}

/// Serialises a float for `state_json`: non-finite values become null.
fn json_f64(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
}
