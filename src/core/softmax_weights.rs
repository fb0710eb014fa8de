//! Softmax weights `exp(logit - max)` of a candidate array, written into
//! each candidate's `p`, and their sum: the first pass of every sampler
//! that needs probabilities over the whole array (top-p, typical, the
//! softmax of the draw).
//!
//! libm's `expf` is one call per candidate that no loop can vectorise.
//! Here the logits of a block of [`BLOCK`] candidates are copied to a
//! contiguous buffer, where
//! [`exp_nonpositive`](super::fast_exp::exp_nonpositive)'s polynomial
//! vectorises (4 lanes on the SSE2 baseline), or the AVX2 + FMA and
//! AVX-512 kernels take 8 or 16 at a time with
//! [`exp_table`](super::fast_exp::exp_table)'s table of eighths, chosen at
//! run time as the logit scan chooses its kernels ([`ScanKernel::active`],
//! `ENTROPIX_SIMD` to force one). A weight's relative error is below 2e-7
//! (with the table 1.2e-7 + 2.8e-9 per nat under the maximum, at most
//! 1e-9 of the largest weight; libm's `expf`: 6e-8); weights
//! of logits 87 nats or more under the maximum (below 1.2e-38) are 0, and
//! so are those of NaN and -inf logits. Each block's weights are summed
//! in f32, in 16 lanes halved four times (the same order on every
//! kernel, so the block sums agree bit for bit), and the block sums in
//! f64: the sum's relative error is below 5e-7 (eight f32 roundings), and
//! the f64 adds per weight that a running f64 sum costs are gone (a
//! tenth of dist's time). The moments (S0 with S1) keep an f64 sum per
//! weight, in sixteen lanes: near a one-hot array the entropy is the
//! small difference of two sums that f32 block sums would round away.

use super::fast_exp::exp_table_with;
use super::logit_scan::{scan_moments, LogitScan, ScanKernel};
use super::math::max_logit_portable;
use super::records::{self, RecordLanes};
use super::token::TokenData;

/// Candidates per block: the buffer (256 bytes) stays in L1, and a block
/// is a whole number of AVX-512 registers.
pub(crate) const BLOCK: usize = 64;
/// f64 lanes of [`sum_p`].
const LANES: usize = 8;
/// f64 lanes of the moments of [`weights_body`]: a block adds to each lane
/// 4 times in a row (two AVX-512 or four AVX2 registers per sum), where 8
/// lanes made the adds' latency the pass's bottleneck.
const SUM_LANES: usize = 16;

/// Writes `exp(logit - max)` into every candidate's `p` and returns the sum
/// of the weights (f64: the sum of the block sums, in array order). `max`
/// must be finite and at least every logit.
/// `on_block(z, e, sum, reference)` sees each block of at most [`BLOCK`]
/// candidates right after its weights are written, in array order, as two
/// contiguous buffers: `z = logit - reference` and the weights
/// `e = exp(z)` (past the end of a short last block: z = -inf, e = 0), the
/// f32 sum of the block's weights, added in registers in
/// [`lane_tree_sum`]'s order, and the reference (here `max`; what a caller
/// leaves unused costs nothing once inlined).
pub(crate) fn exp_weights_blocks<F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(data: &mut [TokenData], max: f32, on_block: F) -> f64 {
    dispatch::<false, false, false, F>(data, max, 1.0, on_block)[0]
}

/// [`exp_weights_blocks`] without a maximum known beforehand, the online
/// softmax's pass: each block's weights are relative to the largest logit
/// of the blocks so far (its own included), which `on_block` gets as its
/// reference; a block holding no logit above -inf weighs 0 relative to
/// any reference (-inf before the first finite block). Weights relative
/// to the whole array's maximum M are a block's times exp(reference - M),
/// and M is the last block's reference; +inf when some logit is +inf
/// (then the weights are not usable). The reference rises a few times on
/// most arrays (about ln of the number of blocks when the order is
/// random), once per block when the logits ascend: the vector kernels
/// weigh a block against the reference so far and weigh it again when its
/// own maximum is higher. Spares the separate pass for the maximum (dist
/// at 151936: 98 to 89 us with AVX-512, 128 to 115 with AVX2).
pub(crate) fn exp_weights_running<F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(data: &mut [TokenData], on_block: F) {
    dispatch::<false, false, true, F>(data, f32::NEG_INFINITY, 1.0, on_block);
}

