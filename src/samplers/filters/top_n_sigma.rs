//! Top-nσ: keep the logits within n standard deviations of the best.
//!
//! Source: Tang et al. 2024, "Top-nσ: Not All Logits Are You Need"
//! (arXiv 2411.07641); same result as llama.cpp's
//! `llama_sampler_init_top_n_sigma(n)`: with μ and σ the mean and the
//! (population) standard deviation of the logits that are not -inf, every
//! logit below `max - n·σ` is set to -inf. Nothing is removed or reordered
//! (the array keeps its size and order, as in llama.cpp); `p` is untouched.
//!
//! Differences from llama.cpp, on inputs it does not handle: μ and σ are
//! accumulated in f64 (llama.cpp uses f32, which overflows for |logit| >
//! ~1e19 and then masks nothing), over the finite logits only (a +inf or
//! NaN logit makes llama.cpp's σ NaN and mask nothing); NaN logits are
//! masked too, since they must never win.

use serde::{Deserialize, Serialize};

use crate::core::{Candidates, ParamError, SampleError, Sampler};

/// Parameters of [`TopNSigma`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopNSigmaParams {
    /// Width n of the kept band, in standard deviations of the logits:
    /// logits below `max - n·σ` are set to -inf. `n <= 0` disables (as in
    /// llama.cpp). Default 1.0 (the paper's main setting; llama.cpp's
    /// common default `top_n_sigma = -1` disables it).
    pub n: f32,
}

impl Default for TopNSigmaParams {
    fn default() -> Self {
        Self { n: 1.0 }
    }
}

impl TopNSigmaParams {
    /// Rejects a NaN or infinite n (any finite n is valid; n <= 0 disables).
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.n.is_finite() {
            Ok(())
        } else {
            Err(ParamError::new("n", self.n, "must be a finite number of standard deviations (<= 0 disables)"))
        }
    }
}

/// Masks logits more than n·σ below the best.
#[derive(Debug, Clone)]
pub struct TopNSigma {
    params: TopNSigmaParams,
}

impl TopNSigma {
    /// A validated top-nσ sampler.
    pub fn new(params: TopNSigmaParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params })
    }

    /// The parameters.
    pub fn params(&self) -> &TopNSigmaParams {
        &self.params
    }
}

/// Top-nσ masking (see the module docs). No change when `n <= 0` or when
/// there are fewer than two candidates (as in llama.cpp).
pub fn apply_top_n_sigma(candidates: &mut Candidates<'_>, n: f32) {
    if n.is_nan() || n <= 0.0 || candidates.len() <= 1 {
        return;
    }
    let data = candidates.as_mut_slice();
    // Pass 1: max (NaN ignored), and count, sum and sum of squares of the
    // finite logits shifted by one of them (k), in f64 and four lanes. The
    // shift keeps var = E[(x-k)^2] - E[x-k]^2 free of cancellation for any
    // offset of the logits (k is within the spread of the data).
    let k = data.iter().map(|t| t.logit).find(|l| l.is_finite()).unwrap_or(0.0) as f64;
    let mut max = [f32::NEG_INFINITY; 4];
    let mut acc = [[0.0f64; 3]; 4];
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        for ((t, m), a) in c.iter().zip(max.iter_mut()).zip(acc.iter_mut()) {
            stats_term(t.logit, k, m, a);
        }
    }
    for t in chunks.remainder() {
        stats_term(t.logit, k, &mut max[0], &mut acc[0]);
    }
    let max = max[0].max(max[1]).max(max[2].max(max[3]));
    if max == f32::NEG_INFINITY {
        return;
    }
    let total = |j: usize| (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
    let (count, sum, sum_sq) = (total(0), total(1), total(2));
    let sigma = if count > 0.0 {
        let mean = sum / count;
        (sum_sq / count - mean * mean).max(0.0).sqrt()
    } else {
        0.0
    };
    // Pass 2: mask. The threshold in f32, as llama.cpp computes it.
    let threshold = max - n * sigma as f32;
    for t in data.iter_mut() {
        if t.logit.is_nan() || t.logit < threshold {
            t.logit = f32::NEG_INFINITY;
        }
    }
}

/// Folds one logit into a lane: max, and for finite logits count, sum of
/// (l - k) and sum of (l - k)^2.
#[inline(always)]
fn stats_term(l: f32, k: f64, max: &mut f32, acc: &mut [f64; 3]) {
    *max = max.max(l); // f32::max ignores NaN
    let finite = l.is_finite();
    let d = if finite { l as f64 - k } else { 0.0 };
    acc[0] += finite as u8 as f64;
    acc[1] += d;
    acc[2] += d * d;
}

impl Sampler for TopNSigma {
    fn name(&self) -> &'static str {
        "top-n-sigma"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        apply_top_n_sigma(candidates, self.params.n);
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    fn run(logits: &[f32], n: f32) -> Vec<f32> {
        let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        let mut c = Candidates::new(&mut a);
        TopNSigma::new(TopNSigmaParams { n }).unwrap().apply(&mut c).unwrap();
        c.as_slice().iter().map(|t| t.logit).collect()
    }

    #[test]
    fn masks_below_max_minus_n_sigma() {
        // Logits 0, 2, 4, 6, 8: mean 4, sigma sqrt(8) = 2.83.
        let ninf = f32::NEG_INFINITY;
        assert_eq!(run(&[0.0, 2.0, 4.0, 6.0, 8.0], 1.0), vec![ninf, ninf, ninf, 6.0, 8.0]);
        assert_eq!(run(&[0.0, 2.0, 4.0, 6.0, 8.0], 2.0), vec![ninf, ninf, 4.0, 6.0, 8.0]);
        // -inf logits stay and do not count in sigma: 2, 4, 6, 8 have
        // mean 5 and sigma sqrt(5) = 2.24.
        assert_eq!(run(&[ninf, 2.0, 4.0, 6.0, 8.0, ninf], 1.0), vec![ninf, ninf, ninf, 6.0, 8.0, ninf]);
        assert_eq!(run(&[ninf, 2.0, 4.0, 6.0, 8.0, ninf], 1.9), vec![ninf, ninf, 4.0, 6.0, 8.0, ninf]);
        // NaN is masked, never kept.
        assert_eq!(run(&[f32::NAN, 1.0, 1.0], 1.0), vec![ninf, 1.0, 1.0]);
    }

    #[test]
    fn disabled_by_non_positive_n_and_single_candidates() {
        let l = [0.0, 2.0, 4.0, 6.0, 8.0];
        assert_eq!(run(&l, 0.0), l.to_vec());
        assert_eq!(run(&l, -1.0), l.to_vec());
        assert_eq!(run(&[3.0], 1.0), vec![3.0]);
        assert!(run(&[], 1.0).is_empty());
        assert!(TopNSigma::new(TopNSigmaParams { n: f32::NAN }).is_err());
        assert!(TopNSigma::new(TopNSigmaParams { n: f32::INFINITY }).is_err());
    }

    #[test]
    fn huge_offsets_do_not_lose_precision() {
        // sigma of (1e7 + {0, 1, 2}) is sqrt(2/3): keep 1e7+1 and 1e7+2 at n = 1.5.
        let out = run(&[1.0e7, 1.0e7 + 1.0, 1.0e7 + 2.0], 1.5);
        assert_eq!(out, vec![f32::NEG_INFINITY, 1.0e7 + 1.0, 1.0e7 + 2.0]);
    }
}
