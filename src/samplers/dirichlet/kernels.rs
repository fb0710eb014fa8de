//! Full-vocabulary passes of the sampler, written to vectorise: f32
//! logits, [`exp_nonpositive`] (relative error < 2e-7) instead of libm's
//! f64 `exp`, sums accumulated in f64 (in the AVX2 kernels, partial sums
//! of 16 values per lane in f32 first, see `avx2`). On x86-64 with AVX2 and FMA (checked
//! at run time) the same code is compiled with those features and uses
//! [`exp_nonpositive_fma`]; elsewhere the portable build.
//!
//! Numeric error against the f64 libm versions (measured in the tests of
//! this module and `tests/dirichlet.rs`): entropies and normalisers agree
//! to about 1e-7 relative; each exponential is within 2e-7 relative, and
//! the f32 scaled logit `(x - max) / T` adds a rounding of 6e-8 relative
//! to it.

use crate::core::fast_exp::{exp_nonpositive, exp_nonpositive_fma, EXP_FLOOR};

/// Scaled logits below this give exp = 0 and are clamped here so that
/// `0 * w` stays 0 (not NaN for -inf).
const W_CLAMP: f32 = EXP_FLOOR - 16.0;
/// Elements per block of the portable loops (one AVX register of f32).
const LANES: usize = 8;

#[inline(always)]
fn exp_np<const FMA: bool>(x: f32) -> f32 {
    if FMA {
        exp_nonpositive_fma(x)
    } else {
        exp_nonpositive(x)
    }
}

macro_rules! dispatch {
    ($impl:ident, $avx:path, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        #[inline]
        fn run($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features the kernel was compiled for.
                    return unsafe { $avx($($arg),*) };
                }
            }
            $impl::<false>($($arg),*)
        }
    };
}

/// Raw moments of `w = (x - max) * inv_t` under the unnormalised weights
/// `e = exp(w)`: `[sum e, sum e w, sum e w^2, sum e w^3]`, and
/// `sum e * aux` when `aux` is given (same length as `xs`). `-inf` entries
/// weigh 0; `max` must be at least every entry.
pub fn moments(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32) -> [f64; 5] {
    moments_go(xs, aux, max, inv_t, None)
}

/// [`moments`] (without `aux`), also writing the weights `e` to `out`.
pub fn moments_keep(xs: &[f32], max: f32, inv_t: f32, out: &mut Vec<f32>) -> [f64; 5] {
    out.clear();
    out.resize(xs.len(), 0.0);
    moments_go(xs, None, max, inv_t, Some(out))
}

fn moments_go(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5] {
    mod m {
        use super::*;
        dispatch!(moments_impl, avx2::moments, (xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5]);
        pub(super) fn go(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, out: Option<&mut [f32]>) -> [f64; 5] {
            run(xs, aux, max, inv_t, out)
        }
    }
    if let Some(a) = aux {
        assert_eq!(a.len(), xs.len());
    }
    if let Some(o) = &out {
        assert_eq!(o.len(), xs.len());
    }
    m::go(xs, aux, max, inv_t, out)
}

