//! Numeric kernels over candidate arrays. Sums over the vocabulary
//! accumulate in f64.

use std::cmp::Ordering;

use super::logit_scan::ScanKernel;
#[cfg(target_arch = "x86_64")]
use super::records;
use super::token::TokenData;

/// The logit used for ordering: NaN counts as -inf, so NaN never wins.
#[inline]
pub fn logit_key(logit: f32) -> f32 {
    if logit.is_nan() {
        f32::NEG_INFINITY
    } else {
        logit
    }
}

/// Descending order by logit, NaN last. A total order, safe for sorting.
#[inline]
pub fn cmp_logit_desc(a: &TokenData, b: &TokenData) -> Ordering {
    let (x, y) = (logit_key(a.logit), logit_key(b.logit));
    y.partial_cmp(&x).unwrap_or(Ordering::Equal).then_with(|| a.logit.is_nan().cmp(&b.logit.is_nan()))
}

/// Largest logit, NaN ignored; -inf when empty or all NaN.
///
/// On x86-64 the records are read as whole AVX-512 or AVX2 registers
/// (`core::records`: no permute, the logits of 16 or 8 records
/// blended into one register), on the kernel [`ScanKernel::active`] picks;
/// elsewhere `max_logit_portable`. At 151936 candidates about 19 us,
/// what reading the array costs, against 24 for the portable loop.
pub fn max_logit(data: &[TokenData]) -> f32 {
    match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { records::avx512::max_logit(data) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { records::avx2::max_logit(data) },
        _ => max_logit_portable(data),
    }
}

/// [`max_logit`] in plain Rust: eight independent running maxima let the
/// compiler vectorise the loop (a compare and a blend per lane; `x > m` is
/// false for NaN).
pub(crate) fn max_logit_portable(data: &[TokenData]) -> f32 {
    const LANES: usize = 8;
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = data.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, t) in m.iter_mut().zip(chunk) {
            *lane = if t.logit > *lane { t.logit } else { *lane };
        }
    }
    let mut best = m.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    for t in tail {
        if t.logit > best {
            best = t.logit;
        }
    }
    best
}

/// Index of the first largest logit, NaN ignored; `None` when empty or
/// when nothing beats -inf. One pass: eight lanes keep their own maximum
/// and its index (compare and blend, vectorisable); ties across lanes go to
/// the smallest index, so the first maximum wins as in llama.cpp's greedy.
pub fn argmax_logit(data: &[TokenData]) -> Option<usize> {
    const LANES: usize = 8;
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut idx = [usize::MAX; LANES];
    let chunks = data.chunks_exact(LANES);
    let tail_start = data.len() - chunks.remainder().len();
    for (c, chunk) in chunks.enumerate() {
        let base = c * LANES;
        for l in 0..LANES {
            let x = chunk[l].logit;
            let better = x > m[l];
            m[l] = if better { x } else { m[l] };
            idx[l] = if better { base + l } else { idx[l] };
        }
    }
    let (mut best, mut best_i) = (f32::NEG_INFINITY, usize::MAX);
    for l in 0..LANES {
        if m[l] > best || (m[l] == best && idx[l] < best_i) {
            best = m[l];
            best_i = idx[l];
        }
    }
    for (k, t) in data[tail_start..].iter().enumerate() {
        if t.logit > best {
            best = t.logit;
            best_i = tail_start + k;
        }
    }
    (best_i != usize::MAX && best > f32::NEG_INFINITY).then_some(best_i)
}

/// Writes softmax probabilities into `p`, given the largest logit `max`.
///
/// NaN and -inf logits get 0, and so do logits 87 nats or more under
/// `max` (weights below 1.2e-38; the exponential is the crate's vectorised
/// one, relative error below 2e-7). When `max` is +inf the +inf logits
/// share the mass equally (the limit of softmax). When `max` is -inf
/// (nothing finite) every `p` is 0.
pub fn softmax_in_place(data: &mut [TokenData], max: f32) {
    if max == f32::NEG_INFINITY {
        data.iter_mut().for_each(|t| t.p = 0.0);
        return;
    }
    if max == f32::INFINITY {
        let n_inf = data.iter().filter(|t| t.logit == f32::INFINITY).count() as f32;
        data.iter_mut().for_each(|t| t.p = if t.logit == f32::INFINITY { 1.0 / n_inf } else { 0.0 });
        return;
    }
    let sum = super::softmax_weights::exp_weights_blocks(data, max, |_, _, _, _| {});
    let inv = (1.0 / sum) as f32;
    super::softmax_weights::scale_p(data, inv);
}

/// Natural log of sum(exp(logit)) over the finite logits, computed stably.
/// -inf when nothing is finite.
pub fn log_sum_exp(data: &[TokenData], max: f32) -> f64 {
    if !max.is_finite() {
        return max as f64;
    }
    let sum: f64 = data
        .iter()
        .filter(|t| t.logit > f32::NEG_INFINITY)
        .map(|t| ((t.logit - max) as f64).exp())
        .sum();
    max as f64 + sum.ln()
}

/// Probability-weighted moments of a logit distribution, from one pass over
/// exp(logit - max). All values are in nats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitMoments {
    /// Shannon entropy H = -sum p ln p, in nats.
    pub entropy_nats: f64,
    /// Varentropy V = sum p (ln p + H)^2, in nats².
    pub varentropy_nats2: f64,
    /// Largest probability.
    pub p_max: f64,
}

