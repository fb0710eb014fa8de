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

use crate::core::logit_scan::ScanKernel;
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenData};

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
    match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { passes_avx512(data, n) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { passes_avx2(data, n) },
        _ => passes(data, n),
    };
}

/// The logits' maximum (NaN ignored) and, over the finite logits only,
/// their count, the sum of `logit - k` and the sum of its squares (f64).
#[derive(Debug, Clone, Copy, PartialEq)]
struct LogitStats {
    max: f32,
    count: f64,
    sum: f64,
    sum_sq: f64,
}

/// Accumulator lanes: consecutive logits go to different lanes, so the f64
/// adds do not wait for each other and the loop vectorises (16 lanes are
/// two AVX-512 or four AVX2 registers of f64 per sum).
const LANES: usize = 16;

/// [`passes`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn passes_avx2(data: &mut [TokenData], n: f32) -> LogitStats {
    passes(data, n)
}

/// [`passes`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn passes_avx512(data: &mut [TokenData], n: f32) -> LogitStats {
    passes(data, n)
}

/// The two passes of [`apply_top_n_sigma`] (`n > 0`, more than one
/// candidate); returns the statistics of pass 1.
#[inline(always)]
fn passes(data: &mut [TokenData], n: f32) -> LogitStats {
    // Pass 1: max, and count, sum and sum of squares of the finite logits
    // shifted by one of them (k). The shift keeps var = E[(x-k)^2] -
    // E[x-k]^2 free of cancellation for any offset of the logits (k is
    // within the spread of the data).
    let k = data.iter().map(|t| t.logit).find(|l| l.is_finite()).unwrap_or(0.0) as f64;
    let stats = stats_body(data, k);
    if stats.max == f32::NEG_INFINITY {
        return stats;
    }
    let sigma = if stats.count > 0.0 {
        let mean = stats.sum / stats.count;
        (stats.sum_sq / stats.count - mean * mean).max(0.0).sqrt()
    } else {
        0.0
    };
    // Pass 2: mask. The threshold in f32, as llama.cpp computes it.
    mask_body(data, stats.max - n * sigma as f32);
    stats
}

/// Pass 1 of [`apply_top_n_sigma`]: the logits of [`LANES`] candidates are
/// copied to a contiguous buffer, then folded lane by lane.
#[inline(always)]
fn stats_body(data: &[TokenData], k: f64) -> LogitStats {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut count = [0.0f64; LANES];
    let mut sum = [0.0f64; LANES];
    let mut sum_sq = [0.0f64; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for c in &mut chunks {
        let mut l = [0.0f32; LANES];
        for (l, t) in l.iter_mut().zip(c) {
            *l = t.logit;
        }
        for i in 0..LANES {
            // Comparisons, not f32::max, keep the loop vectorisable; NaN
            // fails them and is ignored.
            max[i] = if l[i] > max[i] { l[i] } else { max[i] };
            let finite = l[i].abs() < f32::INFINITY;
            let d = if finite { l[i] as f64 - k } else { 0.0 };
            count[i] += if finite { 1.0 } else { 0.0 };
            sum[i] += d;
            sum_sq[i] += d * d;
        }
    }
    for (i, t) in chunks.remainder().iter().enumerate() {
        let l = t.logit;
        max[i] = if l > max[i] { l } else { max[i] };
        if l.is_finite() {
            let d = l as f64 - k;
            count[i] += 1.0;
            sum[i] += d;
            sum_sq[i] += d * d;
        }
    }
    LogitStats {
        max: max.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a }),
        count: count.iter().sum(),
        sum: sum.iter().sum(),
        sum_sq: sum_sq.iter().sum(),
    }
}

