//! The `filters` family: samplers that truncate or reshape the candidate
//! distribution without selecting a token.
//!
//! - [`top_p`]: nucleus truncation (llama.cpp `top-p`);
//! - [`min_p`]: probability relative to the best (llama.cpp `min-p`);
//! - [`typical`]: locally typical sampling (llama.cpp `typical`);
//! - [`top_n_sigma`]: logits within n standard deviations of the best
//!   (llama.cpp `top-n-sigma`);
//! - [`dynamic_temperature`]: entropy-based dynamic temperature (llama.cpp
//!   `temp-ext`) and the early sigmoid form of seed 004.
//!
//! Each matches llama.cpp's sampler of the same name on its survivors and
//! probabilities (`tests/oracle_filters.rs`) while avoiding full sorts and
//! per-call allocations.

pub mod dynamic_temperature;
mod mass;
pub mod min_p;
pub mod top_n_sigma;
pub mod top_p;
pub mod typical;
mod window;

pub use dynamic_temperature::{DynamicTemperature, DynamicTemperatureParams, TempExt, TempExtParams};
pub use min_p::{MinP, MinPParams};
pub use top_n_sigma::{TopNSigma, TopNSigmaParams};
pub use top_p::{TopP, TopPParams};
pub use typical::{Typical, TypicalParams};

use crate::core::Sampler;

/// The samplers of this family with default parameters, for the crate
/// registry.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    // Defaults are valid by construction.
    vec![
        ("top-p", Box::new(TopP::new(TopPParams::default()).unwrap()) as Box<dyn Sampler>),
        ("min-p", Box::new(MinP::new(MinPParams::default()).unwrap())),
        ("typical", Box::new(Typical::new(TypicalParams::default()).unwrap())),
        ("top-n-sigma", Box::new(TopNSigma::new(TopNSigmaParams::default()).unwrap())),
        ("temp-ext", Box::new(TempExt::new(TempExtParams::default()).unwrap())),
        ("dyn-temp-sigmoid", Box::new(DynamicTemperature::new(DynamicTemperatureParams::default()).unwrap())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_are_valid_and_round_trip_through_serde() {
        fn check<P: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Default>() {
            let p = P::default();
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<P>(&json).unwrap(), p);
            // Missing fields take their defaults.
            assert_eq!(serde_json::from_str::<P>("{}").unwrap(), p);
        }
        check::<TopPParams>();
        check::<MinPParams>();
        check::<TypicalParams>();
        check::<TopNSigmaParams>();
        check::<TempExtParams>();
        check::<DynamicTemperatureParams>();
        assert!(TopPParams::default().validate().is_ok());
        assert!(MinPParams::default().validate().is_ok());
        assert!(TypicalParams::default().validate().is_ok());
        assert!(TopNSigmaParams::default().validate().is_ok());
        assert!(TempExtParams::default().validate().is_ok());
        assert!(DynamicTemperatureParams::default().validate().is_ok());
    }
}
