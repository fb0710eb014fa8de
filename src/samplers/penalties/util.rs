//! Shared machinery of the penalty samplers: a token history, a fast hash
//! map keyed by token id, and [`IdTouch`], which finds the candidates that
//! carry a given set of ids without scanning the vocabulary when it can.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::core::{TokenData, TokenId};

/// A multiplicative (Fibonacci) hasher for token ids. Token ids are small
/// integers chosen by the tokenizer, not by an adversary, so SipHash's
/// protection is not needed and its cost is.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, i: i32) {
        self.0 = (i as u32 as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_i32(i as i32);
    }
}

/// A hash map keyed by token id.
pub(crate) type IdMap<V> = HashMap<TokenId, V, BuildHasherDefault<IdHasher>>;

/// The accepted tokens, oldest first, keeping at least the last `cap`.
///
/// Stored contiguously (so the window is a plain slice) and trimmed in
/// amortised O(1): the front is dropped only when the buffer reaches twice
/// the cap. `cap == None` keeps everything since the last reset.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    buf: Vec<TokenId>,
    cap: Option<usize>,
}

impl History {
    /// A history that remembers the last `cap` tokens (`None`: all).
    pub fn new(cap: Option<usize>) -> Self {
        Self { buf: Vec::new(), cap }
    }

    /// Appends `token`, dropping tokens older than the cap now and then.
    pub fn push(&mut self, token: TokenId) {
        if let Some(cap) = self.cap {
            if self.buf.len() >= cap.saturating_mul(2).max(cap + 16) {
                let cut = self.buf.len() - cap;
                self.buf.drain(..cut);
            }
        }
        self.buf.push(token);
    }

    /// The last `min(n, cap, len)` tokens, oldest first.
    pub fn last(&self, n: usize) -> &[TokenId] {
        let n = n.min(self.cap.unwrap_or(usize::MAX)).min(self.buf.len());
        &self.buf[self.buf.len() - n..]
    }

    /// The remembered window (the last `cap` tokens), oldest first.
    pub fn window(&self) -> &[TokenId] {
        self.last(usize::MAX)
    }

