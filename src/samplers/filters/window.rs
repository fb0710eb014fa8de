//! The mass selection of top-p and typical on a large unsorted array, as
//! a window of the logit order: both rank candidates so that the best
//! ones form an interval of logits (top-p: the highest; typical: the
//! closest to a centre logit), and both return their survivors sorted by
//! descending logit. So instead of ranking the vocabulary, the window:
//!
//! 1. estimates how far from the best rank the cut lies, from the weights
//!    of a 32nd of the candidates (runs spread over the array): the
//!    mass of the ranks past each [`mass`](super::mass) histogram bucket,
//!    scaled by 32, is
//!    compared with the mass the cut may leave out (the tail of many small
//!    weights, which a subsample estimates well), and [`MARGIN`] buckets
//!    are added;
//! 2. collects the keys and ids of the candidates inside that logit
//!    interval, one SIMD pass that writes nothing into the array
//!    ([`collect_in`]);
//! 3. sorts only those (radix on the keys, [`ItemSorter`]), computes their
//!    weights, and finds where their running mass in rank order reaches
//!    the target (top-p: a scan from the front; typical: outward from the
//!    centre, binary searches over block prefix sums), which ends on a
//!    window of the sorted members;
//! 4. writes that window over the front of the array, as llama.cpp's
//!    top-p copies its sorted survivors (what lies past them is left as
//!    it is: the caller truncates).
//!
//! When the estimate was too tight (the members' mass does not reach the
//! target, they are fewer than `min_keep`, or typical's scan would pass
//! the interval's edge) the interval widens and the members are collected
//! again: for top-p, once, as far as the subsample says the missing mass
//! lies ([`reach_for_deficit`]); otherwise (and after that) twice as far.
//! The result is exact either way, the estimate only decides the cost.

use std::cell::RefCell;

use super::mass::{bucket_of, reached, BUCKETS, PER_NAT};
use crate::core::fast_exp::exp_nonpositive_with;
use crate::core::logit_scan::ScanKernel;
use crate::core::partition::collect_in;
use crate::core::radix::{desc_key, logit_of_desc_key, ItemSorter};
use crate::core::TokenData;

/// The estimate reads the first [`SAMPLE_RUN`] candidates of every
/// `STRIDE` (a 32nd of the array, spread over all of it, in runs of
/// whole cache lines).
const STRIDE: usize = 512;
/// Candidates per sampled run: 16 records are 3 cache lines.
const SAMPLE_RUN: usize = 16;
/// The share of the candidates the estimate sees.
const SAMPLED: usize = STRIDE / SAMPLE_RUN;
/// Histogram buckets (1/16 nat each) added to the estimated cut.
const MARGIN: usize = 4;
/// From this many candidates the window beats the histogram selection.
pub(crate) const MIN_WINDOW_N: usize = 4096;

thread_local! {
    /// The window's buffers, reused across calls (no allocation per token
    /// once they have grown).
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            keys: Vec::new(),
            ids: Vec::new(),
            items: Vec::new(),
            sorter: ItemSorter::new(),
            prefix: Vec::new(),
        })
    };
}

/// The buffers of [`select_window`].
struct Scratch {
    /// The members' sort keys and ids, in array order.
    keys: Vec<u32>,
    ids: Vec<u32>,
    /// key << 32 | id, to sort.
    items: Vec<u64>,
    sorter: ItemSorter,
    /// Block prefix sums of the weights (typical's scan).
    prefix: Vec<f64>,
}

/// How candidates are ranked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ranking {
    /// Descending logit (top-p).
    Top,
    /// Ascending distance of the logit from `centre` (typical).
    Around { centre: f64 },
}

impl Ranking {
    /// Distance from the best rank, in nats, as f32 for the histogram
    /// buckets; NaN for NaN logits (which [`bucket_of`] puts last).
    #[inline]
    fn badness(self, logit: f32, max: f32) -> f32 {
        match self {
            Ranking::Top => max - logit,
            Ranking::Around { centre } => (logit as f64 - centre).abs() as f32,
        }
    }

    /// The logit interval within `reach` nats of the best rank.
    fn interval(self, max: f32, reach: f32) -> (f32, f32) {
        match self {
            Ranking::Top => (max - reach, f32::INFINITY),
            Ranking::Around { centre } => ((centre - reach as f64) as f32, (centre + reach as f64) as f32),
        }
    }
}