impl LogitMoments {
    /// Entropy in bits.
    pub fn entropy_bits(&self) -> f64 {
        self.entropy_nats / std::f64::consts::LN_2
    }

    /// Varentropy in bits².
    pub fn varentropy_bits2(&self) -> f64 {
        self.varentropy_nats2 / (std::f64::consts::LN_2 * std::f64::consts::LN_2)
    }
}

/// Entropy, varentropy and top probability of softmax(logits / 1), in one
/// pass given the maximum logit. With z = logit - max, S0 = sum e^z,
/// S1 = sum e^z z, S2 = sum e^z z^2: H = ln S0 - S1/S0 and
/// V = S2/S0 - (S1/S0)^2. Returns `None` when no logit is finite.
pub fn logit_moments(data: &[TokenData]) -> Option<LogitMoments> {
    let max = data.iter().fold(f32::NEG_INFINITY, |m, t| m.max(logit_key(t.logit)));
    if !max.is_finite() {
        return None;
    }
    let (mut s0, mut s1, mut s2) = (0.0f64, 0.0f64, 0.0f64);
    for t in data {
        if t.logit > f32::NEG_INFINITY {
            let z = t.logit as f64 - max as f64;
            let e = z.exp();
            s0 += e;
            s1 += e * z;
            s2 += e * z * z;
        }
    }
    let mean_z = s1 / s0;
    let entropy = s0.ln() - mean_z;
    let varentropy = (s2 / s0 - mean_z * mean_z).max(0.0);
    Some(LogitMoments { entropy_nats: entropy.max(0.0), varentropy_nats2: varentropy, p_max: 1.0 / s0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    #[test]
    fn moments_of_uniform() {
        let m = logit_moments(&tokens(&[0.5; 8])).unwrap();
        assert!((m.entropy_bits() - 3.0).abs() < 1e-12);
        assert!(m.varentropy_nats2.abs() < 1e-12);
        assert!((m.p_max - 0.125).abs() < 1e-12);
    }

    #[test]
    fn moments_match_direct_formula() {
        let logits = [1.0f32, -2.0, 0.3, 4.0, f32::NEG_INFINITY, 2.5];
        let m = logit_moments(&tokens(&logits)).unwrap();
        let finite: Vec<f64> = logits.iter().filter(|l| l.is_finite()).map(|&l| l as f64).collect();
        let z: f64 = finite.iter().map(|l| l.exp()).sum();
        let p: Vec<f64> = finite.iter().map(|l| l.exp() / z).collect();
        let h: f64 = -p.iter().map(|p| p * p.ln()).sum::<f64>();
        let v: f64 = p.iter().map(|p| p * (p.ln() + h).powi(2)).sum();
        assert!((m.entropy_nats - h).abs() < 1e-9);
        assert!((m.varentropy_nats2 - v).abs() < 1e-9);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        let logits: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32).collect();
        let want = logits.iter().position(|&x| x == 10.0).unwrap();
        assert_eq!(argmax_logit(&tokens(&logits)), Some(want));
        assert_eq!(argmax_logit(&tokens(&[f32::NAN, 1.0, 3.0, 3.0])), Some(2));
        assert_eq!(argmax_logit(&tokens(&[f32::NEG_INFINITY, f32::NAN])), None);
        assert_eq!(argmax_logit(&[]), None);
        let mut ties = vec![1.0f32; 20];
        ties[13] = 2.0;
        ties[5] = 2.0;
        assert_eq!(argmax_logit(&tokens(&ties)), Some(5));
    }

    #[test]
    fn every_kernel_finds_the_largest_logit() {
        let mut rng = crate::core::DrawStream::from_state(11);
        for n in [0usize, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 1000] {
            for special in [None, Some(f32::NAN), Some(f32::NEG_INFINITY), Some(f32::INFINITY), Some(99.0)] {
                let mut logits: Vec<f32> = (0..n).map(|_| (rng.next_normal() * 3.0) as f32).collect();
                for at in [0, n / 3, n.saturating_sub(1)] {
                    if let (Some(x), Some(slot)) = (special, logits.get_mut(at)) {
                        *slot = x;
                    }
                }
                let data = tokens(&logits);
                let want = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(max_logit_portable(&data), want, "portable, n {n}, {special:?}");
                for kernel in ScanKernel::available() {
                    // SAFETY (both): `available` lists kernels this CPU runs.
                    let got = match kernel {
                        #[cfg(target_arch = "x86_64")]
                        ScanKernel::Avx512 => unsafe { records::avx512::max_logit(&data) },
                        #[cfg(target_arch = "x86_64")]
                        ScanKernel::Avx2 => unsafe { records::avx2::max_logit(&data) },
                        _ => max_logit_portable(&data),
                    };
                    assert_eq!(got, want, "{kernel:?}, n {n}, {special:?}");
                }
            }
        }
        assert_eq!(max_logit(&tokens(&[f32::NAN; 40])), f32::NEG_INFINITY);
    }

    #[test]
    fn moments_none_when_nothing_finite() {
        assert!(logit_moments(&tokens(&[f32::NAN, f32::NEG_INFINITY])).is_none());
        assert!(logit_moments(&[]).is_none());
    }
}
