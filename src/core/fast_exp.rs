//! A vectorisable f32 exponential for sums over the vocabulary.
//!
//! Softmax normalisers, entropies and their moments need `exp` of every
//! logit. libm's `expf` is a call per element that no loop can vectorise;
//! [`exp_nonpositive`] is plain arithmetic and bit casts, so a loop over a
//! block of logits compiles to SIMD (SSE2 everywhere; AVX2 and FMA inside
//! the `#[target_feature]` kernels that call [`exp_nonpositive_fma`]).
//! The intrinsic kernels of the logit scan and the softmax weights use
//! `exp_table` instead: a table of 2^(j/8) picked with one permute and a
//! cubic, fewer operations and a shorter chain than the degree-5
//! polynomial, and a smaller error within 30 nats of the maximum.

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
/// (S. Moshier; evaluated by Estrin's scheme, whose dependency chain is
/// half as long as Horner's), times 2^k built from its bits. Relative
/// error below 2e-7; returns 0 at or below [`EXP_FLOOR`], for -inf and for
/// NaN. Positive `x` is out of contract (the result is wrong, not
/// undefined behaviour).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    exp_impl::<false>(x)
}

/// [`exp_nonpositive`] with fused multiply-adds: the same polynomial (by
/// Horner's scheme, whose chain of fused steps is short enough), for
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
    // With FMA, Horner's scheme: its fused steps make a short enough
    // chain. Without, each step of Horner's is a multiply and an add, a
    // chain of 14 operations that the portable loops over the vocabulary
    // wait on (the out-of-order window fills before the FP units do);
    // Estrin's scheme, the same polynomial in pairs of terms, takes 7 in
    // the chain for 2 more operations: the portable logit scan takes a
    // fifth less time.
    let e = if FMA {
        let mut p = c[0];
        for &ci in &c[1..] {
            p = madd::<FMA>(p, r, ci);
        }
        madd::<FMA>(p * r, r, r) + 1.0
    } else {
        let r2 = r * r;
        let r4 = r2 * r2;
        let p = (c[0] * r + c[1]) * r4 + ((c[2] * r + c[3]) * r2 + (c[4] * r + c[5]));
        p * r2 + (r + 1.0)
    };
    // k in [-126, 0]: 2^k = bits (k + 127) << 23. The low bits of `shifted`
    // hold k (two's complement, offset by the 0x4B40_0000 of ROUND).
    let k_int = shifted.to_bits().wrapping_sub(0x4B40_0000) as i32;
    e * f32::from_bits(((k_int + 127) as u32) << 23)
}

/// [`exp_table_in_range`] for any x <= 0: 0 at or below [`EXP_FLOOR`],
/// for -inf and for NaN, as [`exp_nonpositive`]. The exponential of the
/// softmax weights in the kernels compiled with FMA.
#[inline(always)]
pub(crate) fn exp_table(x: f32) -> f32 {
    let in_range = x > EXP_FLOOR;
    let e = exp_table_in_range(if in_range { x } else { EXP_FLOOR });
    if in_range {
        e
    } else {
        0.0
    }
}

/// The exponential of the loops generic over the instruction set they are
/// compiled for: [`exp_table`] with `FMA` (the vector kernels' lanes, bit
/// for bit, for their scalar tails), else [`exp_nonpositive`] (`mul_add`
/// would be a libm call). 0 at or below [`EXP_FLOOR`], for -inf and NaN.
#[inline(always)]
pub(crate) fn exp_table_with<const FMA: bool>(x: f32) -> f32 {
    if FMA {
        exp_table(x)
    } else {
        exp_nonpositive(x)
    }
}

/// 2^(j/8) for j = 0..7, rounded to f32: the table of [`exp_table_in_range`].
const EXP2_EIGHTHS: [f32; 8] = [1.0, 1.090_507_7, 1.189_207_1, 1.296_839_6, std::f32::consts::SQRT_2, 1.542_210_8, 1.681_792_9, 1.834_008_1];
/// [`EXP2_EIGHTHS`] with j << 20 taken from entry j's bits, for the
/// vector copies of [`exp_table_in_range`]: adding `shifted`'s bits << 20
/// (n << 20 = k << 23 + j << 20) to the entry picked by j gives the bits
/// of 2^k 2^(j/8) in one integer add, without masking j out. Scaling t
/// before the multiply-add rather than after gives the same bits: the
/// result is a normal number (see [`exp_table_in_range`]).
#[cfg(target_arch = "x86_64")]
const EXP2_EIGHTHS_LESS_J: [f32; 8] = {
    let mut table = [0.0f32; 8];
    let mut j = 0;
    while j < 8 {
        table[j] = f32::from_bits(EXP2_EIGHTHS[j].to_bits() - ((j as u32) << 20));
        j += 1;
    }
    table
};
/// exp(r) - 1 = r + r^2 (A + B r) on |r| <= ln 2 / 16: a cubic fitted to
/// the relative error (iteratively reweighted least squares on Chebyshev
/// nodes), 2.6e-8 before rounding; Taylor's 1/2 and 1/6 give 1.5e-7.
const EXPM1_A: f32 = 0.500_064_5;
const EXPM1_B: f32 = 0.166_668_73;

