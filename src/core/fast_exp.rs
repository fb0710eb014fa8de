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
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
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

/// [`exp_nonpositive`] (`FMA` false) or [`exp_nonpositive_fma`] (true),
/// for code generic over the instruction set it is compiled for.
#[inline(always)]
pub(crate) fn exp_nonpositive_with<const FMA: bool>(x: f32) -> f32 {
    exp_impl::<FMA>(x)
}

/// The coefficients of exp(r) = 1 + r + r^2 (c0 r^5 + ... + c5), highest
/// degree first: the minimax polynomial of Cephes' `expf` (S. Moshier),
/// the last one 5.0000001201e-1 rounded to f32.
#[inline(always)]
const fn cephes() -> [f32; 6] {
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
    let e = exp_in_range::<FMA>(xc);
    if in_range {
        e
    } else {
        0.0
    }
}

/// exp(x) for `EXP_FLOOR <= x <= 0` (the caller clamps; at the floor
/// itself 1.6e-38, not 0): the reduction, polynomial and scaling of
/// [`exp_nonpositive`] without its range test, for sums where a weight of
/// 1.6e-38 instead of 0 cannot matter (the logit scan's moments). The same
/// bits as [`exp_nonpositive`] above the floor (with `FMA`: as
/// [`exp_nonpositive_fma`]).
#[inline(always)]
pub(crate) fn exp_in_range<const FMA: bool>(xc: f32) -> f32 {
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
    e * f32::from_bits(((k_int + 127) as u32) << 23)
}

/// [`exp_nonpositive_fma`] on AVX2 and AVX-512 registers, for the
/// intrinsic kernels of the logit scan and the Dirichlet sampler: the same
/// reduction, polynomial and 2^k scaling, so every lane gives the scalar
/// function's bits (tested).
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    use super::{cephes, EXP_FLOOR, LN2_HI, LN2_LO, LOG2E, ROUND};

    /// exp(x) for x <= 0 on 8 lanes; 0 at or below [`EXP_FLOOR`] and for NaN.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
        let floor = _mm256_set1_ps(EXP_FLOOR);
        let in_range = _mm256_cmp_ps::<_CMP_GT_OQ>(x, floor);
        // vmaxps returns its second operand when either is NaN.
        _mm256_and_ps(exp8_in_range(_mm256_max_ps(x, floor)), in_range)
    }

    /// [`super::exp_in_range`] on 8 lanes: `EXP_FLOOR <= x <= 0`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp8_in_range(xc: __m256) -> __m256 {
        let shifted = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(ROUND));
        let k = _mm256_sub_ps(shifted, _mm256_set1_ps(ROUND));
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), xc));
        let c = cephes();
        let mut p = _mm256_set1_ps(c[0]);
        for &ci in &c[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ci));
        }
        let e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0));
        // k in [-126, 0]: 2^k = bits (k + 127) << 23, k from the low bits
        // of `shifted` (offset by the 0x4B40_0000 of ROUND): one add.
        let biased = _mm256_add_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(127 - 0x4B40_0000));
        _mm256_mul_ps(e, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)))
    }

    /// exp(x) for x <= 0 on 16 lanes; 0 at or below [`EXP_FLOOR`] and for
    /// NaN. The 2^k scaling is `vscalefps`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp16(x: __m512) -> __m512 {
        let floor = _mm512_set1_ps(EXP_FLOOR);
        let in_range = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, floor);
        _mm512_maskz_mov_ps(in_range, exp16_in_range(_mm512_max_ps(x, floor)))
    }

    /// [`super::exp_in_range`] on 16 lanes: `EXP_FLOOR <= x <= 0`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp16_in_range(xc: __m512) -> __m512 {
        let round = _mm512_set1_ps(ROUND);
        let k = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), round), round);
        let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), xc));
        let c = cephes();
        let mut p = _mm512_set1_ps(c[0]);
        for &ci in &c[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ci));
        }
        let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(e, k)
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_lanes_match_the_scalar_fma_exp_bit_for_bit() {
        use std::arch::x86_64::*;
        let mut xs: Vec<f32> = (0..20_000).map(|i| -(i as f32) * 0.0045).collect();
        xs.extend([0.0, -0.0, EXP_FLOOR, EXP_FLOOR + 1e-5, -87.3, -1e-30, f32::NEG_INFINITY, f32::NAN]);
        for chunk in xs.chunks(16) {
            let mut v = [f32::NEG_INFINITY; 16];
            v[..chunk.len()].copy_from_slice(chunk);
            let want_of = |x: f32| exp_nonpositive_fma(x).to_bits();
            let want: Vec<u32> = v.iter().map(|&x| want_of(x)).collect();
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX2 and FMA; loads and stores stay in the arrays.
                unsafe {
                    _mm256_storeu_ps(got.as_mut_ptr(), simd::exp8(_mm256_loadu_ps(v.as_ptr())));
                    _mm256_storeu_ps(got.as_mut_ptr().add(8), simd::exp8(_mm256_loadu_ps(v.as_ptr().add(8))));
                }
                assert_eq!(got.map(f32::to_bits).to_vec(), want, "exp8 {v:?}");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX-512F; loads and stores stay in the arrays.
                unsafe { _mm512_storeu_ps(got.as_mut_ptr(), simd::exp16(_mm512_loadu_ps(v.as_ptr()))) };
                assert_eq!(got.map(f32::to_bits).to_vec(), want, "exp16 {v:?}");
            }
            // The in-range variants on the lanes above the floor (the
            // others clamped to it, where they give 1.6e-38 instead of 0).
            let clamped = v.map(|x| if x > EXP_FLOOR { x } else { EXP_FLOOR });
            let want_in: Vec<u32> = v.iter().zip(&clamped).map(|(&x, &c)| if x > EXP_FLOOR { want_of(x) } else { exp_in_range::<true>(c).to_bits() }).collect();
            assert!(clamped.iter().all(|&c| exp_in_range::<true>(c) > 0.0));
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX2 and FMA; loads and stores stay in the arrays.
                unsafe {
                    _mm256_storeu_ps(got.as_mut_ptr(), simd::exp8_in_range(_mm256_loadu_ps(clamped.as_ptr())));
                    _mm256_storeu_ps(got.as_mut_ptr().add(8), simd::exp8_in_range(_mm256_loadu_ps(clamped.as_ptr().add(8))));
                }
                assert_eq!(got.map(f32::to_bits).to_vec(), want_in, "exp8_in_range {clamped:?}");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX-512F; loads and stores stay in the arrays.
                unsafe { _mm512_storeu_ps(got.as_mut_ptr(), simd::exp16_in_range(_mm512_loadu_ps(clamped.as_ptr()))) };
                assert_eq!(got.map(f32::to_bits).to_vec(), want_in, "exp16_in_range {clamped:?}");
            }
        }
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
