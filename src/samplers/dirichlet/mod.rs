//! Samplers of the `dirichlet` family (filled in by its own modules).

use crate::core::Sampler;

/// The samplers of this family with default parameters, for the crate
/// registry.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    Vec::new()
}
