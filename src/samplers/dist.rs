//! Random selection from softmax(logits), seeded: llama.cpp's
//! `llama_sampler_init_dist`, with a counter-based RNG so `apply` is pure.

use serde::{Deserialize, Serialize};

use crate::core::softmax_weights::{exp_weights_running, sum_p, BLOCK};
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
    scratch: SoftmaxScratch,
}

impl Dist {
    /// A dist sampler seeded with `params.seed`.
    pub fn new(params: DistParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { rng: SeededRng::new(params.seed), scratch: SoftmaxScratch::default() })
    }
}

/// The buffers of [`sample_softmax`], kept by the caller between steps so
/// that no step allocates once they have grown.
#[derive(Debug, Clone, Default)]
pub struct SoftmaxScratch {
    /// The f32 sum of the weights of every block of [`BLOCK`] candidates.
    block_mass: Vec<f32>,
    /// The runs of blocks whose weights share a reference.
    segments: Vec<Segment>,
}

/// Consecutive blocks whose weights are relative to one reference logit
/// (the running maximum of `exp_weights_running`).
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Its first block.
    first_block: usize,
    /// The logit its weights are relative to.
    reference: f32,
    /// The sum of its blocks' sums.
    mass: f64,
    /// exp(reference - max): what turns its weights into weights relative
    /// to the array's maximum (f64, exact difference; 0 when the reference
    /// is -inf).
    factor: f64,
}

/// Softmax over the candidates, then one draw from `draws`: selects the
/// first index whose running probability reaches U * total. Errors when
/// nothing is finite (every `p` is then 0, logits and ids untouched).
///
/// Two passes over the array: the weights with the sum of every block of
/// 64 of them, each block's relative to the largest logit so far (the
/// online softmax: no pass for the maximum first, `exp_weights_running`),
/// then the normalisation, which also moves the blocks weighed against an
/// older maximum to the final one. The draw walks the block sums, then one
/// block. From the block that holds the maximum on, the probabilities are
/// bit for bit those of a softmax relative to the maximum; before it they
/// differ by the rounding of logit - reference at another reference (half
/// an ulp of |logit - max|) and the exponential's error at another
/// argument: 5e-7 + 1.2e-7 |logit - max| relative (tested).
pub fn sample_softmax(candidates: &mut Candidates<'_>, draws: &mut DrawStream, scratch: &mut SoftmaxScratch) -> Result<(), SampleError> {
    crate::core::sampler::require_candidates(candidates)?;
    let SoftmaxScratch { block_mass, segments } = scratch;
    block_mass.clear();
    segments.clear();
    exp_weights_running(candidates.as_mut_slice(), |_, _, sum, reference| {
        if segments.last().is_none_or(|s| s.reference != reference) {
            segments.push(Segment { first_block: block_mass.len(), reference, mass: 0.0, factor: 0.0 });
        }
        if let Some(s) = segments.last_mut() {
            s.mass += sum as f64;
        }
        block_mass.push(sum);
    });
    let max = segments.last().map_or(f32::NEG_INFINITY, |s| s.reference);
    if max == f32::NEG_INFINITY {
        return Err(SampleError::NoFiniteLogits);
    }
    if max == f32::INFINITY {
        candidates.softmax();
        let index = pick_by_probability(candidates, draws.next_f64());
        candidates.select(index);
        return Ok(());
    }
    let mut total = 0.0f64;
    for s in segments.iter_mut() {
        s.factor = (s.reference as f64 - max as f64).exp();
        total += s.mass * s.factor;
    }
    let data = candidates.as_mut_slice();
    let index = pick_in_segments(data, segments, block_mass, draws.next_f64() * total);
    for (k, s) in segments.iter().enumerate() {
        let end = segments.get(k + 1).map_or(data.len(), |next| next.first_block * BLOCK);
        crate::core::softmax_weights::scale_p(&mut data[s.first_block * BLOCK..end], (s.factor / total) as f32);
    }
    candidates.select(index);
    Ok(())
}

/// Index of the candidate where the running weight (`p` times its
/// segment's factor) first exceeds `target` (0 <= target < the total):
/// whole segments, then whole blocks are skipped by their sums, then the
/// records are walked from the crossing block. Where rounding keeps the
/// running weight at or below the target to the end, the last candidate
/// with a positive weight. Zero weights are never chosen.
fn pick_in_segments(data: &[TokenData], segments: &[Segment], block_mass: &[f32], target: f64) -> usize {
    let mut run = 0.0f64;
    for (k, s) in segments.iter().enumerate() {
        let end_block = segments.get(k + 1).map_or(block_mass.len(), |next| next.first_block);
        if run + s.mass * s.factor <= target {
            run += s.mass * s.factor;
            continue;
        }
        for (b, &mass) in block_mass.iter().enumerate().take(end_block).skip(s.first_block) {
            let mass = mass as f64 * s.factor;
            if run + mass > target {
                return walk_segments(data, segments, k, b * BLOCK, run, target);
            }
            run += mass;
        }
        // Rounding: the segment's sum crossed, its blocks' did not.
        return walk_segments(data, segments, k, end_block * BLOCK, run, target);
    }
    walk_segments(data, segments, segments.len(), data.len(), run, target)
}

