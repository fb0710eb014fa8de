//! Error types shared by all samplers.

use thiserror::Error;

/// A parameter outside its valid range, reported by `Params::validate()`.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid parameter `{name}` = {value}: {reason}")]
pub struct ParamError {
    /// The parameter's field name, as in the params struct.
    pub name: &'static str,
    /// The rejected value, formatted.
    pub value: String,
    /// What the valid range is.
    pub reason: &'static str,
}

impl ParamError {
    /// Builds an error for parameter `name` holding `value`.
    pub fn new(name: &'static str, value: impl std::fmt::Display, reason: &'static str) -> Self {
        Self { name, value: value.to_string(), reason }
    }
}

/// Checks that `value` is finite and inside `[lo, hi]`.
pub(crate) fn check_range(name: &'static str, value: f32, lo: f32, hi: f32, reason: &'static str) -> Result<(), ParamError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(ParamError::new(name, value, reason))
    }
}

/// Why a sampler could not do its work on one call.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SampleError {
    /// The candidate array is empty: nothing to select from.
    #[error("the candidate array is empty")]
    EmptyCandidates,
    /// Every candidate has a logit of -inf or NaN: no token can be selected.
    #[error("every candidate logit is -inf or NaN; nothing can be selected")]
    NoFiniteLogits,
    /// The sampler needs something it was not given (attention, a context).
    #[error("{0}")]
    Missing(String),
}