/// Divides every logit by `divisor` (a true division, bit-identical to
/// llama.cpp's temperature), then writes `exp(logit - max)` of the new
/// logit into `p`, in the same pass; returns the sum of the weights (f64).
/// `max` must be finite and at least every new logit.
pub(crate) fn divide_exp_weights(data: &mut [TokenData], divisor: f32, max: f32) -> f64 {
    dispatch::<false, true, false, _>(data, max, divisor, |_, _, _, _| {})[0]
}

/// [`exp_weights_blocks`] that also returns S1 = sum e·z, z = logit - max
/// (nats, <= 0; -inf and NaN logits contribute 0): with S0, the entropy
/// `ln S0 - S1 / S0` and the mean logit `max + S1 / S0`. Returns (S0, S1).
pub(crate) fn exp_moments_blocks(data: &mut [TokenData], max: f32) -> (f64, f64) {
    let [s0, s1] = dispatch::<true, false, false, _>(data, max, 1.0, |_, _, _, _| {});
    (s0, s1)
}

/// The largest logit and the softmax moments (S0 = sum exp(z), S1 =
/// sum exp(z)·z, z = logit - max) of `data`, in one pass (the logit scan);
/// `None` when the largest logit is not finite (+inf, or no logit above
/// -inf).
pub(crate) fn max_and_moments(data: &[TokenData]) -> Option<(f32, f64, f64)> {
    let mut scan = LogitScan::default();
    scan_moments::<2>(data, &mut scan);
    let m = scan.moments.filter(|_| scan.max.is_finite())?;
    Some((scan.max, m.s0, m.s1))
}

/// [`max_and_moments`] without S1: the largest logit and S0, for a few
/// instructions per register less.
pub(crate) fn max_and_sum(data: &[TokenData]) -> Option<(f32, f64)> {
    let mut scan = LogitScan::default();
    scan_moments::<1>(data, &mut scan);
    let m = scan.moments.filter(|_| scan.max.is_finite())?;
    Some((scan.max, m.s0))
}

/// Runs [`weights_body`] on the kernel [`ScanKernel::active`] picks.
#[inline(always)]
fn dispatch<const MOMENTS: bool, const DIVIDE: bool, const RUNNING: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(
    data: &mut [TokenData],
    max: f32,
    divisor: f32,
    on_block: F,
) -> [f64; 2] {
    debug_assert!(max.is_finite() || RUNNING && !MOMENTS && !DIVIDE);
    let mut reference = max;
    match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run
        // (`ScanKernel::runnable` checked their features).
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { weights_avx512::<MOMENTS, DIVIDE, RUNNING, F>(data, &mut reference, divisor, on_block) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { weights_avx2::<MOMENTS, DIVIDE, RUNNING, F>(data, &mut reference, divisor, on_block) },
        _ => weights_body::<false, MOMENTS, DIVIDE, RUNNING, F>(data, &mut reference, divisor, on_block),
    }
}

/// The AVX2 + FMA kernel: whole blocks in [`simd::weights_avx2`], the
/// short last block in [`weights_body`] compiled with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weights_avx2<const MOMENTS: bool, const DIVIDE: bool, const RUNNING: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(
    data: &mut [TokenData],
    reference: &mut f32,
    divisor: f32,
    mut on_block: F,
) -> [f64; 2] {
    let (head, tail) = data.split_at_mut(data.len() / BLOCK * BLOCK);
    let [a0, a1] = simd::weights_avx2::<MOMENTS, DIVIDE, RUNNING, F>(head, reference, divisor, &mut on_block);
    let [b0, b1] = weights_body::<true, MOMENTS, DIVIDE, RUNNING, _>(tail, reference, divisor, &mut on_block);
    [a0 + b0, a1 + b1]
}

/// The AVX-512 kernel: whole blocks in [`simd::weights_avx512`], the short
/// last block in [`weights_body`] compiled with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn weights_avx512<const MOMENTS: bool, const DIVIDE: bool, const RUNNING: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(
    data: &mut [TokenData],
    reference: &mut f32,
    divisor: f32,
    mut on_block: F,
) -> [f64; 2] {
    let (head, tail) = data.split_at_mut(data.len() / BLOCK * BLOCK);
    let [a0, a1] = simd::weights_avx512::<MOMENTS, DIVIDE, RUNNING, F>(head, reference, divisor, &mut on_block);
    let [b0, b1] = weights_body::<true, MOMENTS, DIVIDE, RUNNING, _>(tail, reference, divisor, &mut on_block);
    [a0 + b0, a1 + b1]
}

