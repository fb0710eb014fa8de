//! Random selection from softmax(logits), seeded: llama.cpp's
//! `llama_sampler_init_dist`, with a counter-based RNG so `apply` is pure.

use serde::{Deserialize, Serialize};

use crate::core::softmax_weights::{exp_weights_blocks, sum_p, BLOCK};
use crate::core::{Candidates, DrawStream, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId, RANDOM_SEED};

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
    /// Scratch of [`sample_softmax`], kept between steps.
    block_mass: Vec<f32>,
}

impl Dist {
    /// A dist sampler seeded with `params.seed`.
    pub fn new(params: DistParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { rng: SeededRng::new(params.seed), block_mass: Vec::new() })
    }
}

/// Softmax over the candidates, then one draw from `draws`: selects the
/// first index whose running probability reaches U * total. Errors when
/// nothing is finite.
///
/// Three passes over the array: the maximum; the weights exp(logit - max)
/// with their sum and the sum of every block of 64 of them; the
/// normalisation. The draw walks the block sums (kept in `block_mass`, a
/// scratch the caller keeps between steps so that no step allocates), then
/// one block.
pub fn sample_softmax(candidates: &mut Candidates<'_>, draws: &mut DrawStream, block_mass: &mut Vec<f32>) -> Result<(), SampleError> {
    crate::core::sampler::require_candidates(candidates)?;
    let max = candidates.max_logit();
    if max == f32::NEG_INFINITY {
        return Err(SampleError::NoFiniteLogits);
    }
    if max == f32::INFINITY {
        candidates.softmax();
        let index = pick_by_probability(candidates, draws.next_f64());
        candidates.select(index);
        return Ok(());
    }
    let data = candidates.as_mut_slice();
    block_mass.clear();
    let sum = exp_weights_blocks(data, max, |_, _, sum| block_mass.push(sum));
    let index = pick_in_blocks(data, block_mass, draws.next_f64() * sum);
    let inv = (1.0 / sum) as f32;
    crate::core::softmax_weights::scale_p(data, inv);
    candidates.select(index);
    Ok(())
}

/// Index of the candidate where the running weight `p` first exceeds
/// `target` (0 <= target < the total): whole blocks are skipped by their
/// sums in `block_mass`, then the crossing block is walked. Where rounding
/// keeps the running weight at or below the target, the last candidate
/// with a positive weight. Zero weights are never chosen.
fn pick_in_blocks(data: &[TokenData], block_mass: &[f32], target: f64) -> usize {
    let mut run = 0.0f64;
    let mut start = data.len();
    for (b, &mass) in block_mass.iter().enumerate() {
        if run + mass as f64 > target {
            start = b * BLOCK;
            break;
        }
        run += mass as f64;
    }
    walk_to_target(data, start, run, target)
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
    walk_to_target(data, start, run, target)
}

/// From `start`, where the running weight is `run`, the first candidate
/// at which it exceeds `target`; where rounding keeps it at or below the
/// target to the end, the last candidate with a positive weight.
fn walk_to_target(data: &[TokenData], start: usize, mut run: f64, target: f64) -> usize {
    for (i, t) in data.iter().enumerate().skip(start) {
        if t.p > 0.0 {
            run += t.p as f64;
            if run > target {
                return i;
            }
        }
    }
    data.iter().rposition(|t| t.p > 0.0).unwrap_or(0)
}

impl Sampler for Dist {
    fn name(&self) -> &'static str {
        "dist"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        sample_softmax(candidates, &mut self.rng.stream(), &mut self.block_mass)
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

    /// The block-sum draw selects what a walk over the normalised
    /// probabilities selects, for the same uniform, and leaves the same
    /// probabilities, on a vocabulary-sized array with -inf and NaN logits.
    #[test]
    fn block_sum_draw_matches_a_plain_walk() {
        let mut rng = DrawStream::from_state(21);
        let mut logits: Vec<f32> = (0..50_000).map(|_| (rng.next_normal() * 3.0) as f32).collect();
        logits[3] = f32::NEG_INFINITY;
        logits[40_000] = f32::NAN;
        let tokens: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        for state in 0..300u64 {
            let mut a = tokens.clone();
            let mut c = Candidates::new(&mut a);
            sample_softmax(&mut c, &mut DrawStream::from_state(state), &mut Vec::new()).unwrap();
            let got = c.selected().unwrap();
            let mut b = tokens.clone();
            let mut plain = Candidates::new(&mut b);
            plain.softmax();
            let want = pick_by_probability(&plain, DrawStream::from_state(state).next_f64());
            assert_eq!(got, want, "state {state}");
            for (x, y) in a.iter().zip(&b) {
                assert!((x.p - y.p).abs() <= 1e-7 * y.p.max(1e-30), "{} vs {}", x.p, y.p);
            }
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