/// Typical's rank of `logit`: its distance from the centre (f64, +inf
/// for non-finite logits).
#[inline]
pub(super) fn distance(centre: f64, logit: f32) -> f64 {
    let d = (logit as f64 - centre).abs();
    if d.is_finite() {
        d
    } else {
        f64::INFINITY
    }
}

/// Selects the best-ranked candidates whose weights exp(logit - `max`)
/// (`max` the largest logit, finite; the weights summing to `sum`) reach
/// `target` (`> target` when `strict`), at least `want` of them
/// (`1 <= want <= data.len()`), as the mass selection of
/// [`select_mass`](super::mass::select_mass) would. Returns `Some(k)` with
/// the survivors written over `data[..k]`, sorted by descending logit
/// (equal logits in array order; -0 logits come back as +0), their `p`
/// their weight divided by `sum`;
/// past `k` the array is left as it was, less what the survivors
/// overwrote. A miss widens the interval and collects again. `None` (the
/// array untouched) only when even every candidate but the NaN logits does
/// not decide the selection: the caller selects another way.
pub(crate) fn select_window(data: &mut [TokenData], ranking: Ranking, max: f32, sum: f64, target: f64, strict: bool, want: usize) -> Option<usize> {
    let n = data.len();
    debug_assert!((1..=n).contains(&want) && max.is_finite());
    let cut = Cut { ranking, max, sum, target, strict, want };
    // The body runs inside the scratch's `with`, whose closure is not
    // inlined: the instruction-set copies are called from it, not around it
    // (a closure does not take its enclosing function's target features).
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        match ScanKernel::active() {
            // SAFETY (both): `active` only returns kernels the CPU can run.
            #[cfg(target_arch = "x86_64")]
            ScanKernel::Avx512 => unsafe { select_window_avx512(s, data, cut) },
            #[cfg(target_arch = "x86_64")]
            ScanKernel::Avx2 => unsafe { select_window_avx2(s, data, cut) },
            _ => select_window_body::<false>(s, data, cut),
        }
    })
}

/// What [`select_window`] selects: its arguments but the array.
#[derive(Debug, Clone, Copy)]
struct Cut {
    ranking: Ranking,
    /// The largest logit (finite).
    max: f32,
    /// The sum of the weights exp(logit - max).
    sum: f64,
    /// The mass the survivors reach (exceed when `strict`).
    target: f64,
    strict: bool,
    /// The fewest survivors.
    want: usize,
}

/// [`select_window_body`] compiled for AVX-512: its loops over the
/// members (keys to items, logits and weights, the survivors' records)
/// vectorise 16 wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn select_window_avx512(s: &mut Scratch, data: &mut [TokenData], cut: Cut) -> Option<usize> {
    select_window_body::<true>(s, data, cut)
}

/// [`select_window_body`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn select_window_avx2(s: &mut Scratch, data: &mut [TokenData], cut: Cut) -> Option<usize> {
    select_window_body::<true>(s, data, cut)
}

