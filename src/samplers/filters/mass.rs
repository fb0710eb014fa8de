//! Shared kernels of the filters: softmax weights and moments, and
//! finding the smallest best-ranked set of candidates whose probability
//! mass reaches a target (top-p, typical) without sorting the vocabulary.
//!
//! The selection is O(n): a histogram of probability mass over buckets of
//! "badness" (distance from the best rank, in nats; built in the same pass
//! as the softmax weights where possible) finds the one bucket where the
//! running mass crosses the target; one pass moves the members of that
//! bucket and the ones before it to the front (branch-free compaction
//! per block), a partition of that front puts the crossing bucket last;
//! only that bucket (usually a few dozen candidates) is then ordered
//! exactly, by a mass-weighted quickselect. llama.cpp sorts the
//! vocabulary instead.
//!
//! Sums over the vocabulary accumulate in f64, in independent lanes (one
//! serial chain of f64 adds would cost an add latency per token). The
//! weights written into `p` come from the vectorised exponential of
//! [`crate::core::softmax_weights`]; the moments (entropy) use libm's
//! `expf` (as llama.cpp does) but never on its slow underflow path.

use crate::core::softmax_weights::{exp_moments_blocks, exp_weights_blocks, BLOCK};
use crate::core::TokenData;

/// Histogram buckets per nat of badness.
pub(super) const PER_NAT: f32 = 16.0;
/// Number of buckets: 32 nats of badness (a weight ratio of e^-32 ~ 1e-14);
/// everything worse shares the last bucket.
pub(super) const BUCKETS: usize = 512;
/// At or below this many candidates the histogram is not worth its setup.
const SMALL_N: usize = 256;
/// Windows at or below this size are sorted and scanned directly.
const SMALL_WINDOW: usize = 24;
/// Quickselect rounds before falling back to a sort (guards O(n^2)).
const MAX_ROUNDS: u32 = 64;

/// Writes the unnormalised softmax weight `exp(logit - max)` of every
/// candidate into its `p` and returns the sum of the weights (f64).
/// NaN and -inf logits weigh 0, and so do weights below 1.2e-38 (they
/// cannot move a sum that includes the best candidate's weight, 1). When
/// `max` is +inf the +inf logits weigh 1 and all others 0 (the limit of
/// softmax). `max` must be the largest logit, not -inf.
pub(crate) fn exp_weights(data: &mut [TokenData], max: f32) -> f64 {
    if max == f32::INFINITY {
        return inf_weights(data);
    }
    exp_weights_blocks(data, max, |_, _, _, _| {})
}

/// Like [`exp_weights`] for a finite `max`, and also adds each weight to
/// `hist` at the bucket of its badness `max - logit` (see
/// [`select_from_histogram`]), in the same pass.
pub(crate) fn exp_weights_histogram(data: &mut [TokenData], max: f32, hist: &mut Histogram) -> f64 {
    debug_assert!(max.is_finite());
    exp_weights_blocks(data, max, |z, e, _, _| hist.add_weights(z, e))
}

/// Sums S0 = sum exp(z) and S1 = sum exp(z)·z over the candidates, with
/// z = logit - max, in f64, for a finite `max`. The entropy of
/// softmax(logits) is `ln S0 - S1 / S0` nats, its top probability `1 / S0`
/// and its mean logit `max + S1 / S0`. NaN and -inf logits contribute
/// nothing.
pub(crate) fn exp_moments(data: &[TokenData], max: f32) -> (f64, f64) {
    let mut s = [[0.0f64; 2]; 4];
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        for (t, s) in c.iter().zip(s.iter_mut()) {
            moment_term(t.logit, max, weight_subnormal(t.logit, max), s);
        }
    }
    for t in chunks.remainder() {
        moment_term(t.logit, max, weight_subnormal(t.logit, max), &mut s[0]);
    }
    ((s[0][0] + s[1][0]) + (s[2][0] + s[3][0]), (s[0][1] + s[1][1]) + (s[2][1] + s[3][1]))
}

/// [`exp_moments`] that also stores each weight exp(z) in `p`, with
/// weights below 1.2e-38 flushed to 0 (the vectorised exponential of
/// [`crate::core::softmax_weights`]).
pub(crate) fn exp_moments_weights(data: &mut [TokenData], max: f32) -> (f64, f64) {
    exp_moments_blocks(data, max)
}

