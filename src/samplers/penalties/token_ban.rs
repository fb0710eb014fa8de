//! Token bans: the listed ids get a logit of -inf.
//!
//! Source: seed 004 (`ban_tokens` in e-c-k-e-r/vall-e `vall_e/samplers.py`).
//! The reference's bounds check is inverted (`if logits.shape[-1] >= token:
//! continue` skips every id inside the vocabulary), so it never bans
//! anything; this one bans what it is given. Ids absent from the candidates
//! are ignored.

use crate::core::{Candidates, SampleError, Sampler, TokenId};

use super::util::IdTouch;

/// Sets the logits of the banned ids to -inf. No parameters besides the
/// id list; an empty list disables.
#[derive(Debug, Clone)]
pub struct TokenBan {
    ids: Vec<TokenId>,
    touch: IdTouch,
}

impl TokenBan {
    /// A ban of `ids` (duplicates are dropped).
    pub fn new(mut ids: Vec<TokenId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self { ids, touch: IdTouch::default() }
    }

    /// The banned ids (sorted, distinct).
    pub fn ids(&self) -> &[TokenId] {
        &self.ids
    }
}

impl Sampler for TokenBan {
    fn name(&self) -> &'static str {
        "token-ban"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        if self.touch.for_each(candidates.as_mut_slice(), &self.ids, |t, _| t.logit = f32::NEG_INFINITY) {
            candidates.set_sorted(false);
        }
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    #[test]
    fn bans_listed_ids_only() {
        let mut s = TokenBan::new(vec![2, 0, 2, 99, -1]);
        assert_eq!(s.ids(), &[-1, 0, 2, 99]);
        let mut a: Vec<TokenData> = (0..4).map(|i| TokenData::new(i, i as f32)).collect();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        assert_eq!(a.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, 3.0]);
        let mut b = vec![TokenData::new(3, 1.0), TokenData::new(2, 5.0)];
        let mut c = Candidates::with_state(&mut b, false, None);
        s.apply(&mut c).unwrap();
        assert_eq!(b[1].logit, f32::NEG_INFINITY);
        let mut empty = TokenBan::new(vec![]);
        let mut d = vec![TokenData::new(0, 1.0)];
        empty.apply(&mut Candidates::new(&mut d)).unwrap();
        assert_eq!(d[0].logit, 1.0);
    }
}