/// The AVX2 and AVX-512 loops over whole blocks, with intrinsics: the
/// records are loaded as registers and their logits and `p` moved with
/// permutes ([`crate::core::records`]), the exponential is
/// [`crate::core::fast_exp::simd::exp8_table`] or `exp16_table` (the same
/// bits as [`weights_body`] compiled with FMA, the kernels' short last
/// block),
/// and the sums are f64 registers. Each block's z and weights are still
/// stored contiguously for `on_block`.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::BLOCK;
    use crate::core::fast_exp::simd::{exp16_table as exp16, exp8_table as exp8};
    use crate::core::records::{avx2 as r8, avx512 as r16};
    use crate::core::token::TokenData;

    /// `data.len()` must be a multiple of [`BLOCK`].
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn weights_avx512<const MOMENTS: bool, const DIVIDE: bool, const RUNNING: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(
        data: &mut [TokenData],
        reference: &mut f32,
        divisor: f32,
        on_block: &mut F,
    ) -> [f64; 2] {
        const { assert!(!RUNNING || !MOMENTS && !DIVIDE, "a block weighed again would add its moments or divide its logits twice") };
        let (mut m, d, zero) = (_mm512_set1_ps(*reference), _mm512_set1_ps(divisor), _mm512_setzero_pd());
        let (mut s0, mut s1) = ([zero; 2], [zero; 2]);
        let mut total = 0.0f64;
        let mut z = [0.0f32; BLOCK];
        let mut e = [0.0f32; BLOCK];
        for block in data.chunks_exact_mut(BLOCK) {
            // With RUNNING the block is weighed against the reference so
            // far, and again when its own maximum is higher (the first
            // try's weights, inf or NaN past the reference, overwritten).
            loop {
                let mut block_max = _mm512_set1_ps(f32::NEG_INFINITY);
                let mut block_sum = _mm512_setzero_ps();
                for g in 0..BLOCK / 16 {
                    // SAFETY: 16 records from 16 g lie inside the block; the
                    // buffer stores write 16 floats inside z and e.
                    let at = block.as_mut_ptr().add(16 * g);
                    let mut r = r16::load16(at);
                    let mut x = r16::logits16(&r);
                    if RUNNING {
                        // vmaxps returns its second operand when either is NaN.
                        block_max = _mm512_max_ps(x, block_max);
                    }
                    if DIVIDE {
                        x = _mm512_div_ps(x, d);
                    }
                    let zv = _mm512_sub_ps(x, m);
                    let ev = exp16(zv);
                    if DIVIDE {
                        r16::merge_logit_p16(&mut r, x, ev);
                    } else {
                        r16::merge_p16(&mut r, ev);
                    }
                    r16::store16(at, &r);
                    block_sum = _mm512_add_ps(block_sum, ev);
                    _mm512_storeu_ps(z.as_mut_ptr().add(16 * g), zv);
                    _mm512_storeu_ps(e.as_mut_ptr().add(16 * g), ev);
                    if MOMENTS {
                        let halves = [_mm512_castps512_ps256(ev), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(ev)))];
                        let zh = [_mm512_castps512_ps256(zv), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(zv)))];
                        for h in 0..2 {
                            let e64 = _mm512_cvtps_pd(halves[h]);
                            s0[h] = _mm512_add_pd(s0[h], e64);
                            // 0 · -inf is NaN: only positive weights add e·z.
                            let positive = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(e64, zero);
                            s1[h] = _mm512_mask_add_pd(s1[h], positive, s1[h], _mm512_mul_pd(e64, _mm512_cvtps_pd(zh[h])));
                        }
                    }
                }
                if RUNNING {
                    let top = _mm512_reduce_max_ps(block_max);
                    if top > *reference {
                        *reference = top;
                        m = _mm512_set1_ps(top);
                        continue;
                    }
                }
                // The 16 lanes halved four times, as `lane_tree_sum`.
                let eight = _mm256_add_ps(_mm512_castps512_ps256(block_sum), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(block_sum))));
                let sum = tree_sum8(eight);
                total += sum as f64;
                on_block(&z, &e, sum, *reference);
                break;
            }
        }
        if MOMENTS {
            [_mm512_reduce_add_pd(_mm512_add_pd(s0[0], s0[1])), _mm512_reduce_add_pd(_mm512_add_pd(s1[0], s1[1]))]
        } else {
            [total, 0.0]
        }
    }

    /// The sum of 8 lanes halved three times (lane i plus lane i + 4,
    /// then i + 2, then i + 1), as the end of `lane_tree_sum`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tree_sum8(eight: __m256) -> f32 {
        let four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps::<1>(eight));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<1>(two, two)))
    }

    /// The largest of 8 lanes (NaN ignored).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn max8(eight: __m256) -> f32 {
        // vmaxps returns its second operand when either is NaN.
        let four = _mm_max_ps(_mm256_extractf128_ps::<1>(eight), _mm256_castps256_ps128(eight));
        let two = _mm_max_ps(_mm_movehl_ps(four, four), four);
        _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps::<1>(two, two), two))
    }

    /// `data.len()` must be a multiple of [`BLOCK`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weights_avx2<const MOMENTS: bool, const DIVIDE: bool, const RUNNING: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(
        data: &mut [TokenData],
        reference: &mut f32,
        divisor: f32,
        on_block: &mut F,
    ) -> [f64; 2] {
        const { assert!(!RUNNING || !MOMENTS && !DIVIDE, "a block weighed again would add its moments or divide its logits twice") };
        let (mut m, d, zero) = (_mm256_set1_ps(*reference), _mm256_set1_ps(divisor), _mm256_setzero_pd());
        let (mut s0, mut s1) = ([zero; 2], [zero; 2]);
        let mut total = 0.0f64;
        let mut z = [0.0f32; BLOCK];
        let mut e = [0.0f32; BLOCK];
        for block in data.chunks_exact_mut(BLOCK) {
            // With RUNNING the block is weighed against the reference so
            // far, and again when its own maximum is higher (see AVX-512's).
            loop {
                // Registers 0, 2, 4, 6 and 1, 3, 5, 7 summed apart: the low and
                // high halves of `lane_tree_sum`'s 16 lanes.
                let mut block_max = _mm256_set1_ps(f32::NEG_INFINITY);
                let mut block_sum = [_mm256_setzero_ps(); 2];
                for g in 0..BLOCK / 8 {
                    // SAFETY: 8 records from 8 g lie inside the block; the
                    // buffer stores write 8 floats inside z and e.
                    let at = block.as_mut_ptr().add(8 * g);
                    let mut r = r8::load8(at);
                    let mut x = r8::logits8(&r);
                    if RUNNING {
                        // vmaxps returns its second operand when either is NaN.
                        block_max = _mm256_max_ps(x, block_max);
                    }
                    if DIVIDE {
                        x = _mm256_div_ps(x, d);
                        r8::merge_logit8(&mut r, x);
                    }
                    let zv = _mm256_sub_ps(x, m);
                    let ev = exp8(zv);
                    r8::merge_p8(&mut r, ev);
                    r8::store8(at, &r);
                    block_sum[g % 2] = _mm256_add_ps(block_sum[g % 2], ev);
                    _mm256_storeu_ps(z.as_mut_ptr().add(8 * g), zv);
                    _mm256_storeu_ps(e.as_mut_ptr().add(8 * g), ev);
                    if MOMENTS {
                        let halves = [_mm256_castps256_ps128(ev), _mm256_extractf128_ps::<1>(ev)];
                        let zh = [_mm256_castps256_ps128(zv), _mm256_extractf128_ps::<1>(zv)];
                        for h in 0..2 {
                            let e64 = _mm256_cvtps_pd(halves[h]);
                            s0[h] = _mm256_add_pd(s0[h], e64);
                            // 0 · -inf is NaN: only positive weights add e·z.
                            let positive = _mm256_cmp_pd::<_CMP_GT_OQ>(e64, zero);
                            s1[h] = _mm256_add_pd(s1[h], _mm256_and_pd(positive, _mm256_mul_pd(e64, _mm256_cvtps_pd(zh[h]))));
                        }
                    }
                }
                if RUNNING {
                    let top = max8(block_max);
                    if top > *reference {
                        *reference = top;
                        m = _mm256_set1_ps(top);
                        continue;
                    }
                }
                let sum = tree_sum8(_mm256_add_ps(block_sum[0], block_sum[1]));
                total += sum as f64;
                on_block(&z, &e, sum, *reference);
                break;
            }
        }
        if MOMENTS {
            let total = |a: [__m256d; 2]| {
                let mut lanes = [0.0f64; 4];
                // SAFETY: the store writes the 4 lanes of `lanes`.
                unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), _mm256_add_pd(a[0], a[1])) };
                (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
            };
            [total(s0), total(s1)]
        } else {
            [total, 0.0]
        }
    }
}