/// Adds the weight e = exp(z) and e·z to `s` and returns e, z = logit - max.
#[inline(always)]
fn moment_term(logit: f32, max: f32, e: f32, s: &mut [f64; 2]) -> f32 {
    let z = logit - max;
    s[0] += e as f64;
    // 0 · -inf would be NaN: a -inf logit contributes 0.
    s[1] += if e > 0.0 { e as f64 * z as f64 } else { 0.0 };
    e
}

/// Below this, exp(z) is under f32's smallest normal number (1.2e-38),
/// where libm's expf takes a slow underflow path (errno) and arithmetic on
/// the subnormal result is slow too.
const EXP_NORMAL_MIN: f32 = -87.0;
/// Below this, exp(z) rounds to 0 in f32 (as libm's expf returns).
const EXP_ZERO_BELOW: f32 = -104.0;
/// 32 ln 2.
const SHIFT: f32 = 22.180_71;
/// 2^-32.
const UNSHIFT: f32 = 1.0 / 4_294_967_296.0;

/// exp(logit - max) for logit <= max, NaN and -inf weighing 0, with libm's
/// `expf`, keeping subnormal weights (computed as exp(z + 32 ln 2) ·
/// 2^-32, never on libm's underflow path), for sums
/// whose value may be tiny (the entropy of a near-one-hot distribution).
#[inline(always)]
fn weight_subnormal(logit: f32, max: f32) -> f32 {
    let z = logit - max;
    let zc = z.max(EXP_ZERO_BELOW);
    let tiny = zc < EXP_NORMAL_MIN;
    let e = (if tiny { zc + SHIFT } else { zc }).exp() * if tiny { UNSHIFT } else { 1.0 };
    if z >= EXP_ZERO_BELOW {
        e
    } else {
        0.0
    }
}

/// Weights for a +inf maximum: 1 for the +inf logits, 0 for the others.
fn inf_weights(data: &mut [TokenData]) -> f64 {
    let mut n = 0.0f64;
    for t in data.iter_mut() {
        let inf = t.logit == f32::INFINITY;
        t.p = if inf { 1.0 } else { 0.0 };
        n += t.p as f64;
    }
    n
}

/// Probability mass per bucket of badness (nats), f64, in four lanes: one
/// running f64 sum per bucket would make tokens that fall in the same
/// bucket wait for each other's adds, so consecutive tokens go to
/// different lanes. The lanes are merged when the histogram is read.
pub(crate) struct Histogram([[f64; BUCKETS]; LANES]);

/// Lanes of a [`Histogram`].
const LANES: usize = 4;

impl Histogram {
    pub(crate) fn new() -> Self {
        Self([[0.0; BUCKETS]; LANES])
    }

    /// Adds every candidate's weight `p` at the bucket of its `badness`
    /// (see [`bucket_of`]; lane by position). The bucket indices of a block
    /// are found first, in a loop the compiler vectorises; then the
    /// scattered adds.
    #[inline(always)]
    pub(crate) fn add_block<B: Fn(&TokenData) -> f32>(&mut self, block: &[TokenData], badness: B) {
        let mut idx = [0u32; BLOCK];
        for (i, t) in idx.iter_mut().zip(block) {
            *i = bucket_of(badness(t));
        }
        self.add_indexed(&idx, block.iter().map(|t| t.p));
    }

    /// Adds weights `e` at badness `-z` (a block of
    /// [`exp_weights_blocks`]: `-(logit - max)` is exactly `max - logit`),
    /// lanes by position, as [`add_block`](Self::add_block) would.
    #[inline(always)]
    pub(crate) fn add_weights(&mut self, z: &[f32; BLOCK], e: &[f32; BLOCK]) {
        let mut idx = [0u32; BLOCK];
        for (i, &z) in idx.iter_mut().zip(z) {
            *i = bucket_of(-z);
        }
        self.add_indexed(&idx, e.iter().copied());
    }

    /// Adds the `k`-th weight at bucket `idx[k]`, lane `k mod LANES`.
    #[inline(always)]
    fn add_indexed(&mut self, idx: &[u32; BLOCK], weights: impl Iterator<Item = f32>) {
        for (lane, (&b, w)) in idx.iter().zip(weights).enumerate() {
            self.0[lane & (LANES - 1)][b as usize & (BUCKETS - 1)] += w as f64;
        }
    }

    /// Mass of bucket `b`, all lanes.
    fn mass(&self, b: usize) -> f64 {
        (self.0[0][b] + self.0[1][b]) + (self.0[2][b] + self.0[3][b])
    }
}

