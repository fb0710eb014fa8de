//! Sorting candidates by logit, descending, in linear time: an LSD radix
//! sort on the logit's bits (four 8-bit digits, digits every key shares
//! skipped), for the survivors of top-p and typical, which may be
//! thousands. The order is [`cmp_logit_desc`]'s (NaN last); equal logits
//! keep their input order.

use std::cell::RefCell;

use super::math::cmp_logit_desc;
use super::token::TokenData;

/// Below this length a comparison sort is faster.
const RADIX_MIN_LEN: usize = 512;

thread_local! {
    /// The scatter buffer, reused across calls (no allocation per token).
    static SCRATCH: RefCell<Vec<TokenData>> = const { RefCell::new(Vec::new()) };
}

/// A key whose ascending order is the logits' descending order, NaN last.
#[inline]
fn desc_key(logit: f32) -> u32 {
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
        radix_sort(data, &mut scratch);
    });
}

fn radix_sort(data: &mut [TokenData], scratch: &mut Vec<TokenData>) {
    let n = data.len();
    let mut counts = [[0u32; 256]; 4];
    for t in data.iter() {
        let k = desc_key(t.logit);
        for (d, c) in counts.iter_mut().enumerate() {
            c[((k >> (8 * d)) & 0xFF) as usize] += 1;
        }
    }
    scratch.clear();
    scratch.resize(n, TokenData::new(0, 0.0));
    let mut in_data = true;
    for (d, c) in counts.iter().enumerate() {
        // A digit every key shares leaves the order as it is.
        if c.iter().any(|&x| x as usize == n) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut acc = 0usize;
        for (o, &x) in offsets.iter_mut().zip(c.iter()) {
            *o = acc;
            acc += x as usize;
        }
        let (src, dst): (&[TokenData], &mut [TokenData]) = if in_data { (&*data, &mut scratch[..]) } else { (&scratch[..], &mut *data) };
        // `src` and `dst` alias neither each other nor themselves.
        let dst_ptr = dst.as_mut_ptr();
        for t in src {
            let b = ((desc_key(t.logit) >> (8 * d)) & 0xFF) as usize;
            // SAFETY: offsets[b] < n: the counts of bucket b sum to its size.
            unsafe { dst_ptr.add(offsets[b]).write(*t) };
            offsets[b] += 1;
        }
        in_data = !in_data;
    }
    if !in_data {
        data.copy_from_slice(scratch);
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