/// The loop of [`exp_weights_blocks`]: returns [S0, S1] (S1 = 0 unless
/// `MOMENTS`). The exponential is [`exp_table_with`]: the vector kernels'
/// table exponential with `FMA` (only where the caller is compiled with
/// FMA), the portable one without. `DIVIDE` first
/// divides each logit by `divisor` in place (see [`divide_exp_weights`]).
/// The weights are relative to `reference`, the maximum; with `RUNNING`
/// it is raised to each block's largest logit first where that is higher
/// (see [`exp_weights_running`]; S0 then mixes references).
#[inline(always)]
fn weights_body<const FMA: bool, const MOMENTS: bool, const DIVIDE: bool, const RUNNING: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK], f32, f32)>(
    data: &mut [TokenData],
    reference: &mut f32,
    divisor: f32,
    mut on_block: F,
) -> [f64; 2] {
    let mut acc0 = [0.0f64; SUM_LANES];
    let mut acc1 = [0.0f64; SUM_LANES];
    let mut block_total = 0.0f64;
    let mut z = [0.0f32; BLOCK];
    let mut e = [0.0f32; BLOCK];
    for block in data.chunks_mut(BLOCK) {
        let n = block.len();
        if DIVIDE {
            for t in block.iter_mut() {
                t.logit /= divisor;
            }
        }
        if RUNNING {
            let block_max = max_logit_portable(block);
            if block_max > *reference {
                *reference = block_max;
            }
        }
        let max = *reference;
        for (z, t) in z.iter_mut().zip(block.iter()) {
            *z = t.logit - max;
        }
        // The last block's spare lanes weigh 0.
        z[n..].fill(f32::NEG_INFINITY);
        for (e, &z) in e.iter_mut().zip(z.iter()) {
            *e = exp_table_with::<FMA>(z);
        }
        for (t, &e) in block.iter_mut().zip(e.iter()) {
            t.p = e;
        }
        if MOMENTS {
            for c in 0..BLOCK / SUM_LANES {
                for l in 0..SUM_LANES {
                    let (e, z) = (e[c * SUM_LANES + l] as f64, z[c * SUM_LANES + l] as f64);
                    acc0[l] += e;
                    // 0 · -inf is NaN: a zero weight contributes 0.
                    let ez = e * z;
                    acc1[l] += if e > 0.0 { ez } else { 0.0 };
                }
            }
        }
        let sum = lane_tree_sum(&e);
        block_total += sum as f64;
        on_block(&z, &e, sum, max);
    }
    let total = |a: &[f64; SUM_LANES]| {
        let mut half = [0.0f64; LANES];
        for (h, pair) in half.iter_mut().zip(a.chunks_exact(2)) {
            *h = pair[0] + pair[1];
        }
        ((half[0] + half[1]) + (half[2] + half[3])) + ((half[4] + half[5]) + (half[6] + half[7]))
    };
    if MOMENTS {
        [total(&acc0), total(&acc1)]
    } else {
        [block_total, 0.0]
    }
}

