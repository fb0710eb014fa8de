//! Full-vocabulary passes of the sampler, written to vectorise: f32
//! logits, a vectorisable exponential (`exp_table_with`) instead of libm's
//! f64 `exp`, sums accumulated in f64 (in the vector kernels, partial sums
//! of 16 values per lane in f32 first, see `avx2`). On x86-64 the passes
//! run on AVX-512F intrinsics (16 lanes, `avx512`) or AVX2 and FMA
//! intrinsics (8 lanes, `avx2`), chosen at run time as the logit scan's
//! kernel is ([`Simd::active`]: the fastest available, or the one
//! `ENTROPIX_SIMD=avx512|avx2|portable` names); elsewhere the portable
//! build. Both vector kernels use the table exponential of
//! `core::fast_exp` (`exp_table`: 2^(j/8) from a table and a cubic, 10
//! vector operations against the Cephes polynomial's 15, for a fifth less
//! time per step) and write the same bits per element.
//!
//! Numeric error against the f64 libm versions (measured in the tests of
//! this module and `tests/dirichlet.rs`): entropies and normalisers agree
//! to about 1e-7 relative; each exponential is within 1.2e-7 + 2.8e-9 |x|
//! relative with FMA (the table) and 2e-7 without (the portable build), and
//! the f32 scaled logit `(x - max) / T` adds a rounding of 6e-8 relative
//! to it.

use crate::core::fast_exp::{exp_table_with, EXP_FLOOR};
use crate::core::TokenData;
use super::sampler::SNAP_NATS;

/// Scaled logits below this give exp = 0 and are clamped here so that
/// `0 * w` stays 0 (not NaN for -inf).
const W_CLAMP: f32 = EXP_FLOOR - 16.0;

/// Elements per block of the portable loops (one AVX register of f32).
const LANES: usize = 8;

/// The instruction sets the kernels run on: the same choice as the logit
/// scan's ([`Simd::active`]: the fastest this CPU has, or the one the
/// environment variable `ENTROPIX_SIMD=avx512|avx2|portable` names,
/// decided once per process), so that one setting forces a path for both.
pub use crate::core::logit_scan::ScanKernel as Simd;

/// Calls the `$avx512` or `$avx2` kernel, or the portable `$impl`, by
/// [`Simd::usable`].
macro_rules! dispatch {
    ($kernel:expr, $impl:ident, $avx512:path, $avx2:path, ($($arg:expr),*)) => {{
        match $kernel.usable() {
            // SAFETY: `usable` checked that the CPU has the kernel's features.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { $avx512($($arg),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { $avx2($($arg),*) },
            _ => $impl::<false>($($arg),*),
        }
    }};
}

/// Calls the vector kernels' `$k::<AUX, OUT>` with `aux` and `out` fixed
/// at compile time, one loop per use (options tested per register kept
/// the loop from being scheduled as one block); `xs` stands in for a
/// missing `aux`, an empty slice for a missing `out`.
#[cfg(target_arch = "x86_64")]
macro_rules! moments_by_use {
    ($k:ident, $xs:expr, $aux:expr, $max:expr, $inv_t:expr, $out:expr) => {
        match ($aux, $out) {
            (None, None) => $k::<false, false>($xs, $xs, $max, $inv_t, &mut []),
            (Some(a), None) => $k::<true, false>($xs, a, $max, $inv_t, &mut []),
            (None, Some(o)) => $k::<false, true>($xs, $xs, $max, $inv_t, o),
            (Some(a), Some(o)) => $k::<true, true>($xs, a, $max, $inv_t, o),
        }
    };
}

/// Raw moments of `w = (x - max) * inv_t` under the unnormalised weights
/// `e = exp(w)`: `[sum e, sum e w, sum e w^2, sum e w^3]`, and
/// `sum e * aux` when `aux` is given (same length as `xs`). `-inf` entries
/// weigh 0; `max` must be at least every entry.
pub fn moments(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32) -> [f64; 5] {
    moments_with(Simd::active(), xs, aux, max, inv_t, None)
}

/// [`moments`] (without `aux`), also writing the weights `e` to `out`.
pub fn moments_keep(xs: &[f32], max: f32, inv_t: f32, out: &mut Vec<f32>) -> [f64; 5] {
    // Every entry is written: no zero fill when the length is unchanged.
    out.resize(xs.len(), 0.0);
    out.truncate(xs.len());
    moments_with(Simd::active(), xs, None, max, inv_t, Some(out))
}

/// [`moments`] with a given kernel (one the CPU cannot run falls back to
/// [`Simd::Portable`]), also writing the weights to `out` when given (same
/// length as `xs`).
pub fn moments_with(kernel: Simd, xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5] {
    if let Some(a) = aux {
        assert_eq!(a.len(), xs.len());
    }
    if let Some(o) = &out {
        assert_eq!(o.len(), xs.len());
    }
    dispatch!(kernel, moments_impl, avx512::moments, avx2::moments, (xs, aux, max, inv_t, out))
}

#[inline(always)]
fn moments_block<const FMA: bool, const AUX: bool>(acc: &mut [[f64; LANES]; 5], x: &[f32], a: &[f32], max: f32, inv_t: f32) {
    let mut e = [0.0f32; LANES];
    let mut w = [0.0f32; LANES];
    for j in 0..LANES {
        let wj = (x[j] - max) * inv_t;
        let wj = if wj > W_CLAMP { wj } else { W_CLAMP };
        w[j] = wj;
        e[j] = exp_table_with::<FMA>(wj);
    }
    for j in 0..LANES {
        let (e, w) = (e[j] as f64, w[j] as f64);
        let ew = e * w;
        let ew2 = ew * w;
        acc[0][j] += e;
        acc[1][j] += ew;
        acc[2][j] += ew2;
        acc[3][j] += ew2 * w;
    }
    if AUX {
        for j in 0..LANES {
            acc[4][j] += e[j] as f64 * a[j] as f64;
        }
    }
}

#[inline(always)]
fn moments_impl<const FMA: bool>(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5] {
    if let Some(out) = out {
        for (o, &x) in out.iter_mut().zip(xs) {
            let w = (x - max) * inv_t;
            *o = exp_table_with::<FMA>(if w > W_CLAMP { w } else { W_CLAMP });
        }
    }
    let mut acc = [[0.0f64; LANES]; 5];
    let n_full = xs.len() / LANES * LANES;
    match aux {
        Some(a) => {
            for (x, y) in xs[..n_full].chunks_exact(LANES).zip(a[..n_full].chunks_exact(LANES)) {
                moments_block::<FMA, true>(&mut acc, x, y, max, inv_t);
            }
        }
        None => {
            for x in xs[..n_full].chunks_exact(LANES) {
                moments_block::<FMA, false>(&mut acc, x, x, max, inv_t);
            }
        }
    }
    let rest = xs.len() - n_full;
    if rest > 0 {
        let mut x = [f32::NEG_INFINITY; LANES];
        let mut y = [0.0f32; LANES];
        x[..rest].copy_from_slice(&xs[n_full..]);
        if let Some(a) = aux {
            y[..rest].copy_from_slice(&a[n_full..]);
        }
        moments_block::<FMA, true>(&mut acc, &x, &y, max, inv_t);
    }
    acc.map(|lanes| lanes.iter().sum())
}

/// `sum exp(v)` over entries that are all `<= 0` (f64 accumulation), and
/// the largest entry (the caller checks it is `<= 0`; otherwise the sum is
/// meaningless).
pub fn sum_exp_nonpositive(v: &[f32]) -> (f64, f32) {
    sum_exp_nonpositive_with(Simd::active(), v)
}

/// [`sum_exp_nonpositive`] with a given kernel (see [`moments_with`]).
pub fn sum_exp_nonpositive_with(kernel: Simd, v: &[f32]) -> (f64, f32) {
    dispatch!(kernel, sum_exp_impl, avx512::sum_exp, avx2::sum_exp, (v))
}