/// [`select_window`]'s work, inlined into each instruction set's copy
/// (`FMA`: the members' weights with the fused exponential, as the
/// weights kernels of that instruction set compute them).
#[inline(always)]
fn select_window_body<const FMA: bool>(s: &mut Scratch, data: &mut [TokenData], cut: Cut) -> Option<usize> {
    let Cut { ranking, max, sum, target, strict, want } = cut;
    let n = data.len();
    let mut sampled = [0.0f64; BUCKETS];
    let mut reach = estimate_reach::<FMA>(data, ranking, max, sum - target, want, &mut sampled);
    // Whether a miss already widened by its deficit.
    let mut guided = false;
    loop {
        // The mass this interval's members fall short by (top-p).
        let mut deficit = None;
        let (lo, hi) = ranking.interval(max, reach);
        let m = collect_in(data, lo, hi, &mut s.keys, &mut s.ids);
        if m >= want {
            s.items.clear();
            s.items.extend(s.keys[..m].iter().zip(&s.ids[..m]).map(|(&k, &id)| (k as u64) << 32 | id as u64));
            // The members' keys lie between those of the interval's ends.
            let top = match ranking {
                Ranking::Top => max,
                Ranking::Around { .. } => hi,
            };
            let (sorted, free) = s.sorter.sort_within(&mut s.items, desc_key(top), desc_key(lo));
            // The members' logits and weights, in descending logit order,
            // go in the sort's other buffer (2 m floats), in cache: after
            // a model's step (or llama.cpp's top-p in the bench) a buffer
            // of their own would come from memory.
            // SAFETY: `free` is m u64s, exclusively borrowed: 2 m f32s of
            // the same bytes, aligned (u64's alignment is a multiple of
            // f32's), and every bit pattern is an f32.
            let floats = unsafe { std::slice::from_raw_parts_mut(free.as_mut_ptr().cast::<f32>(), 2 * free.len()) };
            let (logits, weights) = floats.split_at_mut(m);
            for (x, &item) in logits.iter_mut().zip(sorted) {
                *x = logit_of_desc_key((item >> 32) as u32);
            }
            for (w, &x) in weights.iter_mut().zip(logits.iter()) {
                *w = exp_nonpositive_with::<FMA>(x - max);
            }
            let (logits, weights) = (&*logits, &*weights);
            let all = m == n;
            let window = match ranking {
                Ranking::Top => scan_from_top(weights, target, strict, want, all),
                Ranking::Around { centre } => {
                    // Everything within `safe` of the centre is inside
                    // the interval whatever the f32 rounding of its
                    // ends; past it, a candidate left outside could
                    // rank before one inside.
                    let rounding = 1.0 / PER_NAT as f64 + 8.0 * (centre.abs() + reach as f64) * f32::EPSILON as f64;
                    let safe = if all { f64::INFINITY } else { reach as f64 - rounding };
                    scan_outward(logits, weights, &mut s.prefix, centre, safe, target, strict, want, all)
                }
            };
            if let Some((start, end)) = window {
                // The members live in the scratch buffers: the
                // survivors go straight over the array's front.
                let inv = (1.0 / sum) as f32;
                for (t, j) in data.iter_mut().zip(start..end) {
                    *t = TokenData { id: sorted[j] as u32 as i32, logit: logits[j], p: weights[j] * inv };
                }
                return Some(end - start);
            }
            if let Ranking::Top = ranking {
                deficit = Some(target - weights.iter().map(|&w| w as f64).sum::<f64>());
            }
        }
        if m == n || reach == f32::INFINITY {
            return None;
        }
        // One guided step (the subsample's mass past the interval
        // covering the deficit), then doubling: a guess that missed twice
        // is not worth another collect pass of its kind.
        let next = deficit.filter(|_| !guided).and_then(|d| reach_for_deficit(&sampled, reach, d));
        guided |= next.is_some();
        reach = next.unwrap_or_else(|| widen(reach));
    }
}

/// The reach that takes in, past `reach`, the buckets whose subsample
/// mass (times [`SAMPLED`]) covers `deficit`, plus [`MARGIN`] buckets, at
/// least [`MARGIN`] buckets past `reach` (+inf past the histogram's range);
/// `None` when the subsample past `reach` does not cover it. Doubling
/// instead overshoots: from 7 nats, 14 took in 8326 members of 49152 on
/// SmolLM2's logits where 300 more would do.
fn reach_for_deficit(sampled: &[f64; BUCKETS], reach: f32, deficit: f64) -> Option<f32> {
    let first = (reach * PER_NAT) as usize;
    let mut acc = 0.0f64;
    let cut = (first..BUCKETS).find(|&b| {
        acc += SAMPLED as f64 * sampled[b];
        acc >= deficit
    })?;
    let last = (cut + MARGIN).max(first + MARGIN);
    Some(if last >= BUCKETS - 1 { f32::INFINITY } else { (last + 1) as f32 / PER_NAT })
}

/// The next interval's reach after a miss: twice as far, and at least
/// [`MARGIN`] buckets farther; +inf past the histogram's range.
fn widen(reach: f32) -> f32 {
    let next = (2.0 * reach).max(reach + MARGIN as f32 / PER_NAT);
    if next >= (BUCKETS - 1) as f32 / PER_NAT {
        f32::INFINITY
    } else {
        next
    }
}

