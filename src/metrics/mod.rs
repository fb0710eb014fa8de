//! Uncertainty metrics of a step: logits entropy and varentropy (see
//! [`crate::core::math::logit_moments`]); attention metrics join here.

pub use crate::core::math::{logit_moments, LogitMoments};