#[inline(always)]
fn sum_exp_impl<const FMA: bool>(v: &[f32]) -> (f64, f32) {
    let mut acc = [0.0f64; LANES];
    let mut mx = [f32::NEG_INFINITY; LANES];
    let n_full = v.len() / LANES * LANES;
    for x in v[..n_full].chunks_exact(LANES) {
        for j in 0..LANES {
            acc[j] += exp_table_with::<FMA>(x[j]) as f64;
            mx[j] = if x[j] > mx[j] { x[j] } else { mx[j] };
        }
    }
    let mut s: f64 = acc.iter().sum();
    let mut m = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in &v[n_full..] {
        s += exp_table_with::<FMA>(x) as f64;
        m = m.max(x);
    }
    if v.iter().any(|x| x.is_nan()) {
        m = f32::NAN;
    }
    (s, m)
}

/// Writes `out[i] = exp((x_i - max) * inv_t) * scale` (f32) and returns
/// `(sum out[i], sum exp((x_i - max) * inv_t2))`, both accumulated in f64.
/// `-inf` entries give 0.
pub fn probs_and_sum(xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut Vec<f32>) -> (f64, f64) {
    probs_and_sum_with(Simd::active(), xs, max, inv_t, scale, inv_t2, out)
}

/// [`probs_and_sum`] with a given kernel (see [`moments_with`]).
pub fn probs_and_sum_with(kernel: Simd, xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut Vec<f32>) -> (f64, f64) {
    out.clear();
    out.resize(xs.len(), 0.0);
    let out = &mut out[..];
    dispatch!(kernel, probs_impl, avx512::probs, avx2::probs, (xs, max, inv_t, scale, inv_t2, out))
}

#[inline(always)]
fn probs_impl<const FMA: bool>(xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    let mut a = [0.0f64; LANES];
    let mut b = [0.0f64; LANES];
    let n_full = xs.len() / LANES * LANES;
    for (x, o) in xs[..n_full].chunks_exact(LANES).zip(out[..n_full].chunks_exact_mut(LANES)) {
        for j in 0..LANES {
            let d = x[j] - max;
            let p = exp_table_with::<FMA>(d * inv_t) * scale;
            o[j] = p;
            a[j] += p as f64;
            b[j] += exp_table_with::<FMA>(d * inv_t2) as f64;
        }
    }
    let (mut sa, mut sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    for (x, o) in xs[n_full..].iter().zip(out[n_full..].iter_mut()) {
        let d = x - max;
        let p = exp_table_with::<FMA>(d * inv_t) * scale;
        *o = p;
        sa += p as f64;
        sb += exp_table_with::<FMA>(d * inv_t2) as f64;
    }
    (sa, sb)
}

/// [`probs_and_sum`] when `out` already holds the weights
/// `exp((x_i - max) * inv_t)` (from [`moments_keep`]): scales them in place
/// and returns the same two sums.
pub fn scale_and_sum(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    scale_and_sum_with(Simd::active(), xs, max, scale, inv_t2, out)
}

/// [`scale_and_sum`] with a given kernel (see [`moments_with`]).
pub fn scale_and_sum_with(kernel: Simd, xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    assert_eq!(xs.len(), out.len());
    dispatch!(kernel, scale_impl, avx512::scale, avx2::scale, (xs, max, scale, inv_t2, out))
}

#[inline(always)]
fn scale_impl<const FMA: bool>(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    let (mut sa, mut sb) = (0.0f64, 0.0f64);
    for (o, &x) in out.iter_mut().zip(xs) {
        *o *= scale;
        sa += *o as f64;
        sb += exp_table_with::<FMA>((x - max) * inv_t2) as f64;
    }
    (sa, sb)
}

/// The emwa_logp update of tokens 0..n, `out[i] = (v as f32)` with
/// `v = b + c (f - b)`, `b = old[i]`, `lp = x[i] - lse` and `f = lp` when
/// `lp >= floor`, else `fill`, all in f64, and `v` replaced by `fill`
/// within 1e-3 nats of it (the sampler's `SNAP_NATS`, see there): a plain
/// map loop, compiled for the active
/// kernel's vector width (the same IEEE operations in every lane, no
/// contraction: bit for bit the scalar result).
pub fn ema_logp(x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) {
    ema_logp_with(Simd::active(), x, old, out, lse, floor, fill, c)
}

/// [`ema_logp`] with a given kernel.
#[allow(clippy::too_many_arguments)]
pub fn ema_logp_with(kernel: Simd, x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) {
    dispatch!(kernel, ema_logp_impl, avx512::ema_logp, avx2::ema_logp, (x, old, out, lse, floor, fill, c))
}

#[inline(always)]
fn ema_logp_impl<const FMA: bool>(x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) {
    let n = x.len().min(old.len()).min(out.len());
    let (x, old, out) = (&x[..n], &old[..n], &mut out[..n]);
    for i in 0..n {
        let lp = x[i] as f64 - lse;
        let f = if lp >= floor { lp } else { fill };
        out[i] = ema_entry(old[i] as f64, f, c, fill) as f32;
    }
}

/// One emwa_logp entry's update: `c f + (1 - c) b`, computed as
/// `b + c (f - b)` so that `f == b` leaves b exactly unchanged, then
/// `fill` when within the sampler's `SNAP_NATS` (1e-3 nats) of it. The one
/// rule for [`ema_logp`] and the sampler's scalar paths.
#[inline(always)]
pub(super) fn ema_entry(b: f64, f: f64, c: f64, fill: f64) -> f64 {
    let v = b + c * (f - b);
    if (v - fill).abs() <= SNAP_NATS {
        fill
    } else {
        v
    }
}

/// [`ema_logp`] of tokens 0..n (n the shortest length) and, in the same
/// pass, [`sum_exp_nonpositive`] of the values written (`out[..n]`): the
/// same bits as the two calls in sequence (the AVX-512 kernel fuses them
/// with the same f32 partial sums per block; the others make the two
/// calls).
#[allow(clippy::too_many_arguments)]
pub fn ema_logp_sum(x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) -> (f64, f32) {
    ema_logp_sum_with(Simd::active(), x, old, out, lse, floor, fill, c)
}

/// [`ema_logp_sum`] with a given kernel.
#[allow(clippy::too_many_arguments)]
pub fn ema_logp_sum_with(kernel: Simd, x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) -> (f64, f32) {
    let n = x.len().min(old.len()).min(out.len());
    let (x, old, out) = (&x[..n], &old[..n], &mut out[..n]);
    match kernel.usable() {
        // SAFETY: `usable` checked that the CPU has the kernel's features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx512::ema_logp_sum(x, old, out, lse, floor, fill, c) },
        k => {
            ema_logp_with(k, x, old, out, lse, floor, fill, c);
            sum_exp_nonpositive_with(k, out)
        }
    }
}

/// The logits of `cands` into `xs` (same length; NaN and -inf as -inf)
/// and their maximum (NaN ignored), and the OR over `i` of `id_i ^ i` (0
/// exactly when the ids are 0..n): the sampler's logit scan.
pub fn scan_candidates(cands: &[TokenData], xs: &mut [f32]) -> (f32, u32) {
    scan_candidates_with(Simd::active(), cands, xs)
}

/// [`scan_candidates`] with a given kernel.
pub fn scan_candidates_with(kernel: Simd, cands: &[TokenData], xs: &mut [f32]) -> (f32, u32) {
    assert_eq!(cands.len(), xs.len());
    assert!(cands.len() <= u32::MAX as usize);
    dispatch!(kernel, scan_impl, avx512::scan_candidates, scan_impl_avx2, (cands, xs, 0))
}

/// The AVX2 build of the plain loop (the compiler vectorises it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_impl_avx2(cands: &[TokenData], xs: &mut [f32], start: usize) -> (f32, u32) {
    scan_impl::<true>(cands, xs, start)
}

