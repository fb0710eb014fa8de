//! Sorting candidates by logit, descending, in linear time: an LSD radix
//! sort on the bits where the logits' keys differ (in digits of up to 12
//! bits; digits every key shares skipped), for the survivors of top-p and
//! typical, which may be thousands. The order is [`cmp_logit_desc`]'s
//! (NaN last); equal logits keep their input order.

use std::cell::RefCell;

use super::math::cmp_logit_desc;
use super::token::TokenData;

/// Below this length a comparison sort is faster.
const RADIX_MIN_LEN: usize = 512;

thread_local! {
    /// The buffers of [`sort_logit_desc`], reused across calls (no
    /// allocation per token once they have grown).
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { items: Vec::new(), records: Vec::new(), sorter: ItemSorter::new() }) };
}

/// The buffers of [`sort_logit_desc`].
struct Scratch {
    /// (key << 32 | position) of each record.
    items: Vec<u64>,
    /// A copy of the records, read by the final permutation.
    records: Vec<TokenData>,
    sorter: ItemSorter,
}

/// The logit of a [`desc_key`] (-0 comes back as +0, NaN as a NaN).
#[inline]
pub(crate) fn logit_of_desc_key(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 { key } else { !key & 0x7FFF_FFFF })
}

/// A key whose ascending order is the logits' descending order, NaN last.
#[inline]
pub(crate) fn desc_key(logit: f32) -> u32 {
    if logit.is_nan() {
        return u32::MAX;
    }
    // +0 and -0 compare equal as floats: give them one key.
    let bits = if logit == 0.0 { 0 } else { logit.to_bits() };
    // Order-preserving map of f32 to u32 (ascending), then reversed.
    let ascending = if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 };
    let desc = !ascending;
    // NaN alone takes u32::MAX; -inf maps below it.
    desc.min(u32::MAX - 1)
}

/// Sorts `data` by logit, descending, NaN last (the order of
/// [`cmp_logit_desc`]; ties keep their input order on long slices).
pub fn sort_logit_desc(data: &mut [TokenData]) {
    if data.len() < RADIX_MIN_LEN {
        data.sort_unstable_by(cmp_logit_desc);
        return;
    }
    SCRATCH.with(|s| {
        let mut scratch = s.borrow_mut();
        let Scratch { items, records, sorter } = &mut *scratch;
        // The payload is the record's position: the records move after.
        let (lo, hi) = keyed_items(data, items, |i, _| i as u32);
        let (sorted, _) = sorter.sort_within(items, lo, hi);
        records.clear();
        records.extend_from_slice(data);
        for (t, &item) in data.iter_mut().zip(sorted) {
            *t = records[item as u32 as usize];
        }
    });
}

/// Writes `src` into `dst` (as long) in [`sort_logit_desc`]'s order, for a
/// caller that recomputes every `p` afterwards: from 512 candidates it
/// sorts (key, id) pairs and writes the records from them in order,
/// without copying the records and gathering them back by position. Each
/// `p` is then unspecified (0 on that path), a -0 logit comes back as +0
/// and a NaN as the canonical NaN. Mirostat v2 keeping all 49152 of
/// SmolLM2's candidates (its mu grown past every surprise) took 407-436
/// us a step instead of 465-468 (the radix passes are most of the rest).
pub(crate) fn sort_logit_desc_into(src: &[TokenData], dst: &mut [TokenData]) {
    assert_eq!(src.len(), dst.len());
    if src.len() < RADIX_MIN_LEN {
        dst.copy_from_slice(src);
        dst.sort_unstable_by(cmp_logit_desc);
        return;
    }
    SCRATCH.with(|s| {
        let mut scratch = s.borrow_mut();
        let Scratch { items, sorter, .. } = &mut *scratch;
        // The payload is the id: key and id are all a record keeps.
        let (lo, hi) = keyed_items(src, items, |_, t| t.id as u32);
        let (sorted, _) = sorter.sort_within(items, lo, hi);
        for (t, &item) in dst.iter_mut().zip(sorted) {
            *t = TokenData { id: item as u32 as i32, logit: logit_of_desc_key((item >> 32) as u32), p: 0.0 };
        }
    });
}

