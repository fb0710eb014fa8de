//! Statistics for the `eval` subcommand: Wilson score intervals for
//! accuracies, the exact two-sided sign test, a paired bootstrap for
//! comparing two samplers on the same items, and small helpers (mean,
//! normal-approximation 95% interval, interpolated percentiles).
//!
//! Everything is deterministic: the bootstrap draws from a SplitMix64
//! stream seeded by the caller.

/// Two-sided 95% standard-normal quantile, Φ⁻¹(0.975).
pub const Z95: f64 = 1.959963984540054;

/// 95% Wilson score interval for a binomial proportion `successes / n`
/// (Wilson 1927). Returns `(low, high)` as proportions in [0, 1] with
/// z = [`Z95`]. `n == 0` gives the uninformative `(0.0, 1.0)`.
///
/// Panics if `successes > n`.
pub fn wilson_interval(successes: usize, n: usize) -> (f64, f64) {
    assert!(successes <= n, "wilson_interval: {successes} successes out of {n}");
    if n == 0 {
        return (0.0, 1.0);
    }
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = Z95 * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided exact sign test p-value: the binomial test of `wins` against
/// `losses` under H0 p = 0.5, `min(1, 2 * P(X <= min(wins, losses)))` with
/// X ~ Binomial(wins + losses, 0.5). Ties must be dropped by the caller.
/// No pairs gives 1.0.
///
/// The tail is summed in log space (log-sum-exp of ln C(n, i) - n ln 2, the
/// binomial coefficients built incrementally), so it is exact to rounding
/// and stable for n in the hundreds of thousands; tails below ~1e-308
/// underflow to 0.0.
pub fn sign_test_p(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses);
    if 2 * k + 1 >= n {
        // |wins - losses| <= 1: the tail holds at least half the mass, so the
        // p-value is exactly 1 (returned without rounding error).
        return 1.0;
    }
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    // ln C(n, 0) = 0; ln C(n, i + 1) = ln C(n, i) + ln(n - i) - ln(i + 1).
    let mut ln_c = 0.0_f64;
    let mut log_sum = ln_half_n; // i = 0 term.
    for i in 0..k {
        ln_c += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        log_sum = log_add_exp(log_sum, ln_c + ln_half_n);
    }
    (2.0 * log_sum.exp()).min(1.0)
}

/// ln(e^a + e^b) without overflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Result of comparing two paired score vectors (`a` vs `b`, same items).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PairedComparison {
    /// Number of pairs.
    pub n: usize,
    /// Mean of `a[i] - b[i]` (units of the scores).
    pub mean_diff: f64,
    /// 2.5th percentile of the bootstrap distribution of the mean difference.
    pub ci_low: f64,
    /// 97.5th percentile of the bootstrap distribution of the mean difference.
    pub ci_high: f64,
    /// Two-sided exact sign test p-value on the signs of the differences
    /// (ties dropped), NOT a bootstrap p-value; see [`sign_test_p`].
    pub p_value: f64,
    /// Pairs with `a[i] > b[i]`.
    pub wins: usize,
    /// Pairs with `a[i] < b[i]`.
    pub losses: usize,
    /// Pairs with `a[i] == b[i]`.
    pub ties: usize,
}

/// Paired comparison of `a` against `b` (e.g. per-item correctness 0/1 of two
/// samplers on the same items). The differences are `a[i] - b[i]`.
///
/// * `mean_diff`: mean difference.
/// * `ci_low`/`ci_high`: percentile bootstrap 95% interval of the mean
///   difference (2.5% / 97.5% of `n_resamples` resampled means, items drawn
///   with replacement from a SplitMix64 stream seeded by `seed`, interpolated
///   with [`percentile`]). `n_resamples == 0` gives `(mean_diff, mean_diff)`.
/// * `p_value`: two-sided exact sign test ([`sign_test_p`]) on wins
///   (diff > 0) vs losses (diff < 0); ties (diff == 0) are dropped.
///
/// Empty input gives n 0, zero mean and interval, p 1.
///
/// Panics if `a.len() != b.len()`.
pub fn paired_bootstrap(a: &[f64], b: &[f64], n_resamples: usize, seed: u64) -> PairedComparison {
    assert_eq!(a.len(), b.len(), "paired_bootstrap: the score vectors differ in length");
    let n = a.len();
    if n == 0 {
        return PairedComparison { n: 0, mean_diff: 0.0, ci_low: 0.0, ci_high: 0.0, p_value: 1.0, wins: 0, losses: 0, ties: 0 };
    }
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let wins = diffs.iter().filter(|&&d| d > 0.0).count();
    let losses = diffs.iter().filter(|&&d| d < 0.0).count();
    let ties = diffs.iter().filter(|&&d| d == 0.0).count();
    let mean_diff = mean(&diffs);
    let (ci_low, ci_high) = if n_resamples == 0 {
        (mean_diff, mean_diff)
    } else {
        let mut rng = SplitMix64::new(seed);
        let mut means: Vec<f64> = (0..n_resamples)
            .map(|_| {
                let sum: f64 = (0..n).map(|_| diffs[rng.below(n)]).sum();
                sum / n as f64
            })
            .collect();
        means.sort_by(f64::total_cmp);
        (percentile(&means, 0.025), percentile(&means, 0.975))
    };
    PairedComparison { n, mean_diff, ci_low, ci_high, p_value: sign_test_p(wins, losses), wins, losses, ties }
}