/// The f32 sum of a block: 16 lanes, then halved four times (a serial sum
/// of the lanes would wait on 16 adds in a row).
#[inline(always)]
fn lane_tree_sum(e: &[f32; BLOCK]) -> f32 {
    let mut lanes = [0.0f32; 16];
    for chunk in e.chunks_exact(16) {
        for (a, &x) in lanes.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    let mut width = 8;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// Multiplies every candidate's `p` by `factor` (normalising weights into
/// probabilities), on the records' SIMD lanes of the active kernel.
pub(crate) fn scale_p(data: &mut [TokenData], factor: f32) {
    match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { scale_p_avx512(data, factor) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { scale_p_avx2(data, factor) },
        // SAFETY: the portable lanes need nothing.
        _ => unsafe { records::scale_p(RecordLanes::Portable, data, factor) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scale_p_avx2(data: &mut [TokenData], factor: f32) {
    records::scale_p(RecordLanes::Avx2, data, factor)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scale_p_avx512(data: &mut [TokenData], factor: f32) {
    records::scale_p(RecordLanes::Avx512, data, factor)
}

/// Sets candidate i's `p` to `values[i] * factor` (as far as both reach),
/// on the records' SIMD lanes of the active kernel: a plain loop writes
/// one float every 12 bytes.
pub(crate) fn set_p_scaled(data: &mut [TokenData], values: &[f32], factor: f32) {
    let n = data.len().min(values.len());
    let (data, values) = (&mut data[..n], &values[..n]);
    match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { set_p_scaled_avx512(data, values, factor) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { set_p_scaled_avx2(data, values, factor) },
        // SAFETY: the portable lanes need nothing.
        _ => unsafe { records::set_p_scaled(RecordLanes::Portable, data, values, factor) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn set_p_scaled_avx2(data: &mut [TokenData], values: &[f32], factor: f32) {
    records::set_p_scaled(RecordLanes::Avx2, data, values, factor)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn set_p_scaled_avx512(data: &mut [TokenData], values: &[f32], factor: f32) {
    records::set_p_scaled(RecordLanes::Avx512, data, values, factor)
}

/// The sum of the candidates' `p` (f64), in eight independent lanes:
/// a quarter of the time of one serial chain of f64 adds.
pub(crate) fn sum_p(data: &[TokenData]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, t) in acc.iter_mut().zip(c) {
            *a += t.p as f64;
        }
    }
    for t in chunks.remainder() {
        acc[0] += t.p as f64;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    /// Every kernel this CPU has gives exp to 2e-7 relative, 0 for NaN,
    /// -inf and logits 87 nats or more under the maximum, and the sum of
    /// what it wrote; `on_block` sees every z and weight once, in order,
    /// and the short last block's padding as z = -inf, e = 0.
    #[test]
    fn weights_and_sum_match_exp_on_every_kernel() {
        let mut logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 * -0.1).collect();
        logits[3] = f32::NAN;
        logits[64] = f32::NEG_INFINITY;
        logits[65] = -87.0;
        logits[66] = -86.5;
        for n in [0, 1, 63, 64, 65, 1000] {
            let mut data = tokens(&logits[..n]);
            let (mut zs, mut es) = (Vec::new(), Vec::new());
            let mut block_sums = Vec::new();
            let [sum, _] = weights_body::<false, false, false, false, _>(&mut data, &mut { 0.0 }, 1.0, |z, e, s, _| {
                block_sums.push(s);
                zs.extend_from_slice(z);
                es.extend_from_slice(e);
            });
            assert_eq!(zs.len(), n.div_ceil(BLOCK) * BLOCK);
            for (b, &got) in block_sums.iter().enumerate() {
                let want: f64 = es[b * BLOCK..(b + 1) * BLOCK].iter().map(|&e| e as f64).sum();
                assert!((got as f64 - want).abs() <= 1e-6 * want, "block {b}: {got} vs {want}");
            }
            for (i, (&z, &e)) in zs.iter().zip(&es).enumerate() {
                if i < n {
                    assert!(z.to_bits() == logits[i].to_bits() || z.is_nan() && logits[i].is_nan(), "{i}");
                    assert_eq!(e, data[i].p, "{i}");
                } else {
                    assert_eq!((z, e), (f32::NEG_INFINITY, 0.0), "{i}");
                }
            }
            let mut want_sum = 0.0f64;
            for (t, &l) in data.iter().zip(&logits) {
                let want = if l > -87.0 { (l as f64).exp() } else { 0.0 };
                assert!((t.p as f64 - want).abs() <= 2e-7 * want, "{l}: {} vs {want}", t.p);
                want_sum += t.p as f64;
            }
            // The block sums, added in f64: each within f32 rounding.
            assert_eq!(sum, block_sums.iter().map(|&s| s as f64).sum::<f64>(), "{n}");
            assert!((sum - want_sum).abs() <= 1e-6 * want_sum.max(1.0), "{n}: {sum} vs {want_sum}");
            for kernel in ScanKernel::available() {
                let mut other = tokens(&logits[..n]);
                // SAFETY: `available` lists only kernels this CPU runs.
                let [s, s1] = match kernel {
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx512 => unsafe { weights_avx512::<true, false, false, _>(&mut other, &mut { 0.0 }, 1.0, |_, _, _, _| {}) },
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx2 => unsafe { weights_avx2::<true, false, false, _>(&mut other, &mut { 0.0 }, 1.0, |_, _, _, _| {}) },
                    _ => weights_body::<false, true, false, false, _>(&mut other, &mut { 0.0 }, 1.0, |_, _, _, _| {}),
                };
                let want_s1: f64 = data.iter().zip(&logits).filter(|(t, _)| t.p > 0.0).map(|(t, &l)| t.p as f64 * l as f64).sum();
                assert!((s1 - want_s1).abs() <= 4e-7 * want_s1.abs(), "{}: S1 {s1} vs {want_s1}", kernel.name());
                for (a, b) in other.iter().zip(&data) {
                    assert!((a.p as f64 - b.p as f64).abs() <= 4e-7 * b.p as f64, "{}: {} vs {}", kernel.name(), a.p, b.p);
                }
                assert!((s - want_sum).abs() <= 4e-7 * want_sum, "{}: S0 {s} vs {want_sum}", kernel.name());
            }
        }
    }

    /// The running pass on every kernel: each block's reference is the
    /// largest logit so far, its z and weights are those of a pass with
    /// that maximum, and every kernel gives the portable loop's bits.
    #[test]
    fn running_references_follow_the_maximum_on_every_kernel() {
        let mut rng = crate::core::DrawStream::from_state(5);
        let mut noisy: Vec<f32> = (0..1000).map(|_| (rng.next_normal() * 3.0) as f32).collect();
        noisy[..70].fill(f32::NEG_INFINITY);
        noisy[300] = f32::NAN;
        let rising: Vec<f32> = (0..777).map(|i| i as f32 * 0.01).collect();
        for logits in [noisy, rising] {
            let run = |kernel: ScanKernel| {
                let mut data = tokens(&logits);
                let mut blocks = Vec::new();
                let mut reference = f32::NEG_INFINITY;
                let on_block = |z: &[f32; BLOCK], e: &[f32; BLOCK], sum: f32, r: f32| blocks.push((z.map(f32::to_bits), e.map(f32::to_bits), sum, r));
                // SAFETY: `available` lists only kernels this CPU runs.
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx512 => unsafe { weights_avx512::<false, false, true, _>(&mut data, &mut reference, 1.0, on_block) },
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx2 => unsafe { weights_avx2::<false, false, true, _>(&mut data, &mut reference, 1.0, on_block) },
                    _ => weights_body::<true, false, false, true, _>(&mut data, &mut reference, 1.0, on_block),
                };
                (blocks, reference, data.iter().map(|t| t.p.to_bits()).collect::<Vec<_>>())
            };
            let (want, last, _) = run(ScanKernel::Portable);
            assert_eq!(last, logits.iter().copied().fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m }));
            let mut so_far = f32::NEG_INFINITY;
            for (b, block) in want.iter().enumerate() {
                let end = (BLOCK * (b + 1)).min(logits.len());
                so_far = logits[BLOCK * b..end].iter().copied().fold(so_far, |m, x| if x > m { x } else { m });
                assert_eq!(block.3, so_far, "block {b}");
                if so_far > f32::NEG_INFINITY {
                    // The pass with this block's reference as the maximum.
                    let mut fixed = tokens(&logits[BLOCK * b..end]);
                    let mut seen = None;
                    weights_body::<true, false, false, false, _>(&mut fixed, &mut { so_far }, 1.0, |z, e, sum, _| {
                        seen = Some((z.map(f32::to_bits), e.map(f32::to_bits), sum))
                    });
                    assert_eq!(seen, Some((block.0, block.1, block.2)), "block {b}");
                }
            }
            for kernel in ScanKernel::available() {
                assert_eq!(run(kernel), run(ScanKernel::Portable), "{kernel:?}");
            }
        }
    }

    /// Every kernel sets each `p` to its value times the factor, leaving
    /// ids and logits, and stops where the shorter slice ends.
    #[test]
    fn set_p_scaled_on_every_kernel() {
        for n in [0usize, 1, 7, 8, 15, 16, 17, 33, 1000] {
            let logits: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let values: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            for kernel in ScanKernel::available() {
                let mut data = tokens(&logits);
                for t in &mut data {
                    t.p = -1.0;
                }
                // SAFETY: `available` lists only kernels this CPU runs.
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx512 => unsafe { set_p_scaled_avx512(&mut data, &values, 3.0) },
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx2 => unsafe { set_p_scaled_avx2(&mut data, &values, 3.0) },
                    _ => unsafe { records::set_p_scaled(RecordLanes::Portable, &mut data, &values, 3.0) },
                }
                for (i, t) in data.iter().enumerate() {
                    assert_eq!((t.id, t.logit, t.p), (i as i32, logits[i], values[i] * 3.0), "{kernel:?} n {n}");
                }
            }
            // A longer array keeps the p past the values.
            let mut data = tokens(&logits);
            for t in &mut data {
                t.p = -1.0;
            }
            set_p_scaled(&mut data, &values[..n / 2], 2.0);
            assert!(data[n / 2..].iter().all(|t| t.p == -1.0));
            assert!(data[..n / 2].iter().enumerate().all(|(i, t)| t.p == values[i] * 2.0));
        }
    }

    /// Every kernel gives the portable loop's z, weights, new logits and
    /// block sums bit for bit (and so the S0 added from the block sums),
    /// with and without the division, and moments within rounding of it.
    #[test]
    fn every_kernel_matches_the_portable_loop_bit_for_bit() {
        let mut rng = crate::core::DrawStream::from_state(3);
        let mut logits: Vec<f32> = (0..1000).map(|_| (rng.next_normal() * 4.0 - 2.0) as f32).collect();
        logits[7] = f32::NAN;
        logits[500] = f32::NEG_INFINITY;
        let run = |kernel: ScanKernel, divide: bool, n: usize| {
            let mut data = tokens(&logits[..n]);
            let (mut zs, mut es) = (Vec::new(), Vec::new());
            let mut sums = Vec::new();
            let on_block = |z: &[f32; BLOCK], e: &[f32; BLOCK], sum: f32, _: f32| {
                sums.push(sum);
                zs.extend(z.iter().map(|x| x.to_bits()));
                es.extend(e.iter().map(|x| x.to_bits()));
            };
            let (max, div) = if divide { (3.0f32 / 0.7, 0.7) } else { (3.0, 1.0) };
            // SAFETY: `available` lists only kernels this CPU runs.
            let [s0, s1] = match (kernel, divide) {
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx512, false) => unsafe { weights_avx512::<true, false, false, _>(&mut data, &mut { max }, div, on_block) },
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx512, true) => unsafe { weights_avx512::<true, true, false, _>(&mut data, &mut { max }, div, on_block) },
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx2, false) => unsafe { weights_avx2::<true, false, false, _>(&mut data, &mut { max }, div, on_block) },
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx2, true) => unsafe { weights_avx2::<true, true, false, _>(&mut data, &mut { max }, div, on_block) },
                (_, false) => weights_body::<true, true, false, false, _>(&mut data, &mut { max }, div, on_block),
                (_, true) => weights_body::<true, true, true, false, _>(&mut data, &mut { max }, div, on_block),
            };
            let fields: Vec<(i32, u32, u32)> = data.iter().map(|t| (t.id, t.logit.to_bits(), t.p.to_bits())).collect();
            // Without the moments S0 is the sum of the block sums.
            let mut again = tokens(&logits[..n]);
            let [blocks_s0, _] = match (kernel, divide) {
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx512, false) => unsafe { weights_avx512::<false, false, false, _>(&mut again, &mut { max }, div, |_, _, _, _| {}) },
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx512, true) => unsafe { weights_avx512::<false, true, false, _>(&mut again, &mut { max }, div, |_, _, _, _| {}) },
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx2, false) => unsafe { weights_avx2::<false, false, false, _>(&mut again, &mut { max }, div, |_, _, _, _| {}) },
                #[cfg(target_arch = "x86_64")]
                (ScanKernel::Avx2, true) => unsafe { weights_avx2::<false, true, false, _>(&mut again, &mut { max }, div, |_, _, _, _| {}) },
                (_, false) => weights_body::<true, false, false, false, _>(&mut again, &mut { max }, div, |_, _, _, _| {}),
                (_, true) => weights_body::<true, false, true, false, _>(&mut again, &mut { max }, div, |_, _, _, _| {}),
            };
            (fields, zs, es, s0, s1, sums, blocks_s0)
        };
        for divide in [false, true] {
            for n in [0, 5, 64, 130, 1000] {
                let want = run(ScanKernel::Portable, divide, n);
                for kernel in ScanKernel::available() {
                    let got = run(kernel, divide, n);
                    let name = kernel.name();
                    assert_eq!(got.0, want.0, "{name} records, divide {divide}, n {n}");
                    assert_eq!((&got.1, &got.2), (&want.1, &want.2), "{name} blocks, divide {divide}, n {n}");
                    assert!((got.3 - want.3).abs() <= 1e-12 * want.3.abs().max(1.0), "{name} S0");
                    assert!((got.4 - want.4).abs() <= 1e-12 * want.4.abs().max(1.0), "{name} S1");
                    // Block sums added in the same order.
                    assert_eq!(got.5, want.5, "{name} block sums");
                    assert_eq!(got.6, want.6, "{name} S0 of the block sums");
                    assert_eq!(got.6, want.5.iter().map(|&s| s as f64).sum::<f64>(), "{name} S0 of the block sums");
                }
            }
        }
    }
}