/// Whether running mass `acc` has reached `target` (`acc > target` when
/// `strict`, else `acc >= target`).
#[inline]
pub(super) fn reached(acc: f64, target: f64, strict: bool) -> bool {
    if strict {
        acc > target
    } else {
        acc >= target
    }
}

/// Orders candidates by ascending key: lower key = better rank. Keys must
/// never be NaN.
#[inline]
fn by_key<K: PartialOrd>(a: &K, b: &K) -> std::cmp::Ordering {
    a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
}

/// Moves the smallest best-ranked (ascending `key`) set of candidates whose
/// weight (`p`) sum, added to `acc`, reaches `target` to the front of
/// `data`, in no particular order, and returns its size. The reach test is
/// made after adding each candidate, so at least one is taken from a
/// non-empty `data`; when the target is never reached, all of `data` is
/// taken. Equal keys are taken in an unspecified order.
pub(crate) fn select_mass<K, F>(data: &mut [TokenData], key: F, mut acc: f64, target: f64, strict: bool) -> usize
where
    K: PartialOrd + Copy,
    F: Fn(&TokenData) -> K,
{
    let (mut lo, mut hi) = (0usize, data.len());
    let mut rounds = 0u32;
    loop {
        if hi - lo <= SMALL_WINDOW || rounds >= MAX_ROUNDS {
            let window = &mut data[lo..hi];
            window.sort_unstable_by(|a, b| by_key(&key(a), &key(b)));
            for (i, t) in window.iter().enumerate() {
                acc += t.p as f64;
                if reached(acc, target, strict) {
                    return lo + i + 1;
                }
            }
            return hi;
        }
        rounds += 1;
        // Median of three keys as the pivot.
        let mid = lo + (hi - lo) / 2;
        let (a, b, c) = (key(&data[lo]), key(&data[mid]), key(&data[hi - 1]));
        let pivot = if (a <= b) == (b <= c) {
            b
        } else if (b <= a) == (a <= c) {
            a
        } else {
            c
        };
        // Three-way partition of data[lo..hi]: [< pivot | == pivot | > pivot].
        let (mut lt, mut i, mut gt) = (lo, lo, hi);
        let (mut m_lt, mut m_eq) = (0.0f64, 0.0f64);
        while i < gt {
            let k = key(&data[i]);
            if k < pivot {
                m_lt += data[i].p as f64;
                data.swap(lt, i);
                lt += 1;
                i += 1;
            } else if k > pivot {
                gt -= 1;
                data.swap(i, gt);
            } else {
                m_eq += data[i].p as f64;
                i += 1;
            }
        }
        if lt > lo && reached(acc + m_lt, target, strict) {
            hi = lt;
        } else if reached(acc + m_lt + m_eq, target, strict) {
            // The target is crossed inside the group of keys equal to the
            // pivot: every member is as good as the others.
            acc += m_lt;
            for (j, t) in data[lt..gt].iter().enumerate() {
                acc += t.p as f64;
                if reached(acc, target, strict) {
                    return lt + j + 1;
                }
            }
            return gt;
        } else {
            acc += m_lt + m_eq;
            lo = gt;
            if lo >= hi {
                return hi;
            }
        }
    }
}

/// Bucket index of a badness value `d >= 0` (nats); NaN, +inf and anything
/// past the range go to the last bucket. Non-decreasing in `d`, branch-free
/// (a comparison and a truncation the compiler vectorises).
#[inline(always)]
pub(super) fn bucket_of(d: f32) -> u32 {
    let scaled = d * PER_NAT;
    // NaN fails the comparison and takes the last bucket.
    let clamped = if scaled < (BUCKETS - 1) as f32 { scaled } else { (BUCKETS - 1) as f32 };
    // SAFETY: `clamped` is in 0..=BUCKETS-1 (d >= 0), representable in i32.
    unsafe { clamped.max(0.0).to_int_unchecked::<i32>() as u32 }
}