/// Plain lane loops (no early exit, no iterator chains) so that the
/// compiler vectorises them; `start` is the index of `cands[0]`.
#[inline(always)]
fn scan_impl<const FMA: bool>(cands: &[TokenData], xs: &mut [f32], start: usize) -> (f32, u32) {
    let n = cands.len();
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut id_diff = 0u32;
    let n_full = n / 8 * 8;
    for (c, (chunk, out)) in cands[..n_full].chunks_exact(8).zip(xs[..n_full].chunks_exact_mut(8)).enumerate() {
        for j in 0..8 {
            let l = chunk[j].logit;
            lanes[j] = if l > lanes[j] { l } else { lanes[j] };
            out[j] = if l > f32::NEG_INFINITY { l } else { f32::NEG_INFINITY };
            id_diff |= (chunk[j].id as u32) ^ ((start + c * 8 + j) as u32);
        }
    }
    let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, |m, l| if l > m { l } else { m });
    for (i, (t, out)) in cands[n_full..].iter().zip(&mut xs[n_full..]).enumerate() {
        let l = t.logit;
        max = if l > max { l } else { max };
        *out = if l > f32::NEG_INFINITY { l } else { f32::NEG_INFINITY };
        id_diff |= (t.id as u32) ^ ((start + n_full + i) as u32);
    }
    (max, id_diff)
}

/// Entries per block of [`first_block_above`].
pub(crate) const TOPK_BLOCK: usize = 64;

/// The first block of [`TOPK_BLOCK`] entries of `xs`, from block `from`
/// on, holding an entry `> th` (NaN entries never are); the number of
/// blocks when there is none. `th` NaN: `from` (no block is skipped).
pub fn first_block_above(xs: &[f32], from: usize, th: f32) -> usize {
    let n_blocks = xs.len().div_ceil(TOPK_BLOCK);
    if th.is_nan() || from >= n_blocks {
        return from.min(n_blocks);
    }
    match Simd::active().usable() {
        // SAFETY: `usable` checked that the CPU has the kernel's features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx512::first_block_above(xs, from, th) },
        _ => (from..n_blocks).find(|&b| xs[b * TOPK_BLOCK..((b + 1) * TOPK_BLOCK).min(xs.len())].iter().any(|&x| x > th)).unwrap_or(n_blocks),
    }
}

/// The ids of the entries of `v` not equal to `fill` (NaN included) into
/// `out`, ascending; returns how many entries are above `fill`, the
/// smallest and largest entry (NaN ignored) and whether there is a NaN.
pub fn nonfill_scan(v: &[f32], fill: f32, out: &mut Vec<u32>) -> NonFill {
    nonfill_scan_with(Simd::active(), v, fill, out)
}

/// [`nonfill_scan`] with a given kernel.
pub fn nonfill_scan_with(kernel: Simd, v: &[f32], fill: f32, out: &mut Vec<u32>) -> NonFill {
    assert!(v.len() < u32::MAX as usize - 16);
    dispatch!(kernel, nonfill_impl, avx512::nonfill_scan, avx2::nonfill_scan, (v, fill, out))
}

/// What [`nonfill_scan`] returns besides the ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFill {
    pub n_above: usize,
    pub min: f32,
    pub max: f32,
    pub has_nan: bool,
}

#[inline(always)]
fn nonfill_impl<const FMA: bool>(v: &[f32], fill: f32, out: &mut Vec<u32>) -> NonFill {
    out.clear();
    out.resize(v.len(), 0);
    let (mut m, mut n_above, mut has_nan) = (0usize, 0usize, false);
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for (id, &t) in v.iter().enumerate() {
        out[m] = id as u32;
        m += usize::from(t != fill);
        n_above += usize::from(t > fill);
        min = if t < min { t } else { min };
        max = if t > max { t } else { max };
        has_nan |= t.is_nan();
    }
    out.truncate(m);
    NonFill { n_above, min, max, has_nan }
}

/// Sets to zero every weight of `p` below `ratio` times the largest (the
/// min-p rule on unnormalised weights) and returns the sum of those left,
/// in f64 (eight lanes, then pairwise). `p` holds non-negative finite weights;
/// `ratio` in [0, 1]; 0 keeps every weight.
pub fn cut_below_fraction_of_max(p: &mut [f32], ratio: f32) -> f64 {
    dispatch!(Simd::active(), cut_below_impl, avx512::cut_below, avx2::cut_below, (p, ratio))
}

/// [`cut_below_fraction_of_max`], plain loops inlined into each
/// instruction set's copy (the same bits on each: every lane's additions
/// are in the same order). The loops need no FMA: `_FMA` only fills the
/// slot [`dispatch!`] gives every portable body.
#[inline(always)]
fn cut_below_impl<const _FMA: bool>(p: &mut [f32], ratio: f32) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    let chunks = p.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &q) in lanes.iter_mut().zip(c) {
            *m = if q > *m { q } else { *m };
        }
    }
    let max = rest.iter().chain(&lanes).fold(0.0f32, |m, &q| if q > m { q } else { m });
    let cut = max * ratio;
    // The cut weights add 0: every weight goes to one of 8 independent f64
    // sums, no branch (a serial sum of the kept ones waited on an f64 add
    // per weight: a fifth of the sampler's time at 151936 candidates).
    let mut sums = [0.0f64; LANES];
    let mut chunks = p.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, q) in sums.iter_mut().zip(c.iter_mut()) {
            *q = if *q < cut { 0.0 } else { *q };
            *s += *q as f64;
        }
    }
    for q in chunks.into_remainder() {
        *q = if *q < cut { 0.0 } else { *q };
        sums[0] += *q as f64;
    }
    ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]))
}