/// Top-p's scan of the members' weights in descending logit order: the
/// window `0..k` of the first `k >= want` whose mass reaches `target`;
/// all of them when that never happens and they are `all` the array,
/// else `None`.
fn scan_from_top(weights: &[f32], target: f64, strict: bool, want: usize, all: bool) -> Option<(usize, usize)> {
    // Whole blocks while the target stays out of reach (their sums add
    // in independent lanes), then one by one inside the block that
    // reaches it.
    const STEP: usize = 16;
    let mut acc = 0.0f64;
    let mut start = 0;
    for block in weights.chunks_exact(STEP) {
        let mut lanes = [0.0f64; 4];
        for quad in block.chunks_exact(4) {
            for (l, &e) in lanes.iter_mut().zip(quad) {
                *l += e as f64;
            }
        }
        let sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        if reached(acc + sum, target, strict) {
            break;
        }
        acc += sum;
        start += STEP;
    }
    let k = weights[start..].iter().position(|&e| {
        acc += e as f64;
        reached(acc, target, strict)
    });
    match k {
        Some(i) => Some((0, (start + i + 1).max(want))),
        None => all.then_some((0, weights.len())),
    }
}

/// Typical's scan of members sorted by descending logit: takes them in
/// ascending distance from `centre` (the upper side from the split
/// backwards, the lower side forwards; the upper one first on a tie) until
/// their mass reaches `target` and at least `want` are taken. Returns the
/// window `start..end`, or `None` when a member farther than `safe` would
/// be taken, or the members run out before the target unless they are
/// `all` the array.
///
/// Taking the members one at a time is a chain of dependent loads and
/// compares (about 2 ns a member). Instead the number taken is binary
/// searched: the `t` nearest are the nearest of two sorted sequences (a
/// binary search for how many come from each side), and their mass is a
/// difference of prefix sums (f64, from sums of blocks of [`PREFIX_BLOCK`]
/// weights kept in `prefix`).
#[allow(clippy::too_many_arguments)]
fn scan_outward(
    logits: &[f32],
    weights: &[f32],
    prefix: &mut Vec<f64>,
    centre: f64,
    safe: f64,
    target: f64,
    strict: bool,
    want: usize,
    all: bool,
) -> Option<(usize, usize)> {
    let m = logits.len();
    let split = logits.partition_point(|&x| x as f64 >= centre);
    let (uppers, lowers) = (split, m - split);
    // The i-th nearest of each side.
    let up = |i: usize| distance(centre, logits[split - 1 - i]);
    let down = |j: usize| distance(centre, logits[split + j]);
    block_prefix(weights, prefix);
    let mass_before = |i: usize| {
        let b = i / PREFIX_BLOCK;
        prefix[b] + weights[b * PREFIX_BLOCK..i].iter().map(|&w| w as f64).sum::<f64>()
    };
    // How many of the `t` nearest lie on the upper side: the fewest for
    // which the lower side's last taken is nearer than the upper side's
    // next (a tie goes to the upper side).
    let from_upper = |t: usize| {
        let (mut lo, mut hi) = (t.saturating_sub(lowers), t.min(uppers));
        while lo < hi {
            let a = lo + (hi - lo) / 2;
            let b = t - a;
            if b == 0 || a == uppers || down(b - 1) < up(a) {
                hi = a;
            } else {
                lo = a + 1;
            }
        }
        lo
    };
    let window = |t: usize| {
        let a = from_upper(t);
        (split - a, split + t - a)
    };
    let mass = |t: usize| {
        let (start, end) = window(t);
        mass_before(end) - mass_before(start)
    };
    // The fewest `t >= want` whose mass reaches the target (the mass grows
    // with t); all of them when none does and they are the whole array.
    let (mut lo, mut hi) = (want, m);
    if !reached(mass(m), target, strict) {
        if !all {
            return None;
        }
        lo = m;
    }
    while lo < hi {
        let t = lo + (hi - lo) / 2;
        if reached(mass(t), target, strict) {
            hi = t;
        } else {
            lo = t + 1;
        }
    }
    let (start, end) = window(lo);
    // The farthest taken: the first of the upper side or the last of the
    // lower one.
    let farthest = f64::max(if start < split { up(split - 1 - start) } else { 0.0 }, if end > split { down(end - split - 1) } else { 0.0 });
    (farthest <= safe).then_some((start, end))
}

/// Weights per block of [`scan_outward`]'s prefix sums.
const PREFIX_BLOCK: usize = 16;

/// `prefix[b]` = the sum (f64) of `weights[..b * PREFIX_BLOCK]`, for every
/// block start up to the end.
fn block_prefix(weights: &[f32], prefix: &mut Vec<f64>) {
    prefix.clear();
    let mut acc = 0.0f64;
    prefix.push(acc);
    for block in weights.chunks(PREFIX_BLOCK) {
        let mut lanes = [0.0f64; 4];
        for quad in block.chunks(4) {
            for (l, &w) in lanes.iter_mut().zip(quad) {
                *l += w as f64;
            }
        }
        acc += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        prefix.push(acc);
    }
}