/// Fills `items` with `desc_key(logit) << 32 | payload(position, record)`
/// for the records of `data` (fewer than 2^32 of them) and returns the
/// smallest and largest key, the range [`ItemSorter::sort_within`] sorts.
fn keyed_items(data: &[TokenData], items: &mut Vec<u64>, payload: impl Fn(usize, &TokenData) -> u32) -> (u32, u32) {
    debug_assert!(data.len() < u32::MAX as usize);
    items.clear();
    let (mut lo, mut hi) = (u32::MAX, 0u32);
    items.extend(data.iter().enumerate().map(|(i, t)| {
        let k = desc_key(t.logit);
        lo = lo.min(k);
        hi = hi.max(k);
        (k as u64) << 32 | payload(i, t) as u64
    }));
    (lo, hi)
}

/// The widest digit: wider ones scatter to more places than the store
/// buffer and L1 keep up with.
const MAX_DIGIT_BITS: u32 = 12;

/// An LSD radix sort of 8-byte items `key << 32 | payload` by key
/// (stable: equal keys keep their order), with its buffers. Only the bits
/// where the keys differ are sorted on: keys are taken relative to the
/// smallest, and the digits split the bits of the largest relative key
/// evenly (the survivors of top-p span a few nats: about 24 bits, two
/// passes instead of four).
pub(crate) struct ItemSorter {
    /// The other half of each scatter pass.
    spare: Vec<u64>,
    /// Counts of a digit's values, then their buckets' next free places.
    counts: Vec<u32>,
}

impl ItemSorter {
    pub(crate) const fn new() -> Self {
        Self { spare: Vec::new(), counts: Vec::new() }
    }

    /// Sorts `items`, whose keys lie in `lo..=hi`, by their high 32 bits
    /// and returns the sorted items (`items` itself or the sorter's
    /// buffer) and the other of the two, as long and free for the
    /// caller's use (its content is unspecified): memory the sort has just
    /// written, so in cache, where a buffer of the caller's own may not be.
    pub(crate) fn sort_within<'a>(&'a mut self, items: &'a mut [u64], lo: u32, hi: u32) -> (&'a [u64], &'a mut [u64]) {
        let n = items.len();
        if self.spare.len() < n {
            self.spare.resize(n, 0);
        }
        if n < 2 || lo >= hi {
            return (items, &mut self.spare[..n]);
        }
        let bits = 32 - (hi - lo).leading_zeros();
        // Digits no wider than the slice's own size in bits: counting 2^12
        // buckets for 600 items costs more than another pass.
        let widest = (usize::BITS - n.leading_zeros()).clamp(8, MAX_DIGIT_BITS);
        let passes = bits.div_ceil(widest) as usize;
        let width = bits.div_ceil(passes as u32);
        let buckets = 1usize << width;
        let digit = |item: u64, d: usize| digit_of(item, lo, width, d);
        // The first scatter writes `spare` in random order: where the
        // caller's work evicted it (a model's step, another sampler), each
        // write would wait on its line; one sequential write brings the
        // lines in at streaming speed first (top-p at 151936 in the bench,
        // after llama.cpp's top-p: 182 us instead of 195).
        self.spare[..n].fill(0);
        self.counts.clear();
        self.counts.resize(buckets * passes, 0);
        // Every digit's counts in one read of the items, with the number
        // of digits known to the compiler (an inner loop over them cost
        // as much as the counting).
        match passes {
            1 => count_digits::<1>(items, &mut self.counts, lo, width),
            2 => count_digits::<2>(items, &mut self.counts, lo, width),
            3 => count_digits::<3>(items, &mut self.counts, lo, width),
            _ => count_digits::<4>(items, &mut self.counts, lo, width),
        }
        let spare = &mut self.spare[..n];
        let mut in_items = true;
        let first = items[0];
        for (d, c) in self.counts.chunks_exact_mut(buckets).enumerate() {
            // A digit every key shares (the first key's, then) leaves the
            // order as it is.
            if c[digit(first, d)] as usize == n {
                continue;
            }
            // The counts become each bucket's next free place.
            let mut acc = 0u32;
            for x in c.iter_mut() {
                let size = *x;
                *x = acc;
                acc += size;
            }
            let (src, dst): (&[u64], &mut [u64]) = if in_items { (&*items, &mut *spare) } else { (&*spare, &mut *items) };
            for &item in src {
                // SAFETY: a digit is masked to below `buckets`.
                let at = unsafe { c.get_unchecked_mut(digit(item, d)) };
                // SAFETY: the places of a bucket end where the next
                // bucket's start, all below n: `*at < n`.
                unsafe { *dst.get_unchecked_mut(*at as usize) = item };
                *at += 1;
            }
            in_items = !in_items;
        }
        if in_items {
            (items, &mut self.spare[..n])
        } else {
            (&self.spare[..n], items)
        }
    }
}

