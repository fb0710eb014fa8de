//! A mutable view over a candidate array, mirroring `llama_token_data_array`.
//!
//! Samplers reorder, shrink and rescale the candidates through this view and
//! may mark one as selected. Shrinking only shortens the view; the storage
//! belongs to the caller (llama.cpp's own buffer when called through the C
//! ABI), so nothing is ever copied or reallocated here.

use std::cell::RefCell;

use super::logit_scan::{scan_argmax, scan_top_k, LogitScan, ScanKernel, SCAN_MIN_N};
use super::math::{cmp_logit_desc, logit_key};
use super::token::{TokenData, TokenId};

/// The candidates of one sampling step.
#[derive(Debug)]
pub struct Candidates<'a> {
    data: &'a mut [TokenData],
    selected: Option<usize>,
    sorted: bool,
}

/// `k` at or below which [`Candidates::keep_top_k`] uses a single scan with a
/// small sorted buffer instead of quickselect.
const SMALL_K: usize = 128;

thread_local! {
    /// The SIMD top-k scan's state, reused across calls (no allocation per
    /// token once grown).
    static TOP_K_SCAN: RefCell<LogitScan> = RefCell::new(LogitScan::default());
}

impl<'a> Candidates<'a> {
    /// An unsorted view with nothing selected.
    pub fn new(data: &'a mut [TokenData]) -> Self {
        Self { data, selected: None, sorted: false }
    }

    /// A view with an explicit sorted flag and selection, as llama.cpp passes
    /// them. `sorted` must be true only if the logits are in descending order;
    /// a `selected` index out of range is dropped.
    pub fn with_state(data: &'a mut [TokenData], sorted: bool, selected: Option<usize>) -> Self {
        let selected = selected.filter(|&i| i < data.len());
        Self { data, selected, sorted }
    }

    /// A view over an array whose flags come from a host that may not keep
    /// them true: llama.cpp's own samplers (logit bias, grammar) change
    /// logits without clearing `sorted`. The claim `sorted` is kept only
    /// when the logits really are in descending order (NaN counted as
    /// -inf), checked in one pass; otherwise the view is unsorted, so that
    /// a selecting sampler scans instead of trusting `data[0]`.
    pub fn from_host(data: &'a mut [TokenData], sorted: bool, selected: Option<usize>) -> Self {
        let sorted = sorted && is_descending(data);
        Self::with_state(data, sorted, selected)
    }

    /// Number of candidates still in the view.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no candidate is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The candidates, read-only.
    pub fn as_slice(&self) -> &[TokenData] {
        self.data
    }

    /// The candidates, mutable. Changing logits may break the sorted order:
    /// call [`Candidates::set_sorted`]`(false)` if it does.
    pub fn as_mut_slice(&mut self) -> &mut [TokenData] {
        self.data
    }

    /// Index of the selected candidate, if a sampler selected one.
    pub fn selected(&self) -> Option<usize> {
        self.selected
    }

    /// Token id of the selected candidate.
    pub fn selected_token(&self) -> Option<TokenId> {
        self.selected.map(|i| self.data[i].id)
    }

    /// Marks candidate `index` as the chosen token.
    ///
    /// # Panics
    /// If `index` is out of range (a bug in the calling sampler).
    pub fn select(&mut self, index: usize) {
        assert!(index < self.data.len(), "selected index {index} out of range {}", self.data.len());
        self.selected = Some(index);
    }

    /// Whether the candidates are known to be in descending logit order.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Declares the order: `true` only if logits are descending.
    pub fn set_sorted(&mut self, sorted: bool) {
        self.sorted = sorted;
    }

    /// Keeps only the first `n` candidates. A selection beyond `n` is dropped.
    pub fn truncate(&mut self, n: usize) {
        if n < self.data.len() {
            let data = std::mem::take(&mut self.data);
            self.data = &mut data[..n];
            if self.selected.is_some_and(|i| i >= n) {
                self.selected = None;
            }
        }
    }

    /// Sorts all candidates by descending logit (NaN last). No-op when
    /// already sorted.
    pub fn sort_descending(&mut self) {
        if !self.sorted {
            self.data.sort_unstable_by(cmp_logit_desc);
            self.sorted = true;
            self.selected = None;
        }
    }

    /// Keeps the `k` highest logits, sorted descending, in O(n) expected time
    /// (no full sort). `k == 0` or `k >= len` sorts everything and keeps all.
    pub fn keep_top_k(&mut self, k: usize, scratch: &mut Vec<TokenData>) {
        let n = self.data.len();
        if k == 0 || k >= n {
            self.sort_descending();
            return;
        }
        if self.sorted {
            self.truncate(k);
            return;
        }
        if k <= SMALL_K {
            // The portable kernel's scan lost to the loop (20.5 against 17.3
            // us for top-k 40 of 49152 Normal(0, 3) logits).
            let simd = self.data.len() >= SCAN_MIN_N && ScanKernel::active() != ScanKernel::Portable;
            if !simd || !top_k_by_simd_scan(self.data, k, scratch) {
                top_k_by_scan(self.data, k, scratch);
            }
            self.data[..k].copy_from_slice(scratch);
        } else {
            self.data.select_nth_unstable_by(k - 1, cmp_logit_desc);
            self.data[..k].sort_unstable_by(cmp_logit_desc);
        }
        self.sorted = true;
        self.selected = None;
        self.truncate(k);
    }