/// From record `start` in segment `k`, where the running weight is `run`,
/// the first candidate at which it exceeds `target`; where rounding keeps
/// it at or below the target to the end, the last candidate with a
/// positive weight.
fn walk_segments(data: &[TokenData], segments: &[Segment], mut k: usize, mut start: usize, mut run: f64, target: f64) -> usize {
    while k < segments.len() {
        let end = segments.get(k + 1).map_or(data.len(), |next| next.first_block * BLOCK);
        let factor = segments[k].factor;
        for (i, t) in data.iter().enumerate().take(end).skip(start) {
            if t.p > 0.0 {
                run += t.p as f64 * factor;
                if run > target {
                    return i;
                }
            }
        }
        (k, start) = (k + 1, end);
    }
    data.iter().rposition(|t| t.p > 0.0).unwrap_or(0)
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
        sample_softmax(candidates, &mut self.rng.stream(), &mut self.scratch)
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
    /// probabilities (bit for bit from the maximum's block on; a block
    /// before it is weighed against a lower maximum, then moved, so its
    /// z = logit - reference is rounded to f32 at another reference, half an
    /// ulp of |z|, and the exponential errs at another argument), on a
    /// vocabulary-sized array with -inf and NaN logits.
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
            sample_softmax(&mut c, &mut DrawStream::from_state(state), &mut SoftmaxScratch::default()).unwrap();
            let got = c.selected().unwrap();
            let mut b = tokens.clone();
            let mut plain = Candidates::new(&mut b);
            plain.softmax();
            let want = pick_by_probability(&plain, DrawStream::from_state(state).next_f64());
            assert_eq!(got, want, "state {state}");
            let at_max = crate::core::math::argmax_logit(&tokens).unwrap();
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if i >= at_max / BLOCK * BLOCK {
                    assert_eq!(x.p.to_bits(), y.p.to_bits(), "{i}");
                } else {
                    let z = (logits[i] - logits[at_max]).abs() as f64;
                    assert!(x.p == y.p || (x.p as f64 - y.p as f64).abs() <= (5e-7 + 1.2e-7 * z) * y.p as f64, "{i}: {} vs {}", x.p, y.p);
                }
            }
        }
    }

    /// Where the maximum rises block after block (ascending logits, after
    /// blocks with nothing finite), every block has its own reference:
    /// the draw still selects what the plain walk selects and the
    /// probabilities still sum to 1.
    #[test]
    fn rising_maximum_draws_as_the_plain_walk() {
        let n = 64 * 40 + 17;
        let mut logits: Vec<f32> = (0..n).map(|i| i as f32 * 0.004 + ((i * 7919) % 13) as f32 * 0.01).collect();
        logits[..130].fill(f32::NEG_INFINITY);
        logits[140] = f32::NAN;
        let tokens: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        for state in 0..200u64 {
            let mut a = tokens.clone();
            let mut c = Candidates::new(&mut a);
            let mut scratch = SoftmaxScratch::default();
            sample_softmax(&mut c, &mut DrawStream::from_state(state), &mut scratch).unwrap();
            assert!(scratch.segments.len() > 30, "{} segments", scratch.segments.len());
            let got = c.selected().unwrap();
            let mut b = tokens.clone();
            let mut plain = Candidates::new(&mut b);
            plain.softmax();
            assert_eq!(got, pick_by_probability(&plain, DrawStream::from_state(state).next_f64()), "state {state}");
            let total: f64 = a.iter().map(|t| t.p as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "{total}");
            assert!(a[..130].iter().chain(&a[140..141]).all(|t| t.p == 0.0));
        }
    }

    /// A +inf logit takes all the probability; nothing finite is an error
    /// that leaves the logits and ids as they were.
    #[test]
    fn infinite_and_empty_edges() {
        let mut logits = vec![0.5f32; 300];
        logits[200] = f32::INFINITY;
        let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        let mut c = Candidates::new(&mut a);
        sample_softmax(&mut c, &mut DrawStream::from_state(1), &mut SoftmaxScratch::default()).unwrap();
        assert_eq!(c.selected(), Some(200));
        assert_eq!((a[200].p, a[0].p), (1.0, 0.0));
        let mut none: Vec<TokenData> = (0..300).map(|i| TokenData::new(i, if i % 2 == 0 { f32::NAN } else { f32::NEG_INFINITY })).collect();
        let before: Vec<(i32, u32)> = none.iter().map(|t| (t.id, t.logit.to_bits())).collect();
        let mut c = Candidates::new(&mut none);
        assert_eq!(sample_softmax(&mut c, &mut DrawStream::from_state(1), &mut SoftmaxScratch::default()), Err(SampleError::NoFiniteLogits));
        assert_eq!(none.iter().map(|t| (t.id, t.logit.to_bits())).collect::<Vec<_>>(), before);
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
