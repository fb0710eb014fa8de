//! Softmax weights `exp(logit - max)` of a candidate array, written into
//! each candidate's `p`, and their sum: the first pass of every sampler
//! that needs probabilities over the whole array (top-p, typical, the
//! softmax of the draw).
//!
//! libm's `expf` is one call per candidate that no loop can vectorise.
//! Here the logits of a block of [`BLOCK`] candidates are copied to a
//! contiguous buffer, where [`exp_nonpositive`]'s polynomial vectorises:
//! 4 lanes on the SSE2 baseline, 8 or 16 in the AVX2 + FMA and AVX-512
//! copies of the same loop, chosen at run time as the logit scan chooses
//! its kernels ([`ScanKernel::active`], `ENTROPIX_SIMD` to force one).
//! A weight's relative error is below 2e-7 (libm's `expf`: 6e-8); weights
//! of logits 87 nats or more under the maximum (below 1.2e-38) are 0, and
//! so are those of NaN and -inf logits. The sum accumulates in f64, in
//! eight independent lanes.

use super::fast_exp::{exp_nonpositive, exp_nonpositive_fma};
use super::logit_scan::ScanKernel;
use super::token::TokenData;

/// Candidates per block: the buffer (256 bytes) stays in L1, and a block
/// is a whole number of AVX-512 registers.
pub(crate) const BLOCK: usize = 64;
/// f64 lanes of the sum.
const LANES: usize = 8;

/// Writes `exp(logit - max)` into every candidate's `p` and returns the sum
/// of the weights (f64). `max` must be finite and at least every logit.
/// `on_block(z, e)` sees each block of at most [`BLOCK`] candidates right
/// after its weights are written, in array order, as two contiguous
/// buffers: `z = logit - max` and the weights `e = exp(z)` (past the end
/// of a short last block: z = -inf, e = 0).
pub(crate) fn exp_weights_blocks<F: FnMut(&[f32; BLOCK], &[f32; BLOCK])>(data: &mut [TokenData], max: f32, on_block: F) -> f64 {
    dispatch::<false, F>(data, max, on_block)[0]
}

/// [`exp_weights_blocks`] that also returns S1 = sum e·z, z = logit - max
/// (nats, <= 0; -inf and NaN logits contribute 0): with S0, the entropy
/// `ln S0 - S1 / S0` and the mean logit `max + S1 / S0`. Returns (S0, S1).
pub(crate) fn exp_moments_blocks(data: &mut [TokenData], max: f32) -> (f64, f64) {
    let [s0, s1] = dispatch::<true, _>(data, max, |_, _| {});
    (s0, s1)
}

/// Runs [`weights_body`] on the kernel [`ScanKernel::active`] picks.
#[inline(always)]
fn dispatch<const MOMENTS: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK])>(data: &mut [TokenData], max: f32, on_block: F) -> [f64; 2] {
    debug_assert!(max.is_finite());
    match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run
        // (`ScanKernel::runnable` checked their features).
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { weights_avx512::<MOMENTS, F>(data, max, on_block) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { weights_avx2::<MOMENTS, F>(data, max, on_block) },
        _ => weights_body::<false, MOMENTS, F>(data, max, on_block),
    }
}

/// [`weights_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weights_avx2<const MOMENTS: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK])>(data: &mut [TokenData], max: f32, on_block: F) -> [f64; 2] {
    weights_body::<true, MOMENTS, F>(data, max, on_block)
}

/// [`weights_body`] compiled for AVX-512 (and the AVX2 + FMA it implies).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn weights_avx512<const MOMENTS: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK])>(data: &mut [TokenData], max: f32, on_block: F) -> [f64; 2] {
    weights_body::<true, MOMENTS, F>(data, max, on_block)
}

/// The loop of [`exp_weights_blocks`]: returns [S0, S1] (S1 = 0 unless
/// `MOMENTS`). `FMA` picks the fused polynomial (only where the caller is
/// compiled with FMA: elsewhere `mul_add` is a libm call).
#[inline(always)]
fn weights_body<const FMA: bool, const MOMENTS: bool, F: FnMut(&[f32; BLOCK], &[f32; BLOCK])>(data: &mut [TokenData], max: f32, mut on_block: F) -> [f64; 2] {
    let mut acc0 = [0.0f64; LANES];
    let mut acc1 = [0.0f64; LANES];
    let mut z = [0.0f32; BLOCK];
    let mut e = [0.0f32; BLOCK];
    for block in data.chunks_mut(BLOCK) {
        let n = block.len();
        for (z, t) in z.iter_mut().zip(block.iter()) {
            *z = t.logit - max;
        }
        // The last block's spare lanes weigh 0.
        z[n..].fill(f32::NEG_INFINITY);
        for (e, &z) in e.iter_mut().zip(z.iter()) {
            *e = if FMA { exp_nonpositive_fma(z) } else { exp_nonpositive(z) };
        }
        for (t, &e) in block.iter_mut().zip(e.iter()) {
            t.p = e;
        }
        for (lane, zs) in e.chunks_exact(LANES).zip(z.chunks_exact(LANES)) {
            for ((a0, a1), (&e, &z)) in acc0.iter_mut().zip(acc1.iter_mut()).zip(lane.iter().zip(zs)) {
                *a0 += e as f64;
                if MOMENTS {
                    // 0 · -inf would be NaN: a zero weight contributes 0.
                    *a1 += if e > 0.0 { e as f64 * z as f64 } else { 0.0 };
                }
            }
        }
        on_block(&z, &e);
    }
    let total = |a: &[f64; LANES]| ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    [total(&acc0), total(&acc1)]
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
            let [sum, _] = weights_body::<false, false, _>(&mut data, 0.0, |z, e| {
                zs.extend_from_slice(z);
                es.extend_from_slice(e);
            });
            assert_eq!(zs.len(), n.div_ceil(BLOCK) * BLOCK);
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
            assert!((sum - want_sum).abs() <= 1e-12 * want_sum.max(1.0), "{n}: {sum} vs {want_sum}");
            for kernel in ScanKernel::available() {
                let mut other = tokens(&logits[..n]);
                // SAFETY: `available` lists only kernels this CPU runs.
                let [s, s1] = match kernel {
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx512 => unsafe { weights_avx512::<true, _>(&mut other, 0.0, |_, _| {}) },
                    #[cfg(target_arch = "x86_64")]
                    ScanKernel::Avx2 => unsafe { weights_avx2::<true, _>(&mut other, 0.0, |_, _| {}) },
                    _ => weights_body::<false, true, _>(&mut other, 0.0, |_, _| {}),
                };
                let want_s1: f64 = data.iter().zip(&logits).filter(|(t, _)| t.p > 0.0).map(|(t, &l)| t.p as f64 * l as f64).sum();
                assert!((s1 - want_s1).abs() <= 4e-7 * want_s1.abs(), "{}: S1 {s1} vs {want_s1}", kernel.name());
                for (a, b) in other.iter().zip(&data) {
                    assert!((a.p as f64 - b.p as f64).abs() <= 4e-7 * b.p as f64, "{}: {} vs {}", kernel.name(), a.p, b.p);
                }
                assert!((s - sum).abs() <= 4e-7 * sum, "{}", kernel.name());
            }
        }
    }
}