/// Pass 2 of [`apply_top_n_sigma`]: every logit below `threshold`, and
/// every NaN, becomes -inf. Branch-free (every logit is stored back), so
/// the loop vectorises.
#[inline(always)]
fn mask_body(data: &mut [TokenData], threshold: f32) {
    for t in data.iter_mut() {
        let l = t.logit;
        #[allow(clippy::eq_op)] // l != l: NaN, without a call that stops vectorisation
        let masked = l < threshold || l != l;
        t.logit = if masked { f32::NEG_INFINITY } else { l };
    }
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

    /// Every kernel this CPU runs gives the portable kernel's statistics
    /// (to f64 rounding) and mask, on arrays with NaN, infinities and a
    /// remainder after the last full group of lanes; the mask keeps what
    /// reaches max - n·σ and nothing else.
    #[test]
    fn every_kernel_agrees_with_the_portable_one() {
        let mut rng = crate::core::DrawStream::from_state(11);
        let mut logits: Vec<f32> = (0..1000).map(|_| (rng.next_normal() * 3.0) as f32).collect();
        logits[5] = f32::NAN;
        logits[17] = f32::NEG_INFINITY;
        for with_inf in [false, true] {
            logits[700] = if with_inf { f32::INFINITY } else { 2.0 };
            for n in [2, 15, 16, 17, 999] {
                let data: Vec<TokenData> = logits[..n].iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
                let mut want_masked = data.clone();
                let want = passes(&mut want_masked, 1.0);
                let mean = want.sum / want.count;
                let sigma = (want.sum_sq / want.count - mean * mean).max(0.0).sqrt();
                let threshold = want.max - sigma as f32;
                for (a, b) in want_masked.iter().zip(&data) {
                    let kept = if b.logit >= threshold { b.logit } else { f32::NEG_INFINITY };
                    assert_eq!(a.logit.to_bits(), kept.to_bits(), "portable n={n}: {}", b.logit);
                }
                for kernel in ScanKernel::available() {
                    let mut masked = data.clone();
                    // SAFETY: `available` lists only kernels this CPU runs.
                    let got = match kernel {
                        #[cfg(target_arch = "x86_64")]
                        ScanKernel::Avx512 => unsafe { passes_avx512(&mut masked, 1.0) },
                        #[cfg(target_arch = "x86_64")]
                        ScanKernel::Avx2 => unsafe { passes_avx2(&mut masked, 1.0) },
                        _ => passes(&mut masked, 1.0),
                    };
                    assert_eq!(got.max.to_bits(), want.max.to_bits(), "{} n={n}", kernel.name());
                    assert_eq!(got.count, want.count, "{} n={n}", kernel.name());
                    assert!((got.sum - want.sum).abs() <= 1e-9 * want.sum_sq.max(1.0), "{} n={n}", kernel.name());
                    assert!((got.sum_sq - want.sum_sq).abs() <= 1e-12 * want.sum_sq.max(1.0), "{} n={n}", kernel.name());
                    for (a, b) in masked.iter().zip(&want_masked) {
                        assert_eq!(a.logit.to_bits(), b.logit.to_bits(), "{} n={n}", kernel.name());
                    }
                }
                if n == 999 {
                    // The reference: a plain fold over the finite logits.
                    let k = logits[0] as f64;
                    let finite: Vec<f64> = logits[..n].iter().filter(|l| l.is_finite()).map(|&l| l as f64 - k).collect();
                    assert_eq!(want.count, finite.len() as f64);
                    assert!((want.sum - finite.iter().sum::<f64>()).abs() < 1e-9);
                    assert!((want.sum_sq - finite.iter().map(|d| d * d).sum::<f64>()).abs() < 1e-9);
                    assert_eq!(want.max, if with_inf { f32::INFINITY } else { logits[..n].iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) });
                }
            }
        }
    }

    #[test]
    fn huge_offsets_do_not_lose_precision() {
        // sigma of (1e7 + {0, 1, 2}) is sqrt(2/3): keep 1e7+1 and 1e7+2 at n = 1.5.
        let out = run(&[1.0e7, 1.0e7 + 1.0, 1.0e7 + 2.0], 1.5);
        assert_eq!(out, vec![f32::NEG_INFINITY, 1.0e7 + 1.0, 1.0e7 + 2.0]);
    }
}
