//! Random selection from softmax(logits), seeded: llama.cpp's
//! `llama_sampler_init_dist`, with a counter-based RNG so `apply` is pure.

use serde::{Deserialize, Serialize};

use crate::core::softmax_weights::{sum_p, BLOCK};
use crate::core::{Candidates, DrawStream, ParamError, SampleError, Sampler, SeededRng, TokenId, RANDOM_SEED};

/// Parameters of [`Dist`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistParams {
    /// RNG seed. `0xFFFFFFFF` (llama.cpp's `LLAMA_DEFAULT_SEED`) draws a
    /// random seed at construction. Default `0xFFFFFFFF`.
    pub seed: u32,
}

impl Default for DistParams {
    fn default() -> Self {
        Self { seed: RANDOM_SEED }
    }
}

impl DistParams {
    /// Every seed is valid.
    pub fn validate(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

/// Samples one candidate in proportion to softmax(logit) and writes the
/// normalised probabilities into `p`.
#[derive(Debug, Clone)]
pub struct Dist {
    rng: SeededRng,
}

impl Dist {
    /// A dist sampler seeded with `params.seed`.
    pub fn new(params: DistParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { rng: SeededRng::new(params.seed) })
    }
}

/// Softmax over the candidates, then one draw from `draws`: selects the
/// first index whose running probability reaches U * total. Errors when
/// nothing is finite.
pub fn sample_softmax(candidates: &mut Candidates<'_>, draws: &mut DrawStream) -> Result<(), SampleError> {
    crate::core::sampler::require_candidates(candidates)?;
    let max = candidates.max_logit();
    if max == f32::NEG_INFINITY {
        return Err(SampleError::NoFiniteLogits);
    }
    candidates.softmax();
    let index = pick_by_probability(candidates, draws.next_f64());
    candidates.select(index);
    Ok(())
}

/// Index of the candidate where the cumulative `p` first reaches `u` times
/// the total (u in [0, 1)). Zero-probability candidates are never chosen.
pub fn pick_by_probability(candidates: &Candidates<'_>, u: f64) -> usize {
    let data = candidates.as_slice();
    let target = u * sum_p(data);
    // Skip whole blocks while the running mass stays at or below the
    // target (block sums in lanes), then walk the block where it crosses.
    let mut run = 0.0f64;
    let mut start = data.len();
    for (b, block) in data.chunks(BLOCK).enumerate() {
        let mass = sum_p(block);
        if run + mass > target {
            start = b * BLOCK;
            break;
        }
        run += mass;
    }
    for (i, t) in data.iter().enumerate().skip(start) {
        if t.p > 0.0 {
            run += t.p as f64;
            if run > target {
                return i;
            }
        }
    }
    // Rounding kept the running mass at or below the target: the last
    // candidate with positive probability.
    data.iter().rposition(|t| t.p > 0.0).unwrap_or(0)
}

impl Sampler for Dist {
    fn name(&self) -> &'static str {
        "dist"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        sample_softmax(candidates, &mut self.rng.stream())
    }

    fn accept(&mut self, _token: TokenId) {
        self.rng.advance();
    }

    fn reset(&mut self) {
        self.rng.rewind();
    }

    fn selects(&self) -> bool {
        true
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    #[test]
    fn frequencies_follow_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let mut counts = [0usize; 3];
        let mut d = Dist::new(DistParams { seed: 3 }).unwrap();
        for _ in 0..30_000 {
            let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
            let mut c = Candidates::new(&mut a);
            d.apply(&mut c).unwrap();
            let tok = c.selected_token().unwrap();
            counts[tok as usize] += 1;
            d.accept(tok);
        }
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        for (i, &l) in logits.iter().enumerate() {
            let want = (l as f64).exp() / z;
            let got = counts[i] as f64 / 30_000.0;
            assert!((got - want).abs() < 0.015, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn never_picks_zero_probability() {
        let mut a = vec![TokenData::new(0, f32::NEG_INFINITY), TokenData::new(1, 0.0), TokenData::new(2, f32::NAN)];
        for s in 0..100 {
            let mut c = Candidates::new(&mut a);
            Dist::new(DistParams { seed: s }).unwrap().apply(&mut c).unwrap();
            assert_eq!(c.selected_token(), Some(1));
        }
    }
}
