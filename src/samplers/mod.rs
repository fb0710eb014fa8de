//! The samplers, one module per family. Pure Rust: each works on a
//! [`crate::core::Candidates`] view and knows nothing about llama.cpp.

pub mod alpha;
pub mod dirichlet;
pub mod dist;
pub mod entropix;
pub mod filters;
pub mod mirostat;
pub mod penalties;
pub mod greedy;
pub mod temperature;
pub mod top_k;

pub use dist::{Dist, DistParams};
pub use greedy::Greedy;
pub use temperature::{Temperature, TemperatureParams};
pub use top_k::{TopK, TopKParams};

use crate::core::Sampler;

/// Every sampler family of this crate with its default parameters and a
/// fixed seed, for contract tests and benchmarks. Families that need a
/// model (vocabulary strings) are built from token ids here.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    let seed = 1234;
    let mut all: Vec<(&'static str, Box<dyn Sampler>)> = vec![
        ("temp", Box::new(Temperature::new(TemperatureParams::default()).unwrap()) as Box<dyn Sampler>),
        ("greedy", Box::new(Greedy)),
        ("dist", Box::new(Dist::new(DistParams { seed }).unwrap())),
        ("top-k", Box::new(TopK::new(TopKParams::default()).unwrap())),
    ];
    all.extend(filters::registry());
    all.extend(penalties::registry());
    all.extend(mirostat::registry());
    all.extend(entropix::registry());
    all.extend(dirichlet::registry());
    all.extend(alpha::registry());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_match_sampler_names() {
        for (name, s) in registry() {
            assert_eq!(name, s.name());
        }
        // The adaptive families select the token themselves; the
        // AlphaSampler asks for attention.
        for (name, s) in entropix::registry().into_iter().chain(dirichlet::registry()).chain(alpha::registry()) {
            assert!(s.selects(), "{name}");
        }
        for (name, s) in alpha::registry() {
            assert!(s.needs_attention(), "{name}");
        }
    }
}
