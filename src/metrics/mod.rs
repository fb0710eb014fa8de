//! Uncertainty metrics of a step: logits entropy and varentropy (see
//! [`crate::core::math::logit_moments`]) and attention statistics.

pub mod attention;

pub use crate::core::math::{logit_moments, LogitMoments};
pub use attention::{attention_metrics, AttentionMetrics, AttentionSource, FixedAttention};