/// Index where the running sum of `p` first exceeds `target` (summed in
/// blocks: the block is found from block sums, then scanned); zero entries
/// are never chosen; the last positive entry when the sum never exceeds
/// it, 0 when there is none.
pub fn pick_f32(p: &[f32], target: f64) -> usize {
    const BLOCK: usize = 256;
    /// Blocks summed together (independent chains of additions; each
    /// block's sum is the same sequence of additions as alone).
    const GROUP: usize = 4;
    let mut run = 0.0f64;
    let n_grouped = p.len() / (BLOCK * GROUP) * (BLOCK * GROUP);
    let mut sums = [0.0f64; GROUP];
    let wide = Simd::active().usable();
    for (b, chunk) in p.chunks(BLOCK).enumerate() {
        let g = b % GROUP;
        let s = if b * BLOCK < n_grouped {
            if g == 0 {
                let group = &p[b * BLOCK..(b + GROUP) * BLOCK];
                let lanes = match wide {
                    // SAFETY: `usable` checked that the CPU has AVX-512F.
                    #[cfg(target_arch = "x86_64")]
                    Simd::Avx512 => unsafe { avx512::block_lanes(group) },
                    _ => {
                        let mut lanes = [[0.0f64; LANES]; GROUP];
                        for c in 0..BLOCK / LANES {
                            for (k, l) in lanes.iter_mut().enumerate() {
                                let q = &group[k * BLOCK + c * LANES..][..LANES];
                                for j in 0..LANES {
                                    l[j] += q[j] as f64;
                                }
                            }
                        }
                        lanes
                    }
                };
                sums = lanes.map(|l| l.iter().sum());
            }
            sums[g]
        } else {
            block_sum(chunk)
        };
        if let Some(i) = cross_in_block(chunk, s, &mut run, target) {
            return b * BLOCK + i;
        }
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

/// Sum of one pick block in f64 lanes (the order every pick path uses).
fn block_sum(chunk: &[f32]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let n_full = chunk.len() / LANES * LANES;
    for c in chunk[..n_full].chunks_exact(LANES) {
        for j in 0..LANES {
            lanes[j] += c[j] as f64;
        }
    }
    let s: f64 = lanes.iter().sum();
    s + chunk[n_full..].iter().map(|&q| q as f64).sum::<f64>()
}

/// Adds the block (sum `s`) to the running mass `run`; when that crosses
/// `target`, walks the block and returns the index inside it where it does.
fn cross_in_block(chunk: &[f32], s: f64, run: &mut f64, target: f64) -> Option<usize> {
    if *run + s > target {
        for (i, &q) in chunk.iter().enumerate() {
            if q > 0.0 {
                *run += q as f64;
                if *run > target {
                    return Some(i);
                }
            }
        }
    } else {
        *run += s;
    }
    None
}

/// The previous [`pick_f32`] (one block at a time), for the tests.
#[cfg(test)]
fn pick_f32_one_block(p: &[f32], target: f64) -> usize {
    const BLOCK: usize = 256;
    let mut run = 0.0f64;
    for (b, chunk) in p.chunks(BLOCK).enumerate() {
        if let Some(i) = cross_in_block(chunk, block_sum(chunk), &mut run, target) {
            return b * BLOCK + i;
        }
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

/// The kernels in AVX2 and FMA intrinsics (the portable loops above do
/// not vectorise well: their f32 -> f64 widening defeats the compiler).
/// The exponential is `core::fast_exp::simd::exp8_table`, `exp_table`'s
/// algorithm eight lanes at a time (bit for bit, tested there). Sums: in f32 lanes
/// flushed to f64 every 128 elements (each lane adds 16 values: relative
/// error of a partial sum about 1e-7 at worst, unbiased; 3e-10 measured on
/// a whole 262144-token sum), except the sum of the written probabilities,
/// kept in f64 lanes so that the remainder mass `tot - sum(support)` is
/// exact for the same f32 values.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::W_CLAMP;
    use crate::core::fast_exp::simd::exp8_table;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn widen_add(acc: &mut [__m256d; 2], v: __m256) {
        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(acc: &[__m256d; 2]) -> f64 {
        let mut lanes = [0.0f64; 8];
        _mm256_storeu_pd(lanes.as_mut_ptr(), acc[0]);
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4), acc[1]);
        lanes.iter().sum()
    }

    /// Loads 8 lanes at `i` (fewer at the end: the rest filled with `fill`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(v: &[f32], i: usize, fill: f32) -> __m256 {
        if i + 8 <= v.len() {
            _mm256_loadu_ps(v.as_ptr().add(i))
        } else {
            let mut t = [fill; 8];
            t[..v.len() - i].copy_from_slice(&v[i..]);
            _mm256_loadu_ps(t.as_ptr())
        }
    }

    /// Stores 8 lanes at `i` (fewer at the end).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(v: &mut [f32], i: usize, x: __m256) {
        if i + 8 <= v.len() {
            _mm256_storeu_ps(v.as_mut_ptr().add(i), x);
        } else {
            let mut t = [0.0f32; 8];
            _mm256_storeu_ps(t.as_mut_ptr(), x);
            let n = v.len() - i;
            v[i..].copy_from_slice(&t[..n]);
        }
    }

    /// See [`super::moments`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn nonfill_scan(v: &[f32], fill: f32, out: &mut Vec<u32>) -> super::NonFill {
        super::nonfill_impl::<false>(v, fill, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn ema_logp(x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) {
        super::ema_logp_impl::<false>(x, old, out, lse, floor, fill, c)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn moments(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5] {
        moments_by_use!(moments_k, xs, aux, max, inv_t, out)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn moments_k<const AUX: bool, const OUT: bool>(xs: &[f32], aux: &[f32], max: f32, inv_t: f32, out: &mut [f32]) -> [f64; 5] {
        let zero = _mm256_setzero_pd();
        let mut acc = [[zero; 2]; 5];
        let (vmax, vinv, vclamp) = (_mm256_set1_ps(max), _mm256_set1_ps(inv_t), _mm256_set1_ps(W_CLAMP));
        let n = xs.len();
        let mut i = 0;
        while i < n {
            let end = (i + 128).min(n);
            let mut p0 = _mm256_setzero_ps();
            let mut p1 = _mm256_setzero_ps();
            let mut p2 = _mm256_setzero_ps();
            let mut p3 = _mm256_setzero_ps();
            let mut p4 = _mm256_setzero_ps();
            while i < end {
                let x = load(xs, i, f32::NEG_INFINITY);
                let w = _mm256_max_ps(_mm256_mul_ps(_mm256_sub_ps(x, vmax), vinv), vclamp);
                let e = exp8_table(w);
                if OUT {
                    store(out, i, e);
                }
                p0 = _mm256_add_ps(p0, e);
                let ew = _mm256_mul_ps(e, w);
                p1 = _mm256_add_ps(p1, ew);
                let ew2 = _mm256_mul_ps(ew, w);
                p2 = _mm256_add_ps(p2, ew2);
                p3 = _mm256_fmadd_ps(ew2, w, p3);
                if AUX {
                    p4 = _mm256_fmadd_ps(e, load(aux, i, 0.0), p4);
                }
                i += 8;
            }
            widen_add(&mut acc[0], p0);
            widen_add(&mut acc[1], p1);
            widen_add(&mut acc[2], p2);
            widen_add(&mut acc[3], p3);
            widen_add(&mut acc[4], p4);
        }
        [hsum(&acc[0]), hsum(&acc[1]), hsum(&acc[2]), hsum(&acc[3]), hsum(&acc[4])]
    }

    /// See [`super::cut_below_fraction_of_max`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn cut_below(p: &mut [f32], ratio: f32) -> f64 {
        super::cut_below_impl::<true>(p, ratio)
    }

    /// See [`super::sum_exp_nonpositive`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum_exp(v: &[f32]) -> (f64, f32) {
        let mut acc = [_mm256_setzero_pd(); 2];
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut nan = _mm256_setzero_ps();
        let mut i = 0;
        while i < v.len() {
            let end = (i + 128).min(v.len());
            let mut part = _mm256_setzero_ps();
            while i < end {
                let x = load(v, i, f32::NEG_INFINITY);
                part = _mm256_add_ps(part, exp8_table(x));
                vmax = _mm256_max_ps(vmax, x);
                nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
                i += 8;
            }
            widen_add(&mut acc, part);
        }
        let mut m = [0.0f32; 8];
        _mm256_storeu_ps(m.as_mut_ptr(), vmax);
        let mx = if _mm256_movemask_ps(nan) != 0 { f32::NAN } else { m.iter().copied().fold(f32::NEG_INFINITY, f32::max) };
        (hsum(&acc), mx)
    }

    /// See [`super::scale_and_sum`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scale(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
        let (vmax, vscale, vinv2) = (_mm256_set1_ps(max), _mm256_set1_ps(scale), _mm256_set1_ps(inv_t2));
        let mut a = [_mm256_setzero_pd(); 2];
        let mut b = [_mm256_setzero_pd(); 2];
        let mut i = 0;
        while i < xs.len() {
            let end = (i + 128).min(xs.len());
            let mut part = _mm256_setzero_ps();
            while i < end {
                let d = _mm256_sub_ps(load(xs, i, f32::NEG_INFINITY), vmax);
                let p = _mm256_mul_ps(load(out, i, 0.0), vscale);
                store(out, i, p);
                widen_add(&mut a, p);
                part = _mm256_add_ps(part, exp8_table(_mm256_mul_ps(d, vinv2)));
                i += 8;
            }
            widen_add(&mut b, part);
        }
        (hsum(&a), hsum(&b))
    }

    /// See [`super::probs_and_sum`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn probs(xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
        let (vmax, vinv, vscale, vinv2) = (_mm256_set1_ps(max), _mm256_set1_ps(inv_t), _mm256_set1_ps(scale), _mm256_set1_ps(inv_t2));
        let mut a = [_mm256_setzero_pd(); 2];
        let mut b = [_mm256_setzero_pd(); 2];
        let n = xs.len();
        let mut i = 0;
        while i < n {
            let d = _mm256_sub_ps(load(xs, i, f32::NEG_INFINITY), vmax);
            let p = _mm256_mul_ps(exp8_table(_mm256_mul_ps(d, vinv)), vscale);
            widen_add(&mut a, p);
            widen_add(&mut b, exp8_table(_mm256_mul_ps(d, vinv2)));
            if i + 8 <= n {
                _mm256_storeu_ps(out.as_mut_ptr().add(i), p);
            } else {
                let mut t = [0.0f32; 8];
                _mm256_storeu_ps(t.as_mut_ptr(), p);
                out[i..].copy_from_slice(&t[..n - i]);
            }
            i += 8;
        }
        (hsum(&a), hsum(&b))
    }
}