    /// The token that dropped out of the window on the last push, if one did.
    pub fn just_evicted(&self) -> Option<TokenId> {
        let cap = self.cap?;
        let len = self.buf.len();
        (len > cap).then(|| self.buf[len - cap - 1])
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Ids at or above this go to a sorted side list instead of the dense table,
/// so that an absurd id cannot make the table huge (262144, Gemma-3's
/// vocabulary, is far below).
const DENSE_LIMIT: usize = 1 << 21;

/// Scratch that finds, for a list of target ids, the candidates carrying
/// them. Reused between calls; holds no persistent state.
///
/// Two paths:
/// - identity layout: when every target id `t` satisfies
///   `data[t].id == t` (llama.cpp's full-vocabulary array before any
///   reordering), only those entries are touched: O(targets);
/// - otherwise one scan of the candidates with a dense id -> target table
///   (cleared after use, so it costs O(targets) to reset, not O(vocab)).
///
/// Candidate arrays are assumed to hold each id at most once (as llama.cpp
/// builds them). On the identity path a duplicate elsewhere in the array is
/// not touched; on the scan path every occurrence is.
#[derive(Debug, Default)]
pub(crate) struct IdTouch {
    /// id -> 1 + index of the first target with that id; 0 = none.
    dense: Vec<u32>,
    /// target index -> 1 + index of the next target with the same id.
    next: Vec<u32>,
    /// (id, first target index) for ids outside the dense range, sorted.
    sparse: Vec<(TokenId, u32)>,
}

/// A clone starts with empty scratch (the dense table can be as large as
/// the vocabulary and holds nothing between calls).
impl Clone for IdTouch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl IdTouch {
    /// Calls `f(candidate, k)` for every candidate whose id is `ids[k]`.
    /// When several targets share an id, they are visited in list order.
    /// Returns true when at least one candidate was touched.
    pub fn for_each(&mut self, data: &mut [TokenData], ids: &[TokenId], mut f: impl FnMut(&mut TokenData, usize)) -> bool {
        if ids.is_empty() || data.is_empty() {
            return false;
        }
        let at_identity = |id: TokenId| usize::try_from(id).ok().and_then(|i| data.get(i)).map(|t| t.id) == Some(id);
        if ids.iter().all(|&id| at_identity(id)) {
            for (k, &id) in ids.iter().enumerate() {
                f(&mut data[id as usize], k);
            }
            return true;
        }
        self.build(ids);
        let mut touched = false;
        let dense_len = self.dense.len();
        for t in data.iter_mut() {
            let slot = match usize::try_from(t.id) {
                Ok(i) if i < dense_len => self.dense[i],
                _ if self.sparse.is_empty() => 0,
                _ => match self.sparse.binary_search_by_key(&t.id, |&(id, _)| id) {
                    Ok(pos) => self.sparse[pos].1 + 1,
                    Err(_) => 0,
                },
            };
            let mut slot = slot;
            while slot != 0 {
                let k = (slot - 1) as usize;
                f(t, k);
                touched = true;
                slot = self.next[k];
            }
        }
        self.clear(ids);
        touched
    }

    fn build(&mut self, ids: &[TokenId]) {
        self.next.clear();
        self.next.resize(ids.len(), 0);
        self.sparse.clear();
        let max_dense = ids.iter().filter_map(|&id| usize::try_from(id).ok()).filter(|&i| i < DENSE_LIMIT).max();
        if let Some(m) = max_dense {
            if self.dense.len() <= m {
                self.dense.resize(m + 1, 0);
            }
        }
        // Walk backwards so each id's chain ends up in list order.
        for (k, &id) in ids.iter().enumerate().rev() {
            match usize::try_from(id) {
                Ok(i) if i < DENSE_LIMIT => {
                    self.next[k] = self.dense[i];
                    self.dense[i] = k as u32 + 1;
                }
                _ => {
                    // Rare (negative or huge ids): chain through the sparse list.
                    if let Some(e) = self.sparse.iter_mut().find(|e| e.0 == id) {
                        self.next[k] = e.1 + 1;
                        e.1 = k as u32;
                    } else {
                        self.sparse.push((id, k as u32));
                    }
                }
            }
        }
        self.sparse.sort_unstable_by_key(|&(id, _)| id);
    }

    fn clear(&mut self, ids: &[TokenId]) {
        for &id in ids {
            if let Ok(i) = usize::try_from(id) {
                if i < self.dense.len() {
                    self.dense[i] = 0;
                }
            }
        }
    }
}

/// llama.cpp's sign-aware scaling: a positive logit is divided by `factor`,
/// a logit <= 0 multiplied by it, so `factor > 1` always lowers the logit.
#[inline]
pub(crate) fn scale_sign_aware(logit: f32, factor: f32) -> f32 {
    if logit <= 0.0 {
        logit * factor
    } else {
        logit / factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(n: usize) -> Vec<TokenData> {
        (0..n).map(|i| TokenData::new(i as i32, 0.0)).collect()
    }

    #[test]
    fn identity_and_scan_paths_agree() {
        let ids = [5, 2, 9, 2, -3, 1 << 22];
        let mut touch = IdTouch::default();
        let mut a = identity(12);
        // -3 and 1 << 22 are not at identity positions: scan path.
        touch.for_each(&mut a, &ids, |t, k| t.logit += (k + 1) as f32);
        assert_eq!(a[5].logit, 1.0);
        assert_eq!(a[2].logit, 2.0 + 4.0);
        assert_eq!(a[9].logit, 3.0);
        let mut b = identity(12);
        touch.for_each(&mut b, &ids[..4], |t, k| t.logit += (k + 1) as f32);
        assert_eq!(a, b);
        // Shuffled array with the odd ids present.
        let mut c = vec![TokenData::new(1 << 22, 0.0), TokenData::new(-3, 0.0), TokenData::new(2, 0.0), TokenData::new(7, 0.0)];
        assert!(touch.for_each(&mut c, &ids, |t, k| t.logit += (k + 1) as f32));
        assert_eq!(c.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![6.0, 5.0, 6.0, 0.0]);
        // The scratch table is clean afterwards.
        assert!(touch.dense.iter().all(|&d| d == 0));
        assert!(!touch.for_each(&mut [], &ids, |_, _| unreachable!()));
    }

    #[test]
    fn history_keeps_the_window() {
        let mut h = History::new(Some(3));
        for t in 0..100 {
            h.push(t);
            assert_eq!(h.just_evicted(), (t >= 3).then(|| t - 3));
        }
        assert_eq!(h.window(), &[97, 98, 99]);
        assert_eq!(h.last(2), &[98, 99]);
        let mut all = History::new(None);
        (0..10).for_each(|t| all.push(t));
        assert_eq!(all.window().len(), 10);
        assert_eq!(all.just_evicted(), None);
    }
}
