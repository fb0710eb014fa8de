//! Samplers of the `entropix` family: entropy-, varentropy- and
//! attention-driven strategy switching.
//!
//! - [`Entropix`] ("Shrek sampler", seed 002, reference xjdr-alt/entropix):
//!   five strategies (flowing, treading, exploring, resampling, adaptive
//!   multi-sample), three variants (original, all six metrics, logits
//!   only).
//! - [`FourMode`] (seed 001, reference Maximilian-Winter/entropy_sampler):
//!   the same four quadrants plus adaptive, with a pause token and a
//!   clarifying-question token in the high-entropy, low-varentropy mode.
//! - [`Profile`]: per-model thresholds with units, as JSON.
//!
//! Units: logits entropy in bits, varentropy in bits² (of softmax(logits)
//! at T = 1 over the candidates the sampler receives, so put these
//! samplers first or alone in a chain); attention metrics as in
//! [`crate::metrics::AttentionMetrics`]. Both samplers select a token and
//! both record their last step ([`StepReport`], `state_json`,
//! `entropix_entropix_last_step`).

mod common;
mod four_mode;
mod profile;
mod shrek;

pub use common::{AttnVarentropyKind, Derived, EntropixStep, Insertion, ScoredSample, StepReport, Strategy};
pub use four_mode::{FourMode, FourModeParams};
pub use profile::{profile_keys, unit_of, Profile, ProfileError, Threshold, Unit};
pub use shrek::{Entropix, EntropixParams, ScoreMode, Variant};

use crate::core::Sampler;

/// The samplers of this family with default parameters and a fixed seed,
/// for the crate registry. No clarifying or pause token is set (they are
/// vocabulary-specific), so treading samples.
pub fn registry() -> Vec<(&'static str, Box<dyn Sampler>)> {
    let seed = 1234;
    vec![
        ("entropix", Box::new(Entropix::new(EntropixParams { seed, ..Default::default() }).unwrap()) as Box<dyn Sampler>),
        ("four-mode", Box::new(FourMode::new(FourModeParams { seed, ..Default::default() }).unwrap())),
    ]
}