/// The kernels in AVX-512F intrinsics: those of [`avx2`] on 16 lanes
/// (`exp16_table`, bit for bit `exp_table`), masks instead of blends, and
/// masked loads and stores for the last partial block. Sums as in `avx2`:
/// f32 lanes flushed to f64 every 256 elements (each lane still adds 16
/// values), the sum of the written probabilities in f64 lanes.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{TokenData, W_CLAMP};
    use crate::core::fast_exp::simd::exp16_table;

    /// Elements between two flushes of the f32 partial sums.
    const FLUSH: usize = 256;

    /// The lanes of a block at `i` that lie inside a slice of length `n`.
    #[inline]
    fn mask(n: usize, i: usize) -> __mmask16 {
        let r = n - i;
        if r >= 16 {
            0xFFFF
        } else {
            ((1u32 << r) - 1) as __mmask16
        }
    }

    /// Loads 16 lanes at `i` (fewer at the end: the rest filled with `fill`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(v: &[f32], i: usize, fill: f32) -> __m512 {
        if i + 16 <= v.len() {
            _mm512_loadu_ps(v.as_ptr().add(i))
        } else {
            _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(v.len(), i), v.as_ptr().add(i))
        }
    }

    /// Stores 16 lanes at `i` (fewer at the end).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(v: &mut [f32], i: usize, x: __m512) {
        if i + 16 <= v.len() {
            _mm512_storeu_ps(v.as_mut_ptr().add(i), x);
        } else {
            _mm512_mask_storeu_ps(v.as_mut_ptr().add(i), mask(v.len(), i), x);
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn widen_add(acc: &mut [__m512d; 2], v: __m512) {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(hi));
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn hsum(acc: &[__m512d; 2]) -> f64 {
        _mm512_reduce_add_pd(acc[0]) + _mm512_reduce_add_pd(acc[1])
    }

    /// See [`super::moments`].
    /// [`super::nonfill_scan`]: 16 entries at a time, the ids compressed
    /// in a register and stored whole (the next store overwrites the
    /// lanes past the kept ones; the buffer has 16 spare entries).
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn nonfill_scan(v: &[f32], fill: f32, out: &mut Vec<u32>) -> super::NonFill {
        let n = v.len();
        out.clear();
        out.reserve(n + 16);
        let dst = out.as_mut_ptr() as *mut i32;
        let fv = _mm512_set1_ps(fill);
        let mut ids = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(16);
        let (mut lo, mut hi) = (_mm512_set1_ps(f32::INFINITY), _mm512_set1_ps(f32::NEG_INFINITY));
        let (mut m, mut n_above, mut nan) = (0usize, 0usize, 0u16);
        let mut i = 0;
        // Four registers at a time: their four offsets from one running
        // count (the chain count -> store address is the bottleneck of a
        // one-register loop).
        while i + 64 <= n {
            let mut xv = [fv; 4];
            let mut ne = [0u16; 4];
            for (j, (x, e)) in xv.iter_mut().zip(&mut ne).enumerate() {
                *x = _mm512_loadu_ps(v.as_ptr().add(i + 16 * j));
                *e = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(*x, fv);
            }
            let c = ne.map(|e| e.count_ones() as usize);
            let offs = [m, m + c[0], m + c[0] + c[1], m + c[0] + c[1] + c[2]];
            for j in 0..4 {
                let x = xv[j];
                let idj = _mm512_add_epi32(ids, _mm512_set1_epi32(16 * j as i32));
                // SAFETY: offs[j] <= i + 16 j < n and the buffer holds n + 16 entries.
                _mm512_storeu_si512(dst.add(offs[j]) as *mut _, _mm512_maskz_compress_epi32(ne[j], idj));
                n_above += _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, fv).count_ones() as usize;
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                lo = _mm512_min_ps(lo, x);
                hi = _mm512_max_ps(hi, x);
            }
            m = offs[3] + c[3];
            ids = _mm512_add_epi32(ids, _mm512_set1_epi32(64));
            i += 64;
        }
        while i < n {
            let k = mask(n, i);
            let x = _mm512_maskz_loadu_ps(k, v.as_ptr().add(i));
            let ne = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(k, x, fv);
            let gt = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(k, x, fv);
            nan |= _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(k, x, x);
            // SAFETY: m <= i < n and the buffer holds n + 16 entries.
            _mm512_storeu_si512(dst.add(m) as *mut _, _mm512_maskz_compress_epi32(ne, ids));
            m += ne.count_ones() as usize;
            n_above += gt.count_ones() as usize;
            lo = _mm512_mask_min_ps(lo, k, lo, x);
            hi = _mm512_mask_max_ps(hi, k, hi, x);
            ids = _mm512_add_epi32(ids, step);
            i += 16;
        }
        // SAFETY: the first m entries were written.
        out.set_len(m);
        super::NonFill { n_above, min: _mm512_reduce_min_ps(lo), max: _mm512_reduce_max_ps(hi), has_nan: nan != 0 }
    }

    /// See [`super::scan_candidates`]: 16 records (48 words) at a time,
    /// their logits (words 3k + 1) and ids (words 3k) pulled out with two
    /// permutes each; the last records through the plain loop.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scan_candidates(cands: &[TokenData], xs: &mut [f32], start: usize) -> (f32, u32) {
        const _: () = assert!(std::mem::size_of::<TokenData>() == 12 && std::mem::offset_of!(TokenData, logit) == 4);
        debug_assert_eq!(start, 0);
        let n = cands.len();
        let id1 = _mm512_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0, 0, 0, 0, 0);
        let id2 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16 + 1, 16 + 4, 16 + 7, 16 + 10, 16 + 13);
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(16);
        let mut vmax = neg_inf;
        let mut diff = _mm512_setzero_si512();
        let src = cands.as_ptr().cast::<f32>();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: records i..i + 16 are words 3i..3i + 48.
            let p = src.add(3 * i);
            let a = _mm512_loadu_ps(p);
            let b = _mm512_loadu_ps(p.add(16));
            let c = _mm512_loadu_ps(p.add(32));
            let x = crate::core::logit_scan::avx512::logits_of_records(a, b, c);
            // vmaxps returns its second operand when either is NaN.
            let x = _mm512_max_ps(x, neg_inf);
            vmax = _mm512_max_ps(vmax, x);
            _mm512_storeu_ps(xs.as_mut_ptr().add(i), x);
            let ids = _mm512_castps_si512(_mm512_permutex2var_ps(_mm512_permutex2var_ps(a, id1, b), id2, c));
            diff = _mm512_or_si512(diff, _mm512_xor_si512(ids, idx));
            idx = _mm512_add_epi32(idx, step);
            i += 16;
        }
        let (m, d) = super::scan_impl::<true>(&cands[i..], &mut xs[i..], i);
        let vm = _mm512_reduce_max_ps(vmax);
        (if m > vm { m } else { vm }, d | _mm512_reduce_or_epi32(diff) as u32)
    }

    /// The eight f64 lane sums of each of four blocks of 256 entries (lane
    /// j: entries j, j + 8, ... in order), as [`super::pick_f32`] sums one
    /// block; the four blocks' chains of additions interleaved.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_lanes(p: &[f32]) -> [[f64; 8]; 4] {
        assert_eq!(p.len(), 4 * 256);
        let mut acc = [_mm512_setzero_pd(); 4];
        let src = p.as_ptr();
        for c in 0..32 {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: 256 k + 8 c + 8 <= 1024.
                *a = _mm512_add_pd(*a, _mm512_cvtps_pd(_mm256_loadu_ps(src.add(256 * k + 8 * c))));
            }
        }
        let mut out = [[0.0f64; 8]; 4];
        for (o, a) in out.iter_mut().zip(&acc) {
            _mm512_storeu_pd(o.as_mut_ptr(), *a);
        }
        out
    }

    /// See [`super::first_block_above`] (`from` < the number of blocks).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn first_block_above(xs: &[f32], from: usize, th: f32) -> usize {
        let n = xs.len();
        let t = _mm512_set1_ps(th);
        let src = xs.as_ptr();
        let mut b = from;
        while (b + 1) * 64 <= n {
            // SAFETY: the block's 64 entries are inside `xs`.
            let p = src.add(64 * b);
            let m = _mm512_max_ps(_mm512_max_ps(_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))), _mm512_max_ps(_mm512_loadu_ps(p.add(32)), _mm512_loadu_ps(p.add(48))));
            // vmaxps returns its second operand when either is NaN: a NaN
            // can hide a value above th in the same lane; check exactly then.
            let k = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, t) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(m, m);
            if k != 0 && xs[64 * b..64 * b + 64].iter().any(|&x| x > th) {
                return b;
            }
            b += 1;
        }
        if 64 * b < n && xs[64 * b..].iter().any(|&x| x > th) {
            return b;
        }
        n.div_ceil(64)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn ema_logp(x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) {
        super::ema_logp_impl::<false>(x, old, out, lse, floor, fill, c)
    }

    /// See [`super::ema_logp_sum`]: per block of `FLUSH` entries, the
    /// update, then [`sum_exp`]'s accumulation of the written values
    /// (still in L1).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn ema_logp_sum(x: &[f32], old: &[f32], out: &mut [f32], lse: f64, floor: f64, fill: f64, c: f64) -> (f64, f32) {
        let n = x.len();
        debug_assert!(old.len() == n && out.len() == n);
        let mut acc = [_mm512_setzero_pd(); 2];
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut nan: __mmask16 = 0;
        let mut i = 0;
        while i < n {
            let end = (i + FLUSH).min(n);
            // The update of one block (the scalar loop, vectorised by the
            // compiler), then its sum read back from L1.
            super::ema_logp_impl::<false>(&x[i..end], &old[i..end], &mut out[i..end], lse, floor, fill, c);
            let mut part = _mm512_setzero_ps();
            while i < end {
                let r = load(out, i, f32::NEG_INFINITY);
                part = _mm512_add_ps(part, exp16_table(r));
                vmax = _mm512_max_ps(vmax, r);
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(r, r);
                i += 16;
            }
            widen_add(&mut acc, part);
        }
        let mx = if nan != 0 { f32::NAN } else { _mm512_reduce_max_ps(vmax) };
        (hsum(&acc), mx)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn moments(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5] {
        moments_by_use!(moments_k, xs, aux, max, inv_t, out)
    }

    /// [`moments`] with `aux` (`a`, used when `AUX`) and `out` (written
    /// when `OUT`) fixed at compile time.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn moments_k<const AUX: bool, const OUT: bool>(xs: &[f32], a: &[f32], max: f32, inv_t: f32, out: &mut [f32]) -> [f64; 5] {
        let zero = _mm512_setzero_pd();
        let mut acc = [[zero; 2]; 5];
        let (vmax, vinv, vclamp) = (_mm512_set1_ps(max), _mm512_set1_ps(inv_t), _mm512_set1_ps(W_CLAMP));
        let n = xs.len();
        let mut i = 0;
        while i < n {
            let end = (i + FLUSH).min(n);
            let mut p0 = _mm512_setzero_ps();
            let mut p1 = _mm512_setzero_ps();
            let mut p2 = _mm512_setzero_ps();
            let mut p3 = _mm512_setzero_ps();
            let mut p4 = _mm512_setzero_ps();
            while i < end {
                let x = load(xs, i, f32::NEG_INFINITY);
                let w = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(x, vmax), vinv), vclamp);
                let e = exp16_table(w);
                if OUT {
                    store(out, i, e);
                }
                p0 = _mm512_add_ps(p0, e);
                let ew = _mm512_mul_ps(e, w);
                p1 = _mm512_add_ps(p1, ew);
                let ew2 = _mm512_mul_ps(ew, w);
                p2 = _mm512_add_ps(p2, ew2);
                p3 = _mm512_fmadd_ps(ew2, w, p3);
                if AUX {
                    p4 = _mm512_fmadd_ps(e, load(a, i, 0.0), p4);
                }
                i += 16;
            }
            widen_add(&mut acc[0], p0);
            widen_add(&mut acc[1], p1);
            widen_add(&mut acc[2], p2);
            widen_add(&mut acc[3], p3);
            if AUX {
                widen_add(&mut acc[4], p4);
            }
        }
        [hsum(&acc[0]), hsum(&acc[1]), hsum(&acc[2]), hsum(&acc[3]), hsum(&acc[4])]
    }

    /// See [`super::cut_below_fraction_of_max`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn cut_below(p: &mut [f32], ratio: f32) -> f64 {
        super::cut_below_impl::<true>(p, ratio)
    }

    /// See [`super::sum_exp_nonpositive`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum_exp(v: &[f32]) -> (f64, f32) {
        let mut acc = [_mm512_setzero_pd(); 2];
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut nan: __mmask16 = 0;
        let mut i = 0;
        while i < v.len() {
            let end = (i + FLUSH).min(v.len());
            let mut part = _mm512_setzero_ps();
            while i < end {
                let x = load(v, i, f32::NEG_INFINITY);
                part = _mm512_add_ps(part, exp16_table(x));
                vmax = _mm512_max_ps(vmax, x);
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                i += 16;
            }
            widen_add(&mut acc, part);
        }
        let mx = if nan != 0 { f32::NAN } else { _mm512_reduce_max_ps(vmax) };
        (hsum(&acc), mx)
    }

    /// See [`super::scale_and_sum`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scale(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
        let (vmax, vscale, vinv2) = (_mm512_set1_ps(max), _mm512_set1_ps(scale), _mm512_set1_ps(inv_t2));
        let mut a = [_mm512_setzero_pd(); 2];
        let mut b = [_mm512_setzero_pd(); 2];
        let mut i = 0;
        while i < xs.len() {
            let end = (i + FLUSH).min(xs.len());
            let mut part = _mm512_setzero_ps();
            while i < end {
                let d = _mm512_sub_ps(load(xs, i, f32::NEG_INFINITY), vmax);
                let p = _mm512_mul_ps(load(out, i, 0.0), vscale);
                store(out, i, p);
                widen_add(&mut a, p);
                part = _mm512_add_ps(part, exp16_table(_mm512_mul_ps(d, vinv2)));
                i += 16;
            }
            widen_add(&mut b, part);
        }
        (hsum(&a), hsum(&b))
    }

    /// See [`super::probs_and_sum`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn probs(xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
        let (vmax, vinv, vscale, vinv2) = (_mm512_set1_ps(max), _mm512_set1_ps(inv_t), _mm512_set1_ps(scale), _mm512_set1_ps(inv_t2));
        let mut a = [_mm512_setzero_pd(); 2];
        let mut b = [_mm512_setzero_pd(); 2];
        let mut i = 0;
        while i < xs.len() {
            let d = _mm512_sub_ps(load(xs, i, f32::NEG_INFINITY), vmax);
            let p = _mm512_mul_ps(exp16_table(_mm512_mul_ps(d, vinv)), vscale);
            widen_add(&mut a, p);
            widen_add(&mut b, exp16_table(_mm512_mul_ps(d, vinv2)));
            store(out, i, p);
            i += 16;
        }
        (hsum(&a), hsum(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_below_fraction_of_max_zeroes_the_tail_and_sums_the_rest() {
        let mut p = vec![0.5, 0.04, 0.06, 0.0, 0.3];
        let total = cut_below_fraction_of_max(&mut p, 0.1);
        assert_eq!(p, vec![0.5, 0.0, 0.06, 0.0, 0.3]);
        assert_eq!(total, 0.5f32 as f64 + 0.06f32 as f64 + 0.3f32 as f64);
        // The largest in the remainder after the 8-wide blocks; a weight
        // equal to the cut (0.2 x 1.0) stays.
        let mut p = vec![0.1f32; 17];
        p[16] = 1.0;
        p[3] = 0.2;
        let total = cut_below_fraction_of_max(&mut p, 0.2);
        assert_eq!(p.iter().filter(|&&q| q > 0.0).count(), 2);
        assert_eq!(total, 0.2f32 as f64 + 1.0);
        // 0 keeps every weight.
        let mut p = vec![3.0, 1e-30, 0.0];
        assert_eq!(cut_below_fraction_of_max(&mut p, 0.0), 3.0 + 1e-30f32 as f64);
        assert_eq!(p, vec![3.0, 1e-30, 0.0]);
    }

    #[test]
    fn cut_below_fraction_of_max_is_the_same_on_every_kernel() {
        let mut d = crate::core::DrawStream::from_state(8);
        for n in [0usize, 5, 8, 17, 1000, 49_153] {
            let p: Vec<f32> = (0..n).map(|_| (d.next_normal() * 2.0).exp() as f32).collect();
            let want = {
                let mut q = p.clone();
                (cut_below_impl::<false>(&mut q, 0.05).to_bits(), q)
            };
            for k in Simd::available() {
                let mut q = p.clone();
                let total = dispatch!(k, cut_below_impl, avx512::cut_below, avx2::cut_below, (&mut q, 0.05));
                assert_eq!((total.to_bits(), q), want, "{k:?} n {n}");
            }
        }
    }

    fn logits(n: usize, seed: u64) -> Vec<f32> {
        let mut d = crate::core::DrawStream::from_state(seed);
        (0..n).map(|i| if i % 97 == 5 { f32::NEG_INFINITY } else { (d.next_normal() * 3.0) as f32 }).collect()
    }

    /// Sizes around the block widths (8, 16) and flush lengths (128, 256).
    const SIZES: [usize; 12] = [0, 1, 7, 8, 9, 15, 17, 129, 257, 1000, 4099, 49_153];

    #[test]
    fn ema_logp_snaps_to_the_fill_value_instead_of_stalling() {
        let fill = -18.420_680_743_952_367_f64 as f32 as f64;
        let lse = 0.0;
        // Every token below the floor: each step moves toward the fill.
        let x = [-30.0f32; 3];
        for k in Simd::available() {
            // Within SNAP_NATS after the step: exactly the fill; farther:
            // the plain EMA.
            let old = [(fill + 2e-3) as f32, (fill + 0.01) as f32, fill as f32];
            let mut out = [0.0f32; 3];
            ema_logp_with(k, &x, &old, &mut out, lse, -12.0, fill, 0.6);
            assert_eq!(out[0] as f64, fill, "{k:?}");
            assert_eq!(out[1], (old[1] as f64 + 0.6 * (fill - old[1] as f64)) as f32, "{k:?}");
            assert_eq!(out[2] as f64, fill, "{k:?}");
            // A small coefficient: without the snap the f32 value stops a
            // few ulps above the fill (c (b - fill) under half an ulp);
            // with it, it reaches the fill.
            let mut v = [(fill + 1.0) as f32; 3];
            for _ in 0..20_000 {
                let mut next = [0.0f32; 3];
                ema_logp_with(k, &x, &v, &mut next, lse, -12.0, fill, 1e-3);
                v = next;
            }
            assert!(v.iter().all(|&e| e as f64 == fill), "{k:?}: {v:?}");
        }
    }

    #[test]
    fn moments_match_f64() {
        for kernel in Simd::available() {
            for &n in &SIZES[1..] {
                let xs = logits(n, n as u64);
                let aux: Vec<f32> = (0..n).map(|i| -(i as f32) * 1e-3).collect();
                let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                for &t in &[0.3f64, 0.8, 1.0, 2.5] {
                    let got = moments_with(kernel, &xs, Some(&aux), max, (1.0 / t) as f32, None);
                    let mut want = [0.0f64; 5];
                    for (&x, &a) in xs.iter().zip(&aux) {
                        if x > f32::NEG_INFINITY {
                            let w = (x as f64 - max as f64) / t;
                            let e = w.exp();
                            want[0] += e;
                            want[1] += e * w;
                            want[2] += e * w * w;
                            want[3] += e * w * w * w;
                            want[4] += e * a as f64;
                        }
                    }
                    for k in 0..5 {
                        let scale = want[0] * (1.0 + (want[1] / want[0]).abs()).powi(k.min(3) as i32);
                        assert!((got[k] - want[k]).abs() <= 1e-6 * scale + 1e-300, "{kernel:?} n {n} T {t} k {k}: {} vs {}", got[k], want[k]);
                    }
                    // Without aux, and keeping the weights: the same four sums.
                    let mut w = vec![0.0f32; n];
                    let kept = moments_with(kernel, &xs, None, max, (1.0 / t) as f32, Some(&mut w));
                    assert_eq!(kept[..4], got[..4], "{kernel:?} n {n} T {t}");
                    assert_eq!(kept[4], 0.0);
                    for (&wi, &x) in w.iter().zip(&xs) {
                        if x == f32::NEG_INFINITY {
                            assert_eq!(wi, 0.0);
                            continue;
                        }
                        let want = ((x as f64 - max as f64) / t).exp();
                        assert!((wi as f64 - want).abs() <= 2e-7 * want * (1.0 + 1.2 * (x as f64 - max as f64).abs() / t), "{kernel:?} {wi} vs {want}");
                    }
                }
            }
        }
    }

    /// The per-element results of the x86 kernels agree bit for bit (the
    /// same exponential and the same f32 operations per element).
    #[test]
    fn vector_kernels_write_the_same_bits() {
        let vector: Vec<Simd> = Simd::available().into_iter().filter(|&k| k != Simd::Portable).collect();
        for &n in &SIZES {
            let xs = logits(n, 3 + n as u64);
            let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(0.0);
            let runs: Vec<(Vec<f32>, Vec<f32>)> = vector
                .iter()
                .map(|&k| {
                    let mut w = vec![0.0f32; n];
                    moments_with(k, &xs, None, max, 1.3, Some(&mut w));
                    scale_and_sum_with(k, &xs, max, 0.37, 0.6, &mut w);
                    let mut p = Vec::new();
                    probs_and_sum_with(k, &xs, max, 0.7, 1.9, 0.8, &mut p);
                    (w, p)
                })
                .collect();
            for r in &runs[1.min(runs.len())..] {
                assert!(r.0.iter().zip(&runs[0].0).all(|(a, b)| a.to_bits() == b.to_bits()), "n {n}");
                assert!(r.1.iter().zip(&runs[0].1).all(|(a, b)| a.to_bits() == b.to_bits()), "n {n}");
            }
        }
    }

    #[test]
    fn sum_exp_matches_f64() {
        for kernel in Simd::available() {
            for &n in &SIZES {
                let mut v: Vec<f32> = logits(n, 5 + n as u64).iter().map(|&x| -(x.abs()) * 4.0).collect();
                let (got, mx) = sum_exp_nonpositive_with(kernel, &v);
                let want: f64 = v.iter().map(|&x| (x as f64).exp()).sum();
                let want_max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert!((got - want).abs() <= 1e-6 * want, "{kernel:?} n {n}: {got} vs {want}");
                assert_eq!(mx, want_max, "{kernel:?} n {n}");
                if n > 0 {
                    v[n / 2] = f32::NAN;
                    assert!(sum_exp_nonpositive_with(kernel, &v).1.is_nan(), "{kernel:?} n {n}");
                }
            }
        }
    }

    #[test]
    fn probs_and_scale_match_f64() {
        let (inv_t, scale, inv_t2) = (1.0f32 / 0.7, 0.25f32, 1.0f32 / 1.6);
        for kernel in Simd::available() {
            for &n in &SIZES {
                let xs = logits(n, 7 + n as u64);
                let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(0.0);
                let e = |x: f32, it: f32| if x > f32::NEG_INFINITY { ((x as f64 - max as f64) * it as f64).exp() } else { 0.0 };
                let want_b: f64 = xs.iter().map(|&x| e(x, inv_t2)).sum();
                let want_a: f64 = xs.iter().map(|&x| e(x, inv_t) * scale as f64).sum();
                let mut p = Vec::new();
                let (a, b) = probs_and_sum_with(kernel, &xs, max, inv_t, scale, inv_t2, &mut p);
                let mut w = vec![0.0f32; n];
                moments_with(kernel, &xs, None, max, inv_t, Some(&mut w));
                let (a2, b2) = scale_and_sum_with(kernel, &xs, max, scale, inv_t2, &mut w);
                assert_eq!(p, w, "{kernel:?} n {n}");
                for (sa, sb) in [(a, b), (a2, b2)] {
                    assert!((sa - want_a).abs() <= 1e-6 * want_a && (sb - want_b).abs() <= 1e-6 * want_b, "{kernel:?} n {n}: {sa} {sb} vs {want_a} {want_b}");
                }
                // The first sum is the f64 sum of the written f32 values.
                let exact: f64 = p.iter().map(|&q| q as f64).sum();
                assert!((a - exact).abs() <= 1e-12 * exact && (a2 - exact).abs() <= 1e-12 * exact, "{kernel:?} n {n}");
                for (&q, &x) in p.iter().zip(&xs) {
                    if x == f32::NEG_INFINITY {
                        assert_eq!(q, 0.0);
                        continue;
                    }
                    let want = e(x, inv_t) * scale as f64;
                    let rel = 2.5e-7 + 1.2e-7 * (x as f64 - max as f64).abs() * inv_t as f64;
                    assert!((q as f64 - want).abs() <= rel * want, "{kernel:?} {q} vs {want}");
                }
            }
        }
    }

    #[test]
    fn kept_weights_scaled_equal_probs_and_sum() {
        for kernel in Simd::available() {
            let xs = logits(1003, 11);
            let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (mut a, mut b) = (vec![0.0; xs.len()], Vec::new());
            let m = moments_with(kernel, &xs, None, max, 1.7, Some(&mut a));
            assert_eq!(m, moments_with(kernel, &xs, None, max, 1.7, None));
            let r1 = scale_and_sum_with(kernel, &xs, max, 0.25, 0.9, &mut a);
            let r2 = probs_and_sum_with(kernel, &xs, max, 1.7, 0.25, 0.9, &mut b);
            assert_eq!(a, b);
            // The first sum is in f64 lanes in both; the second in f32
            // partial sums in `scale_and_sum`'s vector kernels.
            assert!((r1.0 - r2.0).abs() <= 1e-12 * r2.0 && (r1.1 - r2.1).abs() <= 1e-6 * r2.1, "{kernel:?} {r1:?} vs {r2:?}");
        }
    }

    #[test]
    fn public_entry_points_use_the_active_kernel() {
        let xs = logits(777, 13);
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let aux: Vec<f32> = (0..xs.len()).map(|i| i as f32 * 0.01).collect();
        let k = Simd::active();
        assert_eq!(moments(&xs, Some(&aux), max, 0.9), moments_with(k, &xs, Some(&aux), max, 0.9, None));
        let mut w = Vec::new();
        assert_eq!(moments_keep(&xs, max, 0.9, &mut w), moments_with(k, &xs, None, max, 0.9, None));
        let neg: Vec<f32> = xs.iter().map(|&x| x - max).collect();
        assert_eq!(sum_exp_nonpositive(&neg), sum_exp_nonpositive_with(k, &neg));
    }

    #[test]
    fn nonfill_scan_and_ema_logp_agree_across_kernels() {
        let fill = -18.420_681f32;
        for n in [0usize, 1, 15, 16, 17, 63, 64, 65, 100, 200, 1000, 4099] {
            let mut v = logits(n, 5 + n as u64);
            for (i, x) in v.iter_mut().enumerate() {
                *x = if i % 3 == 0 { fill } else { (*x - 10.0).min(0.0) };
            }
            if n > 40 {
                v[7] = f32::NAN;
            }
            let want_ids: Vec<u32> = (0..n as u32).filter(|&i| !(v[i as usize] == fill)).collect();
            let old = logits(n, 9 + n as u64);
            let mut want_ema = vec![0.0f32; n];
            ema_logp_with(Simd::Portable, &v, &old, &mut want_ema, 1.5, -12.0, fill as f64, 0.3);
            for k in [Simd::Portable, Simd::Avx2, Simd::Avx512] {
                let mut ids = Vec::new();
                let r = nonfill_scan_with(k, &v, fill, &mut ids);
                assert_eq!(ids, want_ids, "{k:?} n = {n}");
                assert_eq!(r.n_above, v.iter().filter(|&&x| x > fill).count());
                assert_eq!(r.has_nan, v.iter().any(|x| x.is_nan()));
                let fin = v.iter().copied().filter(|x| !x.is_nan());
                assert_eq!(r.min, fin.clone().fold(f32::INFINITY, f32::min));
                assert_eq!(r.max, fin.fold(f32::NEG_INFINITY, f32::max));
                let mut got = vec![0.0f32; n];
                ema_logp_with(k, &v, &old, &mut got, 1.5, -12.0, fill as f64, 0.3);
                assert!(got.iter().zip(&want_ema).all(|(a, b)| a.to_bits() == b.to_bits()), "{k:?} n = {n}");
                // Fused with its sum_exp: the same bits as the two calls.
                for shift in [0.0f32, -5.0] {
                    let old2: Vec<f32> = old.iter().map(|&b| b.min(0.0) + shift).collect();
                    let mut fused = vec![0.0f32; n];
                    let (s, m) = ema_logp_sum_with(k, &v, &old2, &mut fused, 1.5, -12.0, fill as f64, 0.3);
                    let mut sep = vec![0.0f32; n];
                    ema_logp_with(k, &v, &old2, &mut sep, 1.5, -12.0, fill as f64, 0.3);
                    let (s2, m2) = sum_exp_nonpositive_with(k, &sep);
                    assert!(fused.iter().zip(&sep).all(|(a, b)| a.to_bits() == b.to_bits()), "{k:?} n = {n}");
                    assert_eq!(s.to_bits(), s2.to_bits(), "{k:?} n = {n}");
                    assert!(m.to_bits() == m2.to_bits() || (m.is_nan() && m2.is_nan()), "{k:?} n = {n}: {m} vs {m2}");
                }
            }
        }
    }

    #[test]
    fn scan_candidates_agree_across_kernels() {
        for n in [0usize, 1, 15, 16, 17, 100, 1000, 4099] {
            let xs = logits(n, 11 + n as u64);
            let mut cands: Vec<TokenData> = xs.iter().enumerate().map(|(i, &l)| TokenData { id: i as i32, logit: l, p: 0.5 }).collect();
            for variant in 0..3 {
                if variant == 1 && n > 40 {
                    cands[3].logit = f32::NAN;
                    cands[n - 2].logit = f32::INFINITY;
                }
                if variant == 2 && n > 40 {
                    cands.swap(5, n - 3);
                }
                let want_ids = cands.iter().enumerate().fold(0u32, |d, (i, t)| d | (t.id as u32 ^ i as u32));
                let want_max = cands.iter().fold(f32::NEG_INFINITY, |m, t| if t.logit > m { t.logit } else { m });
                let want: Vec<f32> = cands.iter().map(|t| if t.logit > f32::NEG_INFINITY { t.logit } else { f32::NEG_INFINITY }).collect();
                for k in [Simd::Portable, Simd::Avx2, Simd::Avx512] {
                    let mut got = vec![1.0f32; n];
                    let (m, d) = scan_candidates_with(k, &cands, &mut got);
                    assert_eq!((m, d), (want_max, want_ids), "{k:?} n = {n} variant {variant}");
                    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{k:?} n = {n} variant {variant}");
                }
            }
        }
    }

    #[test]
    fn grouped_pick_matches_one_block_at_a_time() {
        for n in [0usize, 5, 255, 1023, 1024, 1025, 4096 + 300, 50_000] {
            let mut d = crate::core::DrawStream::from_state(21 + n as u64);
            let p: Vec<f32> = (0..n).map(|i| if i % 5 == 1 { 0.0 } else { (d.next_normal() * 3.0).exp() as f32 }).collect();
            let total: f64 = p.iter().map(|&q| q as f64).sum();
            for k in 0..=300 {
                let target = total * k as f64 / 300.0;
                assert_eq!(pick_f32(&p, target), pick_f32_one_block(&p, target), "n {n} k {k}");
            }
            assert_eq!(pick_f32(&p, total * 2.0), pick_f32_one_block(&p, total * 2.0));
            assert_eq!(pick_f32(&p, -1.0), pick_f32_one_block(&p, -1.0));
        }
    }

    #[test]
    fn pick_matches_sequential() {
        let p: Vec<f32> = (0..5000).map(|i| if i % 3 == 0 { 0.0 } else { (i % 17) as f32 * 1e-4 }).collect();
        let total: f64 = p.iter().map(|&q| q as f64).sum();
        for k in 0..50 {
            let target = total * k as f64 / 50.0;
            let mut run = 0.0;
            let want = p.iter().position(|&q| {
                run += q as f64;
                q > 0.0 && run > target
            });
            assert_eq!(pick_f32(&p, target), want.unwrap());
        }
        assert_eq!(pick_f32(&p, total * 2.0), 4999 - (4999 % 3 == 0) as usize);
        assert_eq!(pick_f32(&[0.0, 0.0], 0.5), 0);
    }
}