/// Digit `d` (of `width` bits, below `1 << width`) of an item's key taken
/// relative to `lo`.
#[inline(always)]
fn digit_of(item: u64, lo: u32, width: u32, d: usize) -> usize {
    ((((item >> 32) as u32).wrapping_sub(lo) >> (width * d as u32)) & ((1u32 << width) - 1)) as usize
}

/// Adds the counts of `PASSES` digits of `width` bits of each item's key
/// (relative to `lo`) to `counts`, digit d's at `counts[d << width..]`
/// (`counts` holds `PASSES << width`).
#[inline(always)]
fn count_digits<const PASSES: usize>(items: &[u64], counts: &mut [u32], lo: u32, width: u32) {
    assert!(counts.len() >= PASSES << width);
    for &item in items {
        for d in 0..PASSES {
            let at = (d << width) + digit_of(item, lo, width, d);
            // SAFETY: `at < (d + 1) << width <= counts.len()`.
            unsafe { *counts.get_unchecked_mut(at) += 1 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(logits: &[f32]) {
        let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        let mut b = a.clone();
        sort_logit_desc(&mut a);
        b.sort_by(cmp_logit_desc);
        let la: Vec<u32> = a.iter().map(|t| desc_key(t.logit)).collect();
        let lb: Vec<u32> = b.iter().map(|t| desc_key(t.logit)).collect();
        assert_eq!(la, lb);
        // Stable on the radix path: equal logits keep the input (id) order.
        for w in a.windows(2).filter(|_| logits.len() >= RADIX_MIN_LEN) {
            if desc_key(w[0].logit) == desc_key(w[1].logit) {
                assert!(w[0].id < w[1].id);
            }
        }
        let mut ids: Vec<i32> = a.iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, (0..logits.len() as i32).collect::<Vec<_>>());
        // The copy without `p`: the same order (ids and keys), on either
        // path, with ids that are not the positions.
        let input: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(1000 + 3 * i as i32, l)).collect();
        let mut by_records = input.clone();
        sort_logit_desc(&mut by_records);
        let mut c = vec![TokenData::new(-1, 0.0); input.len()];
        sort_logit_desc_into(&input, &mut c);
        assert_eq!(c.iter().map(|t| desc_key(t.logit)).collect::<Vec<_>>(), la);
        if logits.len() >= RADIX_MIN_LEN {
            assert_eq!(c.iter().map(|t| t.id).collect::<Vec<_>>(), by_records.iter().map(|t| t.id).collect::<Vec<_>>());
        }
    }

    #[test]
    fn sorts_like_the_comparison_sort_on_every_kind_of_value() {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for n in [0usize, 1, 511, 512, 513, 5000] {
            let v: Vec<f32> = (0..n)
                .map(|i| match next() % 16 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => f32::INFINITY,
                    3 => -0.0,
                    4 => 0.0,
                    5 => (i % 7) as f32,
                    _ => (next() as f32 / u32::MAX as f32 - 0.5) * 40.0,
                })
                .collect();
            check(&v);
        }
        // Keys sharing their high digits (the skipped passes).
        check(&(0..2000).map(|i| 1.0 + i as f32 * 1e-7).collect::<Vec<_>>());
        check(&vec![3.5; 1000]);
    }
}