    /// Keeps only the candidates at `indices`, in that order, which must
    /// be distinct, in range and in descending logit order (as a top-k
    /// selection gives them); the view is then marked sorted and nothing is
    /// selected. The entries are copied through `scratch`.
    ///
    /// # Panics
    /// If an index is out of range (a bug in the caller).
    pub fn keep_indices(&mut self, indices: impl Iterator<Item = usize>, scratch: &mut Vec<TokenData>) {
        scratch.clear();
        scratch.extend(indices.map(|i| self.data[i]));
        let n = scratch.len();
        self.data[..n].copy_from_slice(scratch);
        self.sorted = true;
        self.selected = None;
        self.truncate(n);
    }

    /// Largest logit (NaN ignored); -inf when empty or all NaN.
    pub fn max_logit(&self) -> f32 {
        if self.sorted && !self.data.is_empty() {
            return logit_key(self.data[0].logit);
        }
        super::math::max_logit(self.data)
    }

    /// Index of the largest logit (first one on ties); `None` when empty or
    /// when every logit is -inf or NaN.
    pub fn argmax(&self) -> Option<usize> {
        if self.sorted {
            return self.data.first().filter(|t| t.logit > f32::NEG_INFINITY).map(|_| 0);
        }
        if self.data.len() >= SCAN_MIN_N {
            return scan_argmax(self.data);
        }
        super::math::argmax_logit(self.data)
    }

    /// Sets `p` of every candidate to its softmax probability over the
    /// current view (sum in f64). NaN and -inf logits get `p = 0`; if any
    /// logit is +inf, the +inf tokens share the mass equally. Returns the
    /// largest logit; the probabilities are all 0 when it is -inf.
    pub fn softmax(&mut self) -> f32 {
        let max = self.max_logit();
        super::math::softmax_in_place(self.data, max);
        max
    }
}

/// True when the logits of `data` never rise from one entry to the next,
/// NaN counted as -inf (the order [`cmp_logit_desc`] sorts into).
pub fn is_descending(data: &[TokenData]) -> bool {
    data.windows(2).all(|w| logit_key(w[0].logit) >= logit_key(w[1].logit))
}

/// The `k` best of `data` into `out`, sorted descending (equal logits in
/// index order), by [`scan_top_k`]; false (`out` unspecified) when that
/// scan cannot give them: a +inf logit, or fewer than `k` logits above
/// -inf (NaN and -inf must then fill the rest, in
/// [`top_k_by_scan`]'s order). The AVX2 and AVX-512 kernels compare a
/// register of logits with the k-th best at a time: top-k 40 of 49152
/// took 10.5 us instead of 15.0 on the bench's Normal(0, 3) logits, 12.8
/// instead of 20.6 on SmolLM2's.
fn top_k_by_simd_scan(data: &[TokenData], k: usize, out: &mut Vec<TokenData>) -> bool {
    TOP_K_SCAN.with(|scan| {
        let mut scan = scan.borrow_mut();
        scan_top_k(data, k, &mut scan);
        if scan.max == f32::INFINITY || scan.best.len() < k {
            return false;
        }
        out.clear();
        out.extend(scan.best.iter().map(|&(i, _)| data[i as usize]));
        true
    })
}

