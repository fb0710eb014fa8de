//! Greedy selection: the highest logit wins (first one on ties), as
//! llama.cpp's `llama_sampler_init_greedy`.

use crate::core::{Candidates, SampleError, Sampler};

/// Selects the candidate with the highest logit. Has no parameters.
#[derive(Debug, Clone, Default)]
pub struct Greedy;

impl Sampler for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        crate::core::sampler::require_candidates(candidates)?;
        let best = candidates.argmax().ok_or(SampleError::NoFiniteLogits)?;
        candidates.select(best);
        Ok(())
    }

    fn selects(&self) -> bool {
        true
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