/// The distance from the best rank (nats) within which the selection
/// should end: the subsample's mass past each bucket, times [`SAMPLED`],
/// is compared with `left_out` (the mass the cut may leave out); the
/// first bucket whose tail exceeds it is where the cut is expected. When
/// more than one survivor is wanted, the cut is also put no earlier than
/// where the subsample counts twice `want` candidates. When no bucket's
/// tail exceeds `left_out` (the subsample missed the few heavy candidates
/// of a peaked distribution), the cut is expected before the best sampled
/// candidate's bucket. Then [`MARGIN`] buckets are added; +inf when that
/// reaches the last bucket. The subsample's weight per bucket is left in
/// `mass`, for [`reach_for_deficit`].
#[inline(always)]
fn estimate_reach<const FMA: bool>(data: &[TokenData], ranking: Ranking, max: f32, left_out: f64, want: usize, mass: &mut [f64; BUCKETS]) -> f32 {
    const GROUP: usize = 64;
    mass.fill(0.0);
    let mut count = [0u32; BUCKETS];
    // A group of sampled logits at a time, so that the exponentials and
    // the bucket indices run in loops the compiler vectorises.
    let (mut x, mut e, mut b) = ([0.0f32; GROUP], [0.0f32; GROUP], [0u32; GROUP]);
    let mut samples = data.chunks(STRIDE).flat_map(|c| &c[..c.len().min(SAMPLE_RUN)]).map(|t| t.logit).peekable();
    while samples.peek().is_some() {
        let mut len = 0;
        for (slot, logit) in x.iter_mut().zip(&mut samples) {
            *slot = logit;
            len += 1;
        }
        for ((e, b), &x) in e.iter_mut().zip(b.iter_mut()).zip(&x) {
            let w = exp_nonpositive_with::<FMA>(x - max);
            // NaN logits (a NaN weight) weigh nothing.
            *e = if w > 0.0 { w } else { 0.0 };
            *b = bucket_of(ranking.badness(x, max));
        }
        for (&e, &b) in e[..len].iter().zip(&b[..len]) {
            mass[b as usize] += e as f64;
            count[b as usize] += 1;
        }
    }
    let mut tail = 0.0f64;
    // When the whole subsample weighs less than the cut may leave out,
    // the mass lies in a few best candidates that the subsample missed (a
    // peaked distribution): the cut is expected before the best sampled
    // candidate, so the interval reaches that far. (From bucket 0 the
    // interval would double, a collect pass each time: five passes for a
    // nucleus 5 nats deep.)
    let mut cut = count.iter().position(|&c| c > 0).unwrap_or(0);
    for b in (0..BUCKETS).rev() {
        tail += SAMPLED as f64 * mass[b];
        if tail > left_out {
            cut = b;
            break;
        }
    }
    if want > 1 {
        let mut head = 0usize;
        for (b, &c) in count.iter().enumerate() {
            head += SAMPLED * c as usize;
            if head >= 2 * want {
                cut = cut.max(b);
                break;
            }
        }
    }
    let last = cut + MARGIN;
    if last >= BUCKETS - 1 {
        f32::INFINITY
    } else {
        (last + 1) as f32 / PER_NAT
    }
}

#[cfg(test)]
mod tests {
    use super::super::mass::tests::reference;
    use super::*;
    use crate::core::DrawStream;