#[inline(always)]
fn moments_block<const FMA: bool, const AUX: bool>(acc: &mut [[f64; LANES]; 5], x: &[f32], a: &[f32], max: f32, inv_t: f32) {
    let mut e = [0.0f32; LANES];
    let mut w = [0.0f32; LANES];
    for j in 0..LANES {
        let wj = (x[j] - max) * inv_t;
        let wj = if wj > W_CLAMP { wj } else { W_CLAMP };
        w[j] = wj;
        e[j] = exp_np::<FMA>(wj);
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
            *o = exp_np::<FMA>(if w > W_CLAMP { w } else { W_CLAMP });
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
    mod m {
        use super::*;
        dispatch!(sum_exp_impl, avx2::sum_exp, (v: &[f32]) -> (f64, f32));
        pub(super) fn go(v: &[f32]) -> (f64, f32) {
            run(v)
        }
    }
    m::go(v)
}

#[inline(always)]
fn sum_exp_impl<const FMA: bool>(v: &[f32]) -> (f64, f32) {
    let mut acc = [0.0f64; LANES];
    let mut mx = [f32::NEG_INFINITY; LANES];
    let n_full = v.len() / LANES * LANES;
    for x in v[..n_full].chunks_exact(LANES) {
        for j in 0..LANES {
            acc[j] += exp_np::<FMA>(x[j]) as f64;
            mx[j] = if x[j] > mx[j] { x[j] } else { mx[j] };
        }
    }
    let mut s: f64 = acc.iter().sum();
    let mut m = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in &v[n_full..] {
        s += exp_np::<FMA>(x) as f64;
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
    mod m {
        use super::*;
        dispatch!(probs_impl, avx2::probs, (xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64));
        pub(super) fn go(xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
            run(xs, max, inv_t, scale, inv_t2, out)
        }
    }
    out.clear();
    out.resize(xs.len(), 0.0);
    m::go(xs, max, inv_t, scale, inv_t2, out)
}

#[inline(always)]
fn probs_impl<const FMA: bool>(xs: &[f32], max: f32, inv_t: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    let mut a = [0.0f64; LANES];
    let mut b = [0.0f64; LANES];
    let n_full = xs.len() / LANES * LANES;
    for (x, o) in xs[..n_full].chunks_exact(LANES).zip(out[..n_full].chunks_exact_mut(LANES)) {
        for j in 0..LANES {
            let d = x[j] - max;
            let p = exp_np::<FMA>(d * inv_t) * scale;
            o[j] = p;
            a[j] += p as f64;
            b[j] += exp_np::<FMA>(d * inv_t2) as f64;
        }
    }
    let (mut sa, mut sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    for (x, o) in xs[n_full..].iter().zip(out[n_full..].iter_mut()) {
        let d = x - max;
        let p = exp_np::<FMA>(d * inv_t) * scale;
        *o = p;
        sa += p as f64;
        sb += exp_np::<FMA>(d * inv_t2) as f64;
    }
    (sa, sb)
}

/// [`probs_and_sum`] when `out` already holds the weights
/// `exp((x_i - max) * inv_t)` (from [`moments_keep`]): scales them in place
/// and returns the same two sums.
pub fn scale_and_sum(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    mod m {
        use super::*;
        dispatch!(scale_impl, avx2::scale, (xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64));
        pub(super) fn go(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
            run(xs, max, scale, inv_t2, out)
        }
    }
    assert_eq!(xs.len(), out.len());
    m::go(xs, max, scale, inv_t2, out)
}

#[inline(always)]
fn scale_impl<const FMA: bool>(xs: &[f32], max: f32, scale: f32, inv_t2: f32, out: &mut [f32]) -> (f64, f64) {
    let (mut sa, mut sb) = (0.0f64, 0.0f64);
    for (o, &x) in out.iter_mut().zip(xs) {
        *o *= scale;
        sa += *o as f64;
        sb += exp_np::<FMA>((x - max) * inv_t2) as f64;
    }
    (sa, sb)
}

/// Index where the running sum of `p` first exceeds `target` (summed in
/// blocks: the block is found from block sums, then scanned); zero entries
/// are never chosen; the last positive entry when the sum never exceeds
/// it, 0 when there is none.
pub fn pick_f32(p: &[f32], target: f64) -> usize {
    const BLOCK: usize = 256;
    let mut run = 0.0f64;
    for (b, chunk) in p.chunks(BLOCK).enumerate() {
        let mut lanes = [0.0f64; LANES];
        let n_full = chunk.len() / LANES * LANES;
        for c in chunk[..n_full].chunks_exact(LANES) {
            for j in 0..LANES {
                lanes[j] += c[j] as f64;
            }
        }
        let mut s: f64 = lanes.iter().sum();
        s += chunk[n_full..].iter().map(|&q| q as f64).sum::<f64>();
        if run + s > target {
            for (i, &q) in chunk.iter().enumerate() {
                if q > 0.0 {
                    run += q as f64;
                    if run > target {
                        return b * BLOCK + i;
                    }
                }
            }
        } else {
            run += s;
        }
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

/// The kernels in AVX2 and FMA intrinsics (the portable loops above do
/// not vectorise well: their f32 -> f64 widening defeats the compiler).
/// The exponential is [`exp_nonpositive_fma`]'s algorithm, eight lanes at
/// a time (the tests check they agree bit for bit). Sums: in f32 lanes
/// flushed to f64 every 128 elements (each lane adds 16 values: relative
/// error of a partial sum about 1e-7 at worst, unbiased; 3e-10 measured on
/// a whole 262144-token sum), except the sum of the written probabilities,
/// kept in f64 lanes so that the remainder mass `tot - sum(support)` is
/// exact for the same f32 values.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{EXP_FLOOR, W_CLAMP};

    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;

    /// exp(x) for x <= 0, as `exp_nonpositive_fma`, on 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp8(x: __m256) -> __m256 {
        let in_range = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXP_FLOOR));
        let xc = _mm256_blendv_ps(_mm256_set1_ps(EXP_FLOOR), x, in_range);
        let shifted = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(ROUND));
        let k = _mm256_sub_ps(shifted, _mm256_set1_ps(ROUND));
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), xc));
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_2e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
        let e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0));
        let k_int = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B40_0000));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k_int, _mm256_set1_epi32(127))));
        _mm256_and_ps(_mm256_mul_ps(e, scale), in_range)
    }

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
    pub(super) unsafe fn moments(xs: &[f32], aux: Option<&[f32]>, max: f32, inv_t: f32, mut out: Option<&mut [f32]>) -> [f64; 5] {
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
                let e = exp8(w);
                if let Some(o) = out.as_deref_mut() {
                    store(o, i, e);
                }
                p0 = _mm256_add_ps(p0, e);
                let ew = _mm256_mul_ps(e, w);
                p1 = _mm256_add_ps(p1, ew);
                let ew2 = _mm256_mul_ps(ew, w);
                p2 = _mm256_add_ps(p2, ew2);
                p3 = _mm256_fmadd_ps(ew2, w, p3);
                if let Some(a) = aux {
                    p4 = _mm256_fmadd_ps(e, load(a, i, 0.0), p4);
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
                part = _mm256_add_ps(part, exp8(x));
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
                part = _mm256_add_ps(part, exp8(_mm256_mul_ps(d, vinv2)));
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
            let p = _mm256_mul_ps(exp8(_mm256_mul_ps(d, vinv)), vscale);
            widen_add(&mut a, p);
            widen_add(&mut b, exp8(_mm256_mul_ps(d, vinv2)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(n: usize, seed: u64) -> Vec<f32> {
        let mut d = crate::core::DrawStream::from_state(seed);
        (0..n).map(|i| if i % 97 == 5 { f32::NEG_INFINITY } else { (d.next_normal() * 3.0) as f32 }).collect()
    }

    #[test]
    fn moments_match_f64() {
        for &n in &[1usize, 7, 8, 9, 1000, 49_153] {
            let xs = logits(n, n as u64);
            let aux: Vec<f32> = (0..n).map(|i| -(i as f32) * 1e-3).collect();
            let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for &t in &[0.3f64, 0.8, 1.0, 2.5] {
                let got = moments(&xs, Some(&aux), max, (1.0 / t) as f32);
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
                    assert!((got[k] - want[k]).abs() <= 1e-6 * scale + 1e-300, "n {n} T {t} k {k}: {} vs {}", got[k], want[k]);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp8_matches_the_scalar_fma_exp_bit_for_bit() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        let mut x = 0.0f32;
        while x > -90.0 {
            let v = [x, x * 0.5, x * 0.25, -0.0, f32::NEG_INFINITY, f32::NAN, x - 1e-3, x * 0.9];
            let mut got = [0.0f32; 8];
            // SAFETY: the features were checked above.
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(got.as_mut_ptr(), avx2::exp8(_mm256_loadu_ps(v.as_ptr())));
            }
            for (g, &xv) in got.iter().zip(&v) {
                assert_eq!(g.to_bits(), exp_nonpositive_fma(xv).to_bits(), "x = {xv}");
            }
            x -= 0.0371;
        }
    }

    #[test]
    fn kept_weights_scaled_equal_probs_and_sum() {
        let xs = logits(1003, 11);
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let m = moments_keep(&xs, max, 1.7, &mut a);
        assert_eq!(m, moments(&xs, None, max, 1.7));
        let r1 = scale_and_sum(&xs, max, 0.25, 0.9, &mut a);
        let r2 = probs_and_sum(&xs, max, 1.7, 0.25, 0.9, &mut b);
        assert_eq!(a, b);
        // The first sum is in f64 lanes in both; the second in f32 partial
        // sums in `scale_and_sum`'s AVX2 kernel.
        assert!((r1.0 - r2.0).abs() <= 1e-12 * r2.0 && (r1.1 - r2.1).abs() <= 1e-6 * r2.1, "{r1:?} vs {r2:?}");
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
