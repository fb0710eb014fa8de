//! Samplers of the `penalties` family: they lower (or raise) the logits of
//! particular tokens, mostly depending on what was generated so far.
//!
//! - [`Penalties`]: llama.cpp's repetition / frequency / presence penalties;
//! - [`RepetitionDecay`]: repetition penalty that depends on distance
//!   (seed 004);
//! - [`LengthPenalty`]: stop-token logit scaled by the generated length
//!   (seed 004);
//! - [`TokenBan`]: listed ids get -inf (seed 004);
//! - [`LogitBias`]: llama.cpp's logit bias;
//! - [`Dry`]: DRY, llama.cpp's "Don't Repeat Yourself".
//!
//! All keep their history in `accept` and, when the candidate array is in
//! vocabulary order (`data[i].id == i`, llama.cpp's array before any
//! reordering), touch only the affected tokens in `apply` instead of
//! scanning the vocabulary.

mod dry;
mod length_penalty;
mod logit_bias;
#[allow(clippy::module_inception)]
mod penalties;
mod repetition_decay;
mod token_ban;
mod util;

pub use dry::{breakers_from_strings, Dry, DryParams, MAX_BREAKER_BYTES, MAX_BREAKER_TAIL};
pub use length_penalty::{LengthPenalty, LengthPenaltyParams};
pub use logit_bias::{LogitBias, LogitBiasEntry};
pub use penalties::{Penalties, PenaltiesParams};
pub use repetition_decay::{RepetitionDecay, RepetitionDecayParams};
pub use token_ban::TokenBan;

use crate::core::Sampler;

/// The samplers of this family with default parameters, for the crate
/// registry. Id lists are small and fixed (a high id is banned so that
/// small test vocabularies are untouched); histories start empty.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    vec![
        ("penalties", Box::new(Penalties::new(PenaltiesParams::default()).expect("valid defaults")) as Box<dyn Sampler>),
        ("repetition-decay", Box::new(RepetitionDecay::new(RepetitionDecayParams::default()).expect("valid defaults"))),
        ("length-penalty", Box::new(LengthPenalty::new(LengthPenaltyParams::default(), vec![0]).expect("valid defaults"))),
        ("token-ban", Box::new(TokenBan::new(vec![40_000]))),
        (
            "logit-bias",
            Box::new(
                LogitBias::new(vec![LogitBiasEntry { token: 0, bias: -1.0 }, LogitBiasEntry { token: 1, bias: 2.5 }])
                    .expect("valid biases"),
            ),
        ),
        ("dry", Box::new(Dry::new(DryParams::default(), Vec::new(), 0).expect("valid defaults"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Candidates, TokenData};

    fn bits(a: &[TokenData]) -> Vec<(i32, u32)> {
        a.iter().map(|t| (t.id, t.logit.to_bits())).collect()
    }

    #[test]
    fn registry_samplers_keep_the_contract() {
        let logits = [1.0, f32::NAN, f32::NEG_INFINITY, f32::INFINITY, -2.0, 0.0, 3.5, -0.5];
        for (name, mut s) in registry() {
            for t in [0, 1, 6, 0, 1, 6, 0, 1] {
                s.accept(t);
            }
            let base: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
            let mut a = base.clone();
            s.apply(&mut Candidates::new(&mut a)).unwrap();
            let mut b = base.clone();
            s.apply(&mut Candidates::new(&mut b)).unwrap();
            assert_eq!(bits(&a), bits(&b), "{name}: apply twice");
            let mut c = base.clone();
            s.box_clone().apply(&mut Candidates::new(&mut c)).unwrap();
            assert_eq!(bits(&a), bits(&c), "{name}: clone");
            s.apply(&mut Candidates::new(&mut [])).unwrap();
            s.reset();
            let mut fresh = registry().into_iter().find(|(n, _)| *n == name).unwrap().1;
            let (mut d, mut e) = (base.clone(), base.clone());
            s.apply(&mut Candidates::new(&mut d)).unwrap();
            fresh.apply(&mut Candidates::new(&mut e)).unwrap();
            assert_eq!(bits(&d), bits(&e), "{name}: reset");
        }
    }
}