/// exp(x) for `EXP_FLOOR <= x <= 0` (the caller clamps) by a table of
/// eighths: x = (n/8) ln 2 + r with n = round(8 x / ln 2), |r| <= ln 2 / 16,
/// then 2^(n/8) = 2^k 2^(j/8) with j = n mod 8 from [`EXP2_EIGHTHS`] and
/// exp(r) by a cubic, and 2^k added to the result's exponent bits
/// (k >= -126 and 2^(j/8) >= 2^(1/2) when k = -126, so the result is a
/// normal number). r = x - n c is one fused multiply-add with c = ln 2 / 8
/// rounded to f32, 2.4e-10 under it: r is off by n 2.4e-10, a relative
/// error of 2.8e-9 per nat of |x|, which is at most 1e-9 of the largest
/// weight (|x| e^x <= 1/e), where Cody and Waite's exact split would cost
/// another operation in the chain (7% of the logit scan with AVX2).
/// Relative error below 1.2e-7 + 2.8e-9 |x| (3.6e-7 at the floor; tested);
/// exactly 1 at 0; at the floor 1.6e-38, not 0.
///
/// The reference for the vector copies in [`simd`], which pick the table
/// entry with one permute (`vpermps`) and scale it by 2^k before the last
/// multiply-add ([`EXP2_EIGHTHS_LESS_J`]): 10 vector operations of which 6
/// in a chain, against 15 and 11 for [`exp_in_range`]'s degree-5 polynomial,
/// for the logit scan's moments and the softmax weights, where the
/// exponential is most of the work (the scan's AVX2 kernel takes 30% less
/// time). Baseline x86-64 (SSE2) has no such permute, so the portable
/// kernels keep [`exp_in_range`] (ARM's NEON has one: `vqtbl1q_u8`).
/// `mul_add` is always fused (a libm call where FMA is not enabled), so
/// this gives the vector lanes' bits on any CPU.
#[inline(always)]
pub(crate) fn exp_table_in_range(xc: f32) -> f32 {
    let shifted = xc.mul_add(8.0 * LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = (-n).mul_add(std::f32::consts::LN_2 / 8.0, xc);
    let em1 = EXPM1_B.mul_add(r, EXPM1_A).mul_add(r * r, r);
    let bits = shifted.to_bits();
    let t = EXP2_EIGHTHS[(bits & 7) as usize];
    // The low bits of `shifted` hold n (two's complement, under the
    // 0x4B40_0000 of ROUND, whose low 12 bits are 0): shifted left by 20,
    // bits 23 to 31 hold k = n >> 3 in the exponent field's place.
    let k = (bits << 20) & 0xFF80_0000;
    f32::from_bits(t.mul_add(em1, t).to_bits().wrapping_add(k))
}

/// [`exp_table_in_range`] and [`exp_table`] on AVX2 and AVX-512
/// registers, for the intrinsic kernels of the logit scan, the softmax
/// weights and the Dirichlet sampler: the same reduction, table, cubic and
/// 2^k scaling, so every lane gives the scalar function's bits (tested).
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    use super::{EXP2_EIGHTHS_LESS_J, EXPM1_A, EXPM1_B, EXP_FLOOR, LOG2E, ROUND};

    /// [`super::exp_table`] on 8 lanes: x <= 0; 0 at or below
    /// [`EXP_FLOOR`] and for NaN.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp8_table(x: __m256) -> __m256 {
        let in_range = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXP_FLOOR));
        // No clamp: the lanes out of range (below the floor, -inf, NaN)
        // compute garbage (no float operation traps) that the mask clears.
        _mm256_and_ps(exp8_table_in_range(x), in_range)
    }

    /// [`super::exp_table`] on 16 lanes: x <= 0; 0 at or below
    /// [`EXP_FLOOR`] and for NaN.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp16_table(x: __m512) -> __m512 {
        let in_range = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(EXP_FLOOR));
        // No clamp, as `exp8_table`.
        _mm512_maskz_mov_ps(in_range, exp16_table_in_range(x))
    }

    /// [`super::exp_table_in_range`] on 8 lanes: `EXP_FLOOR <= x <= 0`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp8_table_in_range(xc: __m256) -> __m256 {
        let shifted = _mm256_fmadd_ps(xc, _mm256_set1_ps(8.0 * LOG2E), _mm256_set1_ps(ROUND));
        let n = _mm256_sub_ps(shifted, _mm256_set1_ps(ROUND));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(std::f32::consts::LN_2 / 8.0), xc);
        let em1 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(EXPM1_B), r, _mm256_set1_ps(EXPM1_A)), _mm256_mul_ps(r, r), r);
        // vpermps reads the low 3 bits of each index lane: j. The entry
        // less j << 20, plus n << 20, is 2^k 2^(j/8).
        let t = _mm256_permutevar8x32_ps(_mm256_loadu_ps(EXP2_EIGHTHS_LESS_J.as_ptr()), _mm256_castps_si256(shifted));
        let scale = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_slli_epi32::<20>(_mm256_castps_si256(shifted))));
        _mm256_fmadd_ps(scale, em1, scale)
    }

    /// [`super::exp_table_in_range`] on 16 lanes: `EXP_FLOOR <= x <= 0`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp16_table_in_range(xc: __m512) -> __m512 {
        let shifted = _mm512_fmadd_ps(xc, _mm512_set1_ps(8.0 * LOG2E), _mm512_set1_ps(ROUND));
        let n = _mm512_sub_ps(shifted, _mm512_set1_ps(ROUND));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(std::f32::consts::LN_2 / 8.0), xc);
        let em1 = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(EXPM1_B), r, _mm512_set1_ps(EXPM1_A)), _mm512_mul_ps(r, r), r);
        // vpermps reads the low 4 bits of each index lane: the table twice.
        // The entry less j << 20, plus n << 20, is 2^k 2^(j/8).
        let table = _mm512_castps256_ps512(_mm256_loadu_ps(EXP2_EIGHTHS_LESS_J.as_ptr()));
        let table = _mm512_shuffle_f32x4::<0b01_00_01_00>(table, table);
        let t = _mm512_permutexvar_ps(_mm512_castps_si512(shifted), table);
        let scale = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_slli_epi32::<20>(_mm512_castps_si512(shifted))));
        _mm512_fmadd_ps(scale, em1, scale)
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
    fn table_exponential_is_accurate_and_exact_at_zero() {
        // The bound grows with |x| by ln 2 / 8's rounding (see the docs).
        let mut x = 0.0f32;
        while x > EXP_FLOOR {
            let want = (x as f64).exp();
            let error = (exp_table_in_range(x) as f64 - want).abs() / want;
            assert!(error < 1.2e-7 + 2.8e-9 * -x as f64, "relative error {error} at {x}");
            x -= 0.000_731;
        }
        assert_eq!(exp_table_in_range(0.0), 1.0);
        assert_eq!(exp_table_in_range(-0.0), 1.0);
        let at_floor = exp_table_in_range(EXP_FLOOR);
        assert!(at_floor > 0.0 && at_floor < 2e-38, "{at_floor:e}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn table_exponential_lanes_match_the_scalar_bit_for_bit() {
        use std::arch::x86_64::*;
        let mut xs: Vec<f32> = (0..40_000).map(|i| -(i as f32) * 0.002_17).collect();
        xs.extend([0.0, -0.0, EXP_FLOOR, EXP_FLOOR + 1e-5, -86.99, -1e-30, -0.043, -0.044]);
        xs.retain(|&x| x >= EXP_FLOOR);
        for chunk in xs.chunks(16) {
            let mut v = [0.0f32; 16];
            v[..chunk.len()].copy_from_slice(chunk);
            let want = v.map(|x| exp_table_in_range(x).to_bits());
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX2 and FMA; loads and stores stay in the arrays.
                unsafe {
                    _mm256_storeu_ps(got.as_mut_ptr(), simd::exp8_table_in_range(_mm256_loadu_ps(v.as_ptr())));
                    _mm256_storeu_ps(got.as_mut_ptr().add(8), simd::exp8_table_in_range(_mm256_loadu_ps(v.as_ptr().add(8))));
                }
                assert_eq!(got.map(f32::to_bits), want, "exp8_table_in_range {v:?}");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX-512F; loads and stores stay in the arrays.
                unsafe { _mm512_storeu_ps(got.as_mut_ptr(), simd::exp16_table_in_range(_mm512_loadu_ps(v.as_ptr()))) };
                assert_eq!(got.map(f32::to_bits), want, "exp16_table_in_range {v:?}");
            }
        }
        // The masked copies, out of range too: 0 there, as `exp_table`.
        let mut all = xs.clone();
        all.extend([EXP_FLOOR - 1e-5, -87.5, -100.0, -1e3, -1e30, f32::MIN, f32::NEG_INFINITY, f32::NAN, -f32::NAN]);
        for chunk in all.chunks(16) {
            let mut v = [f32::NAN; 16];
            v[..chunk.len()].copy_from_slice(chunk);
            let want = v.map(|x| exp_table(x).to_bits());
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX2 and FMA; loads and stores stay in the arrays.
                unsafe {
                    _mm256_storeu_ps(got.as_mut_ptr(), simd::exp8_table(_mm256_loadu_ps(v.as_ptr())));
                    _mm256_storeu_ps(got.as_mut_ptr().add(8), simd::exp8_table(_mm256_loadu_ps(v.as_ptr().add(8))));
                }
                assert_eq!(got.map(f32::to_bits), want, "exp8_table {v:?}");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut got = [0.0f32; 16];
                // SAFETY: the CPU has AVX-512F; loads and stores stay in the arrays.
                unsafe { _mm512_storeu_ps(got.as_mut_ptr(), simd::exp16_table(_mm512_loadu_ps(v.as_ptr()))) };
                assert_eq!(got.map(f32::to_bits), want, "exp16_table {v:?}");
            }
        }
        assert!([EXP_FLOOR, -90.0, f32::NEG_INFINITY, f32::NAN].iter().all(|&x| exp_table(x) == 0.0));
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