/// Finds the `k` largest candidates of `data` in one scan and leaves them,
/// sorted descending, in `out`.
///
/// `out` starts with the first `k` candidates and a threshold, the k-th
/// largest logit so far. The rest is read in blocks of 64: a block whose
/// maximum does not beat the threshold (the common case once it has risen)
/// costs a branch-free max; otherwise its winners are appended, and when
/// `out` reaches `4k` a quickselect keeps the best `k` and raises the
/// threshold. O(n) in all; NaN never beats the threshold.
fn top_k_by_scan(data: &[TokenData], k: usize, out: &mut Vec<TokenData>) {
    const BLOCK: usize = 64;
    let cap = 4 * k;
    out.clear();
    out.reserve(cap);
    out.extend_from_slice(&data[..k]);
    let mut threshold = out.iter().fold(f32::INFINITY, |m, t| m.min(logit_key(t.logit)));
    for block in data[k..].chunks(BLOCK) {
        // The block's maximum in eight lanes (the loop vectorises; one
        // running maximum would make each comparison wait on the last).
        let block_max = super::math::max_logit(block);
        if !(block_max > threshold) {
            continue;
        }
        for t in block {
            if t.logit > threshold {
                out.push(*t);
                if out.len() == cap {
                    out.select_nth_unstable_by(k - 1, cmp_logit_desc);
                    out.truncate(k);
                    threshold = logit_key(out[k - 1].logit);
                }
            }
        }
    }
    if out.len() > k {
        out.select_nth_unstable_by(k - 1, cmp_logit_desc);
        out.truncate(k);
    }
    out.sort_unstable_by(cmp_logit_desc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    #[test]
    fn keep_top_k_small_and_large_agree_with_full_sort() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 3.0).collect();
        for k in [1, 5, 40, 64, 65, 200, 999] {
            let mut a = tokens(&logits);
            let mut c = Candidates::new(&mut a);
            let mut scratch = Vec::new();
            c.keep_top_k(k, &mut scratch);
            let got: Vec<f32> = c.as_slice().iter().map(|t| t.logit).collect();
            let mut want = logits.clone();
            want.sort_by(|a, b| b.partial_cmp(a).unwrap());
            want.truncate(k);
            assert_eq!(got, want, "k = {k}");
            assert!(c.is_sorted());
        }
    }

    /// The SIMD scan's top-k (arrays from [`SCAN_MIN_N`]) and its
    /// fallbacks: the k best by logit, descending, whatever NaN, -inf and
    /// +inf the array holds.
    #[test]
    fn keep_top_k_on_long_arrays_matches_a_full_sort() {
        let n = 3 * SCAN_MIN_N + 17;
        let mut state = 99u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let smooth: Vec<f32> = (0..n).map(|_| next() * 20.0 - 10.0).collect();
        // Ties: a few distinct values.
        let tied: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        // Fewer finite logits than k: -inf and NaN fill the rest.
        let sparse: Vec<f32> = (0..n)
            .map(|i| {
                if i % 500 == 3 {
                    i as f32
                } else if i % 2 == 0 {
                    f32::NEG_INFINITY
                } else {
                    f32::NAN
                }
            })
            .collect();
        let mut with_inf = smooth.clone();
        with_inf[2000] = f32::INFINITY;
        with_inf[10] = f32::NAN;
        for logits in [&smooth, &tied, &sparse, &with_inf] {
            for k in [1, 27, 40, SMALL_K] {
                let mut a = tokens(logits);
                let mut c = Candidates::new(&mut a);
                c.keep_top_k(k, &mut Vec::new());
                assert!(c.is_sorted() && c.len() == k);
                let mut want = tokens(logits);
                want.sort_by(cmp_logit_desc);
                let key = |t: &TokenData| logit_key(t.logit).to_bits();
                assert_eq!(c.as_slice().iter().map(key).collect::<Vec<_>>(), want[..k].iter().map(key).collect::<Vec<_>>(), "k = {k}");
                // Each survivor is the record of its own id.
                assert!(c.as_slice().iter().all(|t| logits[t.id as usize].to_bits() == t.logit.to_bits()));
            }
        }
    }

    #[test]
    fn nan_sorts_last_and_is_never_max() {
        let mut a = tokens(&[f32::NAN, 1.0, f32::NEG_INFINITY, 2.0]);
        let mut c = Candidates::new(&mut a);
        assert_eq!(c.max_logit(), 2.0);
        assert_eq!(c.argmax(), Some(3));
        c.sort_descending();
        assert_eq!(c.as_slice()[0].id, 3);
        assert!(c.as_slice()[3].logit.is_nan());
    }

    #[test]
    fn from_host_keeps_only_a_true_sorted_claim() {
        // A masked head (logit bias after top-k) and an ascending array both
        // arrive claiming `sorted`; neither is.
        let mut masked = tokens(&[f32::NEG_INFINITY, 2.0, 1.0]);
        let c = Candidates::from_host(&mut masked, true, None);
        assert!(!c.is_sorted());
        assert_eq!(c.argmax(), Some(1));
        let mut ascending = tokens(&[0.0, 1.0, 2.0]);
        let c = Candidates::from_host(&mut ascending, true, None);
        assert_eq!(c.argmax(), Some(2));
        assert_eq!(c.max_logit(), 2.0);
        // NaN counts as -inf: a NaN head is out of order, a NaN tail is not.
        let mut nan_head = tokens(&[f32::NAN, 1.0]);
        assert!(!Candidates::from_host(&mut nan_head, true, None).is_sorted());
        let mut nan_tail = tokens(&[3.0, 3.0, f32::NAN, f32::NEG_INFINITY]);
        let c = Candidates::from_host(&mut nan_tail, true, None);
        assert!(c.is_sorted());
        assert_eq!(c.argmax(), Some(0));
        // No claim, no check.
        let mut plain = tokens(&[3.0, 2.0]);
        assert!(!Candidates::from_host(&mut plain, false, None).is_sorted());
    }

    #[test]
    fn truncate_drops_out_of_range_selection() {
        let mut a = tokens(&[1.0, 2.0, 3.0]);
        let mut c = Candidates::new(&mut a);
        c.select(2);
        c.truncate(2);
        assert_eq!(c.selected(), None);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn softmax_handles_infinities() {
        let mut a = tokens(&[f32::INFINITY, 0.0, f32::INFINITY, f32::NAN]);
        let mut c = Candidates::new(&mut a);
        c.softmax();
        let p: Vec<f32> = c.as_slice().iter().map(|t| t.p).collect();
        assert_eq!(p, vec![0.5, 0.0, 0.5, 0.0]);
    }
}