/// Arithmetic mean; 0.0 for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Normal-approximation 95% interval of the mean: mean ± 1.96 · s / √n with
/// the sample standard deviation s (n - 1 denominator). Fewer than two values
/// give `(mean, mean)` (0.0 for an empty slice).
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let m = mean(xs);
    let n = xs.len();
    if n < 2 {
        return (m, m);
    }
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    let half = 1.96 * (var / n as f64).sqrt();
    (m - half, m + half)
}

/// The `q`-quantile (q in [0, 1], clamped) of an ascending-sorted slice by
/// linear interpolation between the closest ranks: position q · (len - 1).
/// 0.0 for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        len => {
            let pos = q.clamp(0.0, 1.0) * (len - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(len - 1);
            let frac = pos - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a 64-bit counter passed through a
/// bijective mixer. Small, fast and good enough for resampling indices.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform index in `0..n` (multiply-shift; bias below 2^-64 · n).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_half() {
        // s = 5, n = 10: p = 0.5, z² = 3.8414588, z²/n = 0.38414588,
        // denom = 1.38414588, centre = (0.5 + 0.19207294) / 1.38414588 = 0.5,
        // half = z · sqrt(0.025 + 3.8414588/400) / denom
        //      = 1.959964 · sqrt(0.03460365) / 1.38414588
        //      = 1.959964 · 0.1860206 / 1.38414588 = 0.2634069.
        let (lo, hi) = wilson_interval(5, 10);
        assert!(close(lo, 0.5 - 0.2634069, 1e-6), "{lo}");
        assert!(close(hi, 0.5 + 0.2634069, 1e-6), "{hi}");
    }

    #[test]
    fn wilson_edges() {
        // s = 0: p = 0, centre = half = (z²/2n)/denom, so low = 0 and
        // high = (z²/n)/(1 + z²/n) = 0.38414588 / 1.38414588 = 0.2775328.
        let (lo, hi) = wilson_interval(0, 10);
        assert!(close(lo, 0.0, 1e-12));
        assert!(close(hi, 0.2775328, 1e-6), "{hi}");
        // s = n = 20: mirror image, low = n / (n + z²) = 20 / 23.8414588 = 0.8388748.
        let (lo, hi) = wilson_interval(20, 20);
        assert!(close(lo, 0.8388748, 1e-6), "{lo}");
        assert!(close(hi, 1.0, 1e-12));
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
    }

    #[test]
    fn sign_test_small() {
        // n = 5, k = 0: 2 · 1/32 = 0.0625.
        assert!(close(sign_test_p(5, 0), 0.0625, 1e-12));
        assert!(close(sign_test_p(0, 5), 0.0625, 1e-12));
        // n = 10, k = 2: 2 · (1 + 10 + 45) / 1024 = 112 / 1024 = 0.109375.
        assert!(close(sign_test_p(8, 2), 0.109375, 1e-12));
        // n = 20, k = 5: C(20,0..5) = 1, 20, 190, 1140, 4845, 15504, sum 21700;
        // 2 · 21700 / 2^20 = 43400 / 1048576 = 0.0413895.
        assert!(close(sign_test_p(15, 5), 43400.0 / 1048576.0, 1e-12));
        // Balanced: P(X <= n/2) > 1/2, so the p-value clamps to 1.
        assert_eq!(sign_test_p(10, 10), 1.0);
        assert_eq!(sign_test_p(3, 4), 1.0);
        assert_eq!(sign_test_p(0, 0), 1.0);
    }

    #[test]
    fn sign_test_large() {
        // n = 1000, k = 0: 2 · 2^-1000 = 2^-999; log10 = -999 · 0.30103 = -300.729,
        // i.e. 1.8665e-301.
        let p = sign_test_p(1000, 0);
        assert!(((p - 1.8665e-301) / 1.8665e-301).abs() < 1e-3, "{p}");
        // n = 100000, k = 49500: normal approximation with continuity
        // correction, z = (49500.5 - 50000) / sqrt(25000) = -499.5 / 158.1139
        // = -3.15912, two-sided 2 · Φ(-3.15912) = 0.0015825.
        let p = sign_test_p(50500, 49500);
        assert!(((p - 0.0015825) / 0.0015825).abs() < 0.01, "{p}");
        assert_eq!(sign_test_p(50000, 50000), 1.0);
    }

    #[test]
    fn bootstrap_constant_difference() {
        // Every diff is exactly 0.5, so every resampled mean is 0.5.
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [0.5, 1.5, 2.5, 3.5];
        let c = paired_bootstrap(&a, &b, 200, 7);
        assert_eq!(c.n, 4);
        assert_eq!(c.mean_diff, 0.5);
        assert_eq!((c.ci_low, c.ci_high), (0.5, 0.5));
        assert_eq!((c.wins, c.losses, c.ties), (4, 0, 0));
        // 2 · 2^-4 = 0.125.
        assert!(close(c.p_value, 0.125, 1e-12));
    }

    #[test]
    fn bootstrap_counts_and_bounds() {
        // diffs: +1, -1, 0, +1, +1, 0 → wins 3, losses 1, ties 2, mean 2/6.
        let a = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let b = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let c = paired_bootstrap(&a, &b, 2000, 42);
        assert_eq!((c.wins, c.losses, c.ties), (3, 1, 2));
        assert!(close(c.mean_diff, 1.0 / 3.0, 1e-12));
        // n = 4, k = 1: 2 · (1 + 4) / 16 = 0.625.
        assert!(close(c.p_value, 0.625, 1e-12));
        // Resampled means are averages of values in [-1, 1].
        assert!(-1.0 <= c.ci_low && c.ci_low <= c.mean_diff && c.mean_diff <= c.ci_high && c.ci_high <= 1.0);
        assert!(c.ci_low < c.ci_high);
        // Same seed, same interval.
        let d = paired_bootstrap(&a, &b, 2000, 42);
        assert_eq!((c.ci_low, c.ci_high), (d.ci_low, d.ci_high));
    }

    #[test]
    fn bootstrap_empty_and_no_resamples() {
        let c = paired_bootstrap(&[], &[], 100, 1);
        assert_eq!((c.n, c.mean_diff, c.ci_low, c.ci_high, c.p_value), (0, 0.0, 0.0, 0.0, 1.0));
        let c = paired_bootstrap(&[2.0], &[1.0], 0, 1);
        assert_eq!((c.mean_diff, c.ci_low, c.ci_high), (1.0, 1.0, 1.0));
    }

    #[test]
    #[should_panic]
    fn bootstrap_length_mismatch_panics() {
        paired_bootstrap(&[1.0], &[1.0, 2.0], 10, 0);
    }

    #[test]
    fn mean_and_interval() {
        assert_eq!(mean(&[]), 0.0);
        // (2+4+4+4+5+5+7+9)/8 = 40/8 = 5.
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&xs), 5.0);
        // Squared deviations 9+1+1+1+0+0+4+16 = 32; s² = 32/7; s²/n = 4/7;
        // 1.96 · sqrt(4/7) = 1.96 · 0.7559289 = 1.4816207.
        let (lo, hi) = mean_ci95(&xs);
        assert!(close(lo, 5.0 - 1.4816207, 1e-6), "{lo}");
        assert!(close(hi, 5.0 + 1.4816207, 1e-6), "{hi}");
        assert_eq!(mean_ci95(&[3.0]), (3.0, 3.0));
        assert_eq!(mean_ci95(&[]), (0.0, 0.0));
    }

    #[test]
    fn percentile_interpolates() {
        let s = [10.0, 20.0, 30.0, 40.0];
        assert_eq!(percentile(&s, 0.0), 10.0);
        assert_eq!(percentile(&s, 1.0), 40.0);
        // pos = 0.5 · 3 = 1.5 → 20 + 0.5 · 10 = 25.
        assert_eq!(percentile(&s, 0.5), 25.0);
        // pos = 0.25 · 3 = 0.75 → 10 + 0.75 · 10 = 17.5.
        assert_eq!(percentile(&s, 0.25), 17.5);
        assert_eq!(percentile(&[7.0], 0.3), 7.0);
        assert_eq!(percentile(&[], 0.3), 0.0);
    }

    #[test]
    fn splitmix_below_in_range() {
        let mut r = SplitMix64::new(0);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