/// Moves every candidate whose bucket of `badness` is at most `last` to
/// the front, keeping the others behind them (the array stays a
/// permutation of itself), and returns how many there are. Block by block:
/// the bucket indices in a loop the compiler vectorises, the offsets of
/// the members written without branches, then one swap per member.
fn gather_to_front<B: Fn(&TokenData) -> f32>(data: &mut [TokenData], badness: &B, last: u32) -> usize {
    const STEP: usize = 64;
    let mut front = 0;
    let mut start = 0;
    while start < data.len() {
        let block = &data[start..(start + STEP).min(data.len())];
        let mut idx = [0u32; STEP];
        for (i, t) in idx.iter_mut().zip(block) {
            *i = bucket_of(badness(t));
        }
        let mut members = [0u8; STEP];
        let mut count = 0;
        for (off, &bi) in idx[..block.len()].iter().enumerate() {
            members[count] = off as u8;
            count += (bi <= last) as usize;
        }
        // Every member before this block is in front already, and the
        // positions from `front` to here hold non-members: each swap keeps
        // that true.
        for &off in &members[..count] {
            data.swap(front, start + off as usize);
            front += 1;
        }
        start += STEP;
    }
    front
}

/// Like [`select_mass`] over all of `data` (starting from mass 0), in O(n):
/// `badness(t)` (>= 0, in nats, NaN for the worst) must be non-decreasing
/// in `key(t)`, so that buckets of badness never split the key order.
pub(crate) fn select_mass_bucketed<K, F, B>(data: &mut [TokenData], key: F, badness: B, target: f64, strict: bool) -> usize
where
    K: PartialOrd + Copy,
    F: Fn(&TokenData) -> K,
    B: Fn(&TokenData) -> f32,
{
    if data.len() <= SMALL_N {
        return select_mass(data, key, 0.0, target, strict);
    }
    let mut hist = Histogram::new();
    for block in data.chunks(BLOCK) {
        hist.add_block(block, &badness);
    }
    select_from_histogram(data, key, badness, &hist, target, strict)
}

/// Whether `data` is small enough for [`select_mass`] alone.
pub(crate) fn is_small(data: &[TokenData]) -> bool {
    data.len() <= SMALL_N
}

