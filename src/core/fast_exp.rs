//! A vectorisable f32 exponential for sums over the vocabulary.
//!
//! Softmax normalisers, entropies and their moments need `exp` of every
//! logit. libm's `expf` is a call per element that no loop can vectorise;
//! [`exp_nonpositive`] is plain arithmetic and bit casts, so a loop over a
//! block of logits compiles to SIMD (SSE2 everywhere; AVX2 and FMA inside
//! the `#[target_feature]` kernels that call [`exp_nonpositive_fma`]).

/// `log2(e)`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in a short high part (exact in `k * LN2_HI` for |k| <= 126)
/// and the rest, Cody and Waite's range reduction.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds to the nearest integer (|x LOG2E| < 2^22).
const ROUND: f32 = 12_582_912.0;
/// Below this, exp(x) < 1.7e-38 (the bottom of f32's normal range): 0.
pub(crate) const EXP_FLOOR: f32 = -87.0;

/// exp(x) for x <= 0, in f32 without a libm call: x = k ln 2 + r with
/// |r| <= ln 2 / 2, exp(r) by the minimax polynomial of Cephes' `expf`
/// (S. Moshier), times 2^k built from its bits. Relative error below 2e-7;
/// returns 0 at or below [`EXP_FLOOR`], for -inf and for NaN. Positive `x`
/// is out of contract (the result is wrong, not undefined behaviour).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    exp_impl::<false>(x)
}

/// [`exp_nonpositive`] with fused multiply-adds: the same polynomial, for
/// kernels compiled with `#[target_feature(enable = "fma")]` (elsewhere
/// `mul_add` is a libm call: use [`exp_nonpositive`]). Same error bound.
#[inline(always)]
pub fn exp_nonpositive_fma(x: f32) -> f32 {
    exp_impl::<true>(x)
}

/// The coefficients of exp(r) = 1 + r + r^2 (c0 r^5 + ... + c5), highest
/// degree first: the minimax polynomial of Cephes' `expf` (S. Moshier),
/// the last one 5.0000001201e-1 rounded to f32.
#[inline(always)]
pub(crate) const fn cephes() -> [f32; 6] {
    [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5]
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn exp_impl<const FMA: bool>(x: f32) -> f32 {
    // Comparisons (not f32::max) keep the loop vectorisable; NaN fails them.
    let in_range = x > EXP_FLOOR;
    let xc = if in_range { x } else { EXP_FLOOR };
    let shifted = madd::<FMA>(xc, LOG2E, ROUND);
    let k = shifted - ROUND;
    let r = madd::<FMA>(-k, LN2_LO, madd::<FMA>(-k, LN2_HI, xc));
    let c = cephes();
    let mut p = c[0];
    for &ci in &c[1..] {
        p = madd::<FMA>(p, r, ci);
    }
    let e = madd::<FMA>(p * r, r, r) + 1.0;
    // k in [-126, 0]: 2^k = bits (k + 127) << 23. The low bits of `shifted`
    // hold k (two's complement, offset by the 0x4B40_0000 of ROUND).
    let k_int = shifted.to_bits().wrapping_sub(0x4B40_0000) as i32;
    let scale = f32::from_bits(((k_int + 127) as u32) << 23);
    if in_range {
        e * scale
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst_relative_error(f: impl Fn(f32) -> f32) -> f64 {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > EXP_FLOOR {
            let want = (x as f64).exp();
            worst = worst.max((f(x) as f64 - want).abs() / want);
            x -= 0.000_731;
        }
        worst
    }

    #[test]
    fn accurate_on_the_whole_range() {
        let plain = worst_relative_error(exp_nonpositive);
        assert!(plain < 2e-7, "relative error {plain}");
        let fused = worst_relative_error(exp_nonpositive_fma);
        assert!(fused < 2e-7, "relative error {fused}");
    }

    #[test]
    fn edges() {
        for f in [exp_nonpositive, exp_nonpositive_fma] {
            assert_eq!(f(0.0), 1.0);
            assert_eq!(f(-87.5), 0.0);
            assert_eq!(f(f32::NEG_INFINITY), 0.0);
            assert_eq!(f(f32::NAN), 0.0);
            assert!(f(-86.9) > 0.0);
        }
    }
}
