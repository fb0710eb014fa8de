//! The AlphaSampler (seed 000, "thermodynamic" sampling; reference
//! EdwardDali/alpha): alpha = normalised token entropy + normalised
//! attention entropy, averaged over a window, picks a state (COLD, MIXED,
//! HOT) and, through seed 000's maps, the temperature, top-k, top-p and
//! repetition penalty. In the COLD state the sampler can decode the best
//! candidates one step ahead and pick the one whose next step attends most
//! sharply (the seed's "speculative decoding").
//!
//! - [`params`]: [`AlphaParams`], the state thresholds and the maps;
//! - [`sampler`]: [`AlphaSampler`] and its step report;
//! - [`lookahead`]: the [`LookaheadBackend`] interface, candidate choice and
//!   scoring. The llama.cpp backend is `crate::ffi::LlamaLookahead` (this
//!   module stays free of llama.cpp, as every sampler module).
//!
//! Units: entropies in bits, head-entropy variance in bits², alpha and the
//! thresholds dimensionless.

pub mod lookahead;
pub mod params;
pub mod sampler;

pub use lookahead::{lookahead_candidates, score_candidates, LookaheadBackend, ScoredCandidate};
pub use params::{rep_penalty_of, temperature_of, top_k_of, top_k_raw_of, top_p_of, AlphaDerived, AlphaParams, ThermoState};
pub use sampler::{AlphaSampler, AlphaStep, LookaheadOutcome, NAME};

use crate::core::Sampler;

/// The samplers of this family with default parameters and the fixed seed
/// 1234 (so contract tests and benchmarks are reproducible), for the crate
/// registry: `"alpha"` with no attention source and no lookahead backend
/// (the attention half of alpha is then 0 and COLD steps sample).
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    let params = AlphaParams { seed: 1234, ..Default::default() };
    vec![(NAME, Box::new(AlphaSampler::new(params).expect("default params are valid")) as Box<dyn Sampler>)]
}