/// The selection of [`select_mass_bucketed`] given the histogram of the
/// weights (`p`) of `data` over `badness` (built with [`Histogram::add_block`]
/// from exactly the same badness values).
pub(crate) fn select_from_histogram<K, F, B>(data: &mut [TokenData], key: F, badness: B, hist: &Histogram, target: f64, strict: bool) -> usize
where
    K: PartialOrd + Copy,
    F: Fn(&TokenData) -> K,
    B: Fn(&TokenData) -> f32,
{
    let n = data.len();
    if n == 0 {
        return 0;
    }
    if reached(0.0, target, strict) {
        // Reached by the first candidate whatever it is: take the best one.
        let mut best = 0;
        for i in 1..n {
            if key(&data[i]) < key(&data[best]) {
                best = i;
            }
        }
        data.swap(0, best);
        return 1;
    }
    // The bucket where the running mass first reaches the target. Since 0
    // does not reach it, that bucket has positive mass, so it is not empty.
    // If none does (rounding, with p just below 1), the last bucket is
    // taken as the crossing one and the selection below keeps all of it.
    let mut acc = 0.0f64;
    let mut cross = BUCKETS - 1;
    for b in 0..BUCKETS - 1 {
        let m = hist.mass(b);
        if reached(acc + m, target, strict) {
            cross = b;
            break;
        }
        acc += m;
    }
    // Move the members of the buckets up to the crossing one to the front
    // (usually a small share of the array), then partition that front into
    // [before the crossing bucket | crossing bucket].
    let s = gather_to_front(data, &badness, cross as u32);
    let (mut a, mut b) = (0usize, 0usize);
    for i in 0..s {
        let bi = bucket_of(badness(&data[i])) as usize;
        if bi < cross {
            // Rotate data[i] -> a, data[a] -> b, data[b] -> i.
            let t = data[i];
            data[i] = data[b];
            data[b] = data[a];
            data[a] = t;
            a += 1;
            b += 1;
        } else if bi == cross {
            data.swap(b, i);
            b += 1;
        }
    }
    a + select_mass(&mut data[a..b], key, acc, target, strict)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::core::DrawStream;

    /// Reference: rank by key (ties by id), take until the mass is
    /// reached and at least `want` are taken; returns the sorted ids.
    pub(in crate::samplers::filters) fn reference(data: &[TokenData], key: impl Fn(&TokenData) -> f64, target: f64, strict: bool, want: usize) -> Vec<i32> {
        let mut v = data.to_vec();
        v.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap().then(a.id.cmp(&b.id)));
        let mut acc = 0.0;
        let mut k = v.len();
        for (i, t) in v.iter().enumerate() {
            acc += t.p as f64;
            if reached(acc, target, strict) && i + 1 >= want {
                k = i + 1;
                break;
            }
        }
        let mut ids: Vec<i32> = v[..k].iter().map(|t| t.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn bucketed_selection_equals_sort_and_scan() {
        let mut rng = DrawStream::from_state(99);
        for case in 0..200 {
            let n: usize = [1, 2, 5, 30, 300, 3000, 20_000][case % 7];
            let mut data: Vec<TokenData> =
                (0..n).map(|i| TokenData::new(i as i32, (rng.next_normal() * [0.5, 3.0, 10.0][case % 3]) as f32)).collect();
            let max = data.iter().fold(f32::NEG_INFINITY, |m, t| m.max(t.logit));
            let s = exp_weights(&mut data, max);
            let p = [0.0, 0.1, 0.5, 0.9, 0.95, 0.999][case % 6];
            let strict = case % 2 == 0;
            let key = |t: &TokenData| -(t.logit as f64);
            let want = reference(&data, key, p * s, strict, 1);
            let k = select_mass_bucketed(&mut data, key, |t| max - t.logit, p * s, strict);
            let mut got: Vec<i32> = data[..k].iter().map(|t| t.id).collect();
            got.sort();
            assert_eq!(got.len(), want.len(), "case {case}: n {n} p {p}");
            // Continuous logits: no ties, so the sets are equal.
            assert_eq!(got, want, "case {case}");
        }
    }

    /// The branch-free bucket index equals the plain formula (truncate
    /// d * PER_NAT, capped at the last bucket; NaN in the last bucket).
    #[test]
    fn bucket_of_matches_the_plain_formula() {
        let mut rng = DrawStream::from_state(3);
        let special = [0.0f32, 1e-30, 0.0624, 0.0625, 1.0, 31.9, 31.937_5, 32.0, 1e9, f32::INFINITY, f32::NAN, f32::MAX];
        let random = (0..10_000).map(|_| (rng.next_normal().abs() * 12.0) as f32);
        for d in special.into_iter().chain(random) {
            // f32::min maps NaN to the bound; `as` truncates (d >= 0).
            let plain = (d * PER_NAT).min((BUCKETS - 1) as f32) as usize;
            assert_eq!(bucket_of(d) as usize, plain, "{d}");
        }
    }

    #[test]
    fn equal_keys_are_resolved_by_count() {
        let mut data: Vec<TokenData> = (0..1000).map(|i| TokenData::new(i, 1.0)).collect();
        let s = exp_weights(&mut data, 1.0);
        assert_eq!(s, 1000.0);
        let k = select_mass_bucketed(&mut data, |t| -t.logit, |t| 1.0 - t.logit, 0.25 * s, false);
        assert_eq!(k, 250);
        let k = select_mass_bucketed(&mut data, |t| -t.logit, |t| 1.0 - t.logit, 0.25 * s, true);
        assert_eq!(k, 251);
    }

    #[test]
    fn weights_follow_exp_down_to_underflow() {
        for z in [0.0f32, -1.0, -20.0, -86.9, -87.0, -87.1, -90.0, -100.0, -103.0, -103.9, -104.5, -200.0] {
            let want = (z as f64).exp();
            let got = weight_subnormal(z, 0.0) as f64;
            let ulp = if want < 1.2e-38 { 1.5e-45 } else { want * 1.2e-7 };
            assert!((got - want).abs() <= 2.0 * ulp, "{z}: {got:e} vs {want:e}");
        }
        assert_eq!(weight_subnormal(f32::NAN, 0.0), 0.0);
        assert_eq!(weight_subnormal(f32::NEG_INFINITY, 0.0), 0.0);
    }

    #[test]
    fn weights_of_special_logits() {
        let mut d = vec![TokenData::new(0, f32::NAN), TokenData::new(1, f32::NEG_INFINITY), TokenData::new(2, 0.0)];
        assert_eq!(exp_weights(&mut d, 0.0), 1.0);
        assert_eq!([d[0].p, d[1].p, d[2].p], [0.0, 0.0, 1.0]);
        let mut d = vec![TokenData::new(0, f32::INFINITY), TokenData::new(1, 3.0), TokenData::new(2, f32::INFINITY)];
        assert_eq!(exp_weights(&mut d, f32::INFINITY), 2.0);
        assert_eq!([d[0].p, d[1].p, d[2].p], [1.0, 0.0, 1.0]);
    }
}
