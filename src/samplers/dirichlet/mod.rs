//! The adaptive Dirichlet sampler (seed 003; reference: xjdr-alt/entropix
//! `dslider`). Everything in nats.
//!
//! - [`special`]: digamma, trigamma, tetragamma, log-gamma (f64);
//! - `inv_digamma_table`: the inverse digamma by table lookup, for the
//!   tail model's hundreds of inversions per step;
//! - [`fit`]: seed 003's Halley fit of Dirichlet parameters to expected
//!   log-probabilities, O(N) per iteration;
//! - [`mod@temp_tune`]: seed 003's temperature search for a target entropy;
//! - [`support`]: the top-N support with a lumped remainder that keeps the
//!   fit cheap;
//! - [`kernels`]: the vectorised full-vocabulary passes (f32 exp, f64 sums);
//! - [`gamma`]: Marsaglia-Tsang Gamma variates, Dirichlet draws and density;
//! - [`sampler`]: the state machine, [`DirichletSampler`];
//! - [`params`]: [`DirichletParams`], all hyperparameters;
//! - [`profile`]: JSON profiles of the params and [`cross_entropy_rate`],
//!   the objective a tuner minimises.

pub mod fit;
pub mod gamma;
pub(crate) mod inv_digamma_table;
pub mod kernels;
pub mod params;
pub mod profile;
pub mod sampler;
pub mod special;
pub mod support;
pub mod temp_tune;

pub use fit::{fit_dirichlet, FitConfig, FitResult};
pub use params::DirichletParams;
pub use profile::{cross_entropy_rate, load_profile, load_profile_over, replay, save_profile, Profile, ProfileError, ReplayError, ReplayStats};
pub use sampler::{DirichletPath, DirichletSampler};
pub use temp_tune::{temp_tune, TempTuneConfig, TempTuneResult};

use crate::core::Sampler;

/// Seed of the registry's instance (fixed, so contract tests and
/// benchmarks are reproducible).
pub const REGISTRY_SEED: u32 = 1234;

/// The samplers of this family with default parameters, for the crate
/// registry.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    let params = DirichletParams { seed: REGISTRY_SEED, ..Default::default() };
    vec![("dirichlet", Box::new(DirichletSampler::new(params).expect("default params are valid")) as Box<dyn Sampler>)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_are_valid_and_round_trip_through_serde() {
        let p = DirichletParams::default();
        assert!(p.validate().is_ok());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<DirichletParams>(&json).unwrap(), p);
        assert_eq!(serde_json::from_str::<DirichletParams>("{}").unwrap(), p);
        assert!(serde_json::from_str::<DirichletParams>("{\"no_such_field\": 1}").is_err());
        // The fit's polish budget: 0 (off) to 100.
        assert!(DirichletParams { fit_polish_steps: 0, ..p }.validate().is_ok());
        let err = DirichletParams { fit_polish_steps: 101, ..p }.validate().unwrap_err();
        assert!(err.to_string().contains("fit_polish_steps"), "{err}");
        // The draw's tail cut: a ratio in [0, 1].
        for ok in [0.0, 0.5, 1.0] {
            assert!(DirichletParams { draw_min_p: ok, ..p }.validate().is_ok(), "{ok}");
        }
        for bad in [-0.1, 1.5, f32::NAN] {
            let err = DirichletParams { draw_min_p: bad, ..p }.validate().unwrap_err();
            assert!(err.to_string().contains("draw_min_p"), "{err}");
        }
    }
}