    fn weights(logits: &[f32]) -> (Vec<TokenData>, f32, f64) {
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
        let data: Vec<TokenData> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let mut t = TokenData::new(i as i32, l);
                // The exponential of the active kernel (fused on AVX2 and
                // AVX-512), as the window computes its members' weights.
                let fused = ScanKernel::active() != ScanKernel::Portable;
                t.p = if l.is_nan() {
                    0.0
                } else if fused {
                    exp_nonpositive_with::<true>(l - max)
                } else {
                    exp_nonpositive_with::<false>(l - max)
                };
                t
            })
            .collect();
        let sum = data.iter().map(|t| t.p as f64).sum();
        (data, max, sum)
    }

    /// On continuous logits (no ties) of many shapes, the window keeps
    /// exactly the reference's survivors, sorted by descending logit,
    /// widening where the estimate missed.
    #[test]
    fn window_equals_rank_and_scan() {
        let mut rng = DrawStream::from_state(41);
        let cases = 240;
        for case in 0..cases {
            let n = [4096usize, 5000, 20_000, 50_000][case % 4];
            let scale = [0.3, 1.0, 3.0, 10.0, 30.0][case % 5];
            let mut logits: Vec<f32> = (0..n).map(|_| (rng.next_normal() * scale) as f32).collect();
            if case % 6 == 0 {
                // A peaked head: one token far ahead.
                logits[7] = 40.0;
            }
            let (input, max, sum) = weights(&logits);
            let p = [0.0, 0.1, 0.5, 0.9, 0.95, 0.999][case % 6];
            let strict = case % 2 == 1;
            let want = [1, 1, 3, 200][case % 4];
            let typical = case % 3 == 0;
            let centre = if typical { input.iter().filter(|t| t.p > 0.0).map(|t| t.p as f64 * t.logit as f64).sum::<f64>() / sum } else { 0.0 };
            let ranking = if typical { Ranking::Around { centre } } else { Ranking::Top };
            let key = |t: &TokenData| if typical { distance(centre, t.logit) } else { -(t.logit as f64) };
            let want_ids = reference(&input, key, p * sum, strict, want);
            let mut data = input.clone();
            let Some(k) = select_window(&mut data, ranking, max, sum, p * sum, strict, want) else {
                panic!("case {case}: declined without NaN logits");
            };
            let inv = (1.0 / sum) as f32;
            for t in &data[..k] {
                assert_eq!(t.p, input[t.id as usize].p * inv, "case {case}: p of {}", t.id);
                assert_eq!(t.logit, input[t.id as usize].logit);
            }
            assert!(data[..k].windows(2).all(|w| w[0].logit >= w[1].logit), "case {case}: not sorted");
            let mut ids: Vec<i32> = data[..k].iter().map(|t| t.id).collect();
            ids.sort();
            assert_eq!(ids, want_ids, "case {case}: n {n} scale {scale} p {p} typical {typical}");
        }
    }

    /// The one-member-at-a-time merge the binary searches replaced.
    #[allow(clippy::too_many_arguments)]
    fn scan_outward_stepwise(
        logits: &[f32],
        weights: &[f32],
        centre: f64,
        safe: f64,
        target: f64,
        strict: bool,
        want: usize,
        all: bool,
    ) -> Option<(usize, usize)> {
        let m = logits.len();
        let split = logits.partition_point(|&x| x as f64 >= centre);
        let (mut start, mut end) = (split, split);
        let mut acc = 0.0f64;
        while end - start < m {
            // The next member's distance on each side, +inf past the ends (and
            // for -inf logits, which only the lower side holds).
            let up = if start > 0 { distance(centre, logits[start - 1]) } else { f64::INFINITY };
            let down = if end < m { distance(centre, logits[end]) } else { f64::INFINITY };
            // Which side comes next is a coin flip the branch predictor loses:
            // the step below selects instead of branching.
            let take_up = start > 0 && up <= down;
            let d = if take_up { up } else { down };
            if d > safe {
                return None;
            }
            let at = if take_up { start - 1 } else { end };
            acc += weights[at] as f64;
            start -= take_up as usize;
            end += !take_up as usize;
            if reached(acc, target, strict) && end - start >= want {
                return Some((start, end));
            }
        }
        all.then_some((start, end))
    }

    /// The binary-searched outward scan ends where the merge one member at
    /// a time ends: on every side split, tie, `want`, `safe` and target.
    #[test]
    fn outward_search_equals_the_stepwise_merge() {
        let mut rng = DrawStream::from_state(77);
        let mut prefix = Vec::new();
        for case in 0..3000 {
            let m = 1 + case % 97;
            // Few distinct values: ties between and within the sides.
            let mut logits: Vec<f32> = (0..m).map(|_| ((rng.next_normal() * 2.0) as f32 * 4.0).round() / 4.0).collect();
            if case % 7 == 0 {
                logits[m - 1] = f32::NEG_INFINITY;
            }
            logits.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let weights: Vec<f32> = logits.iter().map(|&x| if x.is_finite() { (x / 4.0).exp() } else { 0.0 }).collect();
            let total: f64 = weights.iter().map(|&w| w as f64).sum();
            let centre = [0.0, 0.25, 0.1, -1.0, 3.0][case % 5];
            let safe = [f64::INFINITY, 1.0, 2.5][case % 3];
            let target = total * [0.0, 0.3, 0.5, 0.9, 1.0, 1.5][case % 6];
            let want = 1 + case % 5;
            let (strict, all) = (case % 2 == 0, case % 4 < 2);
            if want > m {
                continue;
            }
            let got = scan_outward(&logits, &weights, &mut prefix, centre, safe, target, strict, want, all);
            let expected = scan_outward_stepwise(&logits, &weights, centre, safe, target, strict, want, all);
            assert_eq!(got, expected, "case {case}: {logits:?} centre {centre} target {target} want {want}");
        }
    }

    /// A subsample that misses the heavy tokens still finds them: a cut
    /// within the top few of a flat tail.
    #[test]
    fn the_estimate_covers_a_head_the_subsample_missed() {
        let mut logits = vec![0.0f32; 10_000];
        // Positions 1..=5: never multiples of the stride.
        for l in &mut logits[1..=5] {
            *l = 12.0;
        }
        let (mut data, max, sum) = weights(&logits);
        let k = select_window(&mut data, Ranking::Top, max, sum, 0.9 * sum, false, 1).expect("covered");
        assert_eq!(k, 5);
        assert!(data[..5].iter().all(|t| t.logit == 12.0));
    }

    /// On a peaked distribution the subsample weighs less than the cut
    /// may leave out: the first interval reaches the best sampled
    /// candidate, which covers the nucleus (before, it started 1/16 nat
    /// wide and doubled, a collect pass each time).
    #[test]
    fn a_peaked_estimate_reaches_the_best_sampled_candidate() {
        let mut rng = DrawStream::from_state(23);
        let mut logits: Vec<f32> = (0..50_000).map(|_| rng.next_normal() as f32).collect();
        // The nucleus: 30, 29, ..., 25 at positions the subsample skips
        // (it reads the first 16 of every 512).
        for (j, l) in logits[100..106].iter_mut().enumerate() {
            *l = 30.0 - j as f32;
        }
        let (mut data, max, sum) = weights(&logits);
        let best_sampled = data.chunks(STRIDE).flat_map(|c| &c[..c.len().min(SAMPLE_RUN)]).fold(f32::NEG_INFINITY, |m, t| m.max(t.logit));
        let mut sampled = [0.0f64; BUCKETS];
        let reach = estimate_reach::<false>(&data, Ranking::Top, max, 0.05 * sum, 1, &mut sampled);
        assert!(reach >= max - best_sampled, "reach {reach}, best sampled {} below the max", max - best_sampled);
        assert!(sampled.iter().sum::<f64>() > 0.0);
        // The nucleus (weights 1, e^-1, e^-2 of 1.58) lies inside.
        let k = select_window(&mut data, Ranking::Top, max, sum, 0.95 * sum, false, 1).expect("covered");
        assert_eq!(data[..k].iter().map(|t| t.id).collect::<Vec<_>>(), vec![100, 101, 102]);
    }

    /// After a miss, the next reach takes in the subsample's buckets past
    /// the interval until they cover the deficit, plus the margin.
    #[test]
    fn a_miss_widens_to_cover_the_deficit() {
        let mut sampled = [0.0f64; BUCKETS];
        // 1/16-nat buckets: 0.01 at 8 nats, 0.02 at 9 nats.
        sampled[128] = 0.01;
        sampled[144] = 0.02;
        let s = SAMPLED as f64;
        // Reach 7 nats (bucket 112 onwards).
        assert_eq!(reach_for_deficit(&sampled, 7.0, 0.5 * s * 0.01), Some((128 + MARGIN + 1) as f32 / PER_NAT));
        assert_eq!(reach_for_deficit(&sampled, 7.0, s * 0.02), Some((144 + MARGIN + 1) as f32 / PER_NAT));
        // More than the subsample holds past the interval: doubling instead.
        assert_eq!(reach_for_deficit(&sampled, 7.0, s * 0.04), None);
        // At least the margin past the interval.
        assert_eq!(reach_for_deficit(&sampled, 8.0, s * 0.001), Some((128 + MARGIN + 1) as f32 / PER_NAT));
        sampled[BUCKETS - 2] = 1.0;
        assert_eq!(reach_for_deficit(&sampled, 10.0, s * 0.5), Some(f32::INFINITY));
    }
}
