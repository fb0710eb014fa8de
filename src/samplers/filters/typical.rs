//! Locally typical sampling: keep the candidates whose surprise is closest
//! to the distribution's entropy, until their probabilities sum past p.
//!
//! Source: Meister, Pimentel, Wiher and Cotterell 2023, "Locally Typical
//! Sampling" (TACL; arXiv 2202.00666). Same survivors as llama.cpp's
//! `llama_sampler_init_typical(p, min_keep)`: candidates are ranked by
//! |-ln p_i - H| (H the entropy in nats) and kept in that order until the
//! running probability sum is strictly greater than p; at least `min_keep`
//! survive.
//!
//! Since -ln p_i - H = E_p[logit] - logit_i, the rank is the distance of a
//! logit from the probability-weighted mean logit, so one pass gives the
//! centre, and the survivors are an interval of logits around it: from
//! 4096 unsorted candidates only those near the estimated interval are
//! collected and sorted (`window.rs`), below that the histogram selection
//! of `mass.rs` finds the cut in O(n) (llama.cpp sorts the vocabulary
//! twice). Zero-probability candidates
//! (-inf, NaN) rank last. Survivors come out sorted by descending logit
//! (llama.cpp leaves them in rank order, unsorted), with `p` set to their
//! softmax probability over the input. Sums accumulate in f64.

use serde::{Deserialize, Serialize};

use super::mass::{exp_moments_weights, exp_weights, select_mass, select_mass_bucketed};
use super::window::{distance, select_window, Ranking, MIN_WINDOW_N};
use crate::core::error::check_range;
use crate::core::softmax_weights::max_and_moments;
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenData};

/// Parameters of [`Typical`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TypicalParams {
    /// Probability mass p of the typical set, in [0, 1]: candidates are
    /// kept, most typical first, until their probabilities sum to more than
    /// p. `p = 1` disables. Default 0.95 (a commonly used setting;
    /// llama.cpp's common default `typ_p = 1.0` disables it).
    pub p: f32,
    /// Minimum number of candidates kept, whatever p says. 0 and 1 both
    /// mean "at least one". Default 1.
    pub min_keep: usize,
}

impl Default for TypicalParams {
    fn default() -> Self {
        Self { p: 0.95, min_keep: 1 }
    }
}

impl TypicalParams {
    /// Rejects a p that is NaN, infinite or outside [0, 1].
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("p", self.p, 0.0, 1.0, "must be a probability in [0, 1] (1 disables)")
    }
}

/// Keeps the locally typical set of mass p.
#[derive(Debug, Clone)]
pub struct Typical {
    params: TypicalParams,
}

impl Typical {
    /// A validated typical sampler.
    pub fn new(params: TypicalParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params })
    }

    /// The parameters.
    pub fn params(&self) -> &TypicalParams {
        &self.params
    }
}

/// Locally typical truncation (see the module docs). No change when
/// `p >= 1`, when the array is empty or when no logit is finite or +inf.
pub fn apply_typical(candidates: &mut Candidates<'_>, p: f32, min_keep: usize) {
    if p.is_nan() || p >= 1.0 || candidates.is_empty() {
        return;
    }
    let n = candidates.len();
    let want = min_keep.max(1).min(n);
    if n >= MIN_WINDOW_N {
        if let Some((max, s0, s1)) = max_and_moments(candidates.as_slice()) {
            let centre = max as f64 + s1 / s0;
            if let Some(k) = select_window(candidates.as_mut_slice(), Ranking::Around { centre }, max, s0, p as f64 * s0, true, want) {
                // Sorted, normalised, at least `want`.
                candidates.truncate(k);
                candidates.set_sorted(true);
                return;
            }
        }
    }
    let max = candidates.max_logit();
    if max == f32::NEG_INFINITY {
        return;
    }
    let data = candidates.as_mut_slice();
    let (sum, rank) = if max == f32::INFINITY {
        // The limit distribution is uniform over the +inf tokens: they all
        // have surprise equal to the entropy; everything else has p = 0.
        (exp_weights(data, max), Rank::InfTokens)
    } else {
        // Weights e_i = exp(z_i), z_i = logit_i - max; S0 = sum e, S1 = sum e z.
        let (s0, s1) = exp_moments_weights(data, max);
        // Centre: the probability-weighted mean logit E_p[logit].
        (s0, Rank::Distance(max as f64 + s1 / s0))
    };
    let key = |t: &TokenData| rank.key(t);
    let target = p as f64 * sum;
    let mut k = match rank {
        Rank::InfTokens => select_mass(data, key, 0.0, target, true),
        // The f32 rounding of the distance is monotone, as buckets need.
        Rank::Distance(_) => select_mass_bucketed(data, key, |t: &TokenData| key(t) as f32, target, true),
    };
    if k < want {
        // Bring the next most typical after the k already in front.
        let rest = &mut data[k..];
        if want - k < rest.len() {
            rest.select_nth_unstable_by(want - k - 1, |a, b| key(a).total_cmp(&key(b)));
        }
        k = want;
    }
    crate::core::radix::sort_logit_desc(&mut data[..k]);
    let inv = (1.0 / sum) as f32;
    crate::core::softmax_weights::scale_p(&mut data[..k], inv);
    candidates.truncate(k);
    candidates.set_sorted(true);
}

/// How candidates are ranked by typicality (lower key = more typical).
#[derive(Clone, Copy)]
enum Rank {
    /// Some logit is +inf: the +inf tokens (key 0) before all others (1).
    InfTokens,
    /// Distance |logit - centre| from the mean logit; NaN and infinite
    /// logits rank last (key +inf).
    Distance(f64),
}

impl Rank {
    #[inline]
    fn key(self, t: &TokenData) -> f64 {
        match self {
            Rank::InfTokens => {
                if t.logit == f32::INFINITY {
                    0.0
                } else {
                    1.0
                }
            }
            Rank::Distance(centre) => distance(centre, t.logit),
        }
    }
}

impl Sampler for Typical {
    fn name(&self) -> &'static str {
        "typical"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        apply_typical(candidates, self.params.p, self.params.min_keep);
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    fn run(logits: &[f32], p: f32, min_keep: usize) -> Vec<i32> {
        let mut a = tokens(logits);
        let mut c = Candidates::new(&mut a);
        Typical::new(TypicalParams { p, min_keep }).unwrap().apply(&mut c).unwrap();
        assert!(c.is_sorted());
        let mut ids: Vec<i32> = c.as_slice().iter().map(|t| t.id).collect();
        ids.sort();
        ids
    }

    /// Direct formula: rank by |-ln p - H|, keep until the sum exceeds p.
    fn reference(logits: &[f32], p: f64, min_keep: usize) -> Vec<i32> {
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, |m, l| m.max(l as f64));
        let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let probs: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp() / z).collect();
        let h: f64 = -probs.iter().filter(|&&q| q > 0.0).map(|q| q * q.ln()).sum::<f64>();
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| (-probs[a].ln() - h).abs().partial_cmp(&(-probs[b].ln() - h).abs()).unwrap());
        let mut acc = 0.0;
        let mut k = idx.len();
        for (i, &j) in idx.iter().enumerate() {
            acc += probs[j];
            if acc > p && i + 1 >= min_keep {
                k = i + 1;
                break;
            }
        }
        let mut ids: Vec<i32> = idx[..k].iter().map(|&j| j as i32).collect();
        ids.sort();
        ids
    }

    #[test]
    fn matches_the_direct_formula() {
        let mut rng = crate::core::DrawStream::from_state(21);
        for case in 0..60 {
            let n = [3, 10, 100, 1000, 5000][case % 5];
            let logits: Vec<f32> = (0..n).map(|_| (rng.next_normal() * 2.0) as f32).collect();
            for (p, mk) in [(0.2f32, 1), (0.5, 1), (0.9, 1), (0.5, 20)] {
                assert_eq!(run(&logits, p, mk), reference(&logits, p as f64, mk), "case {case} p {p} min_keep {mk}");
            }
        }
    }

    #[test]
    fn drops_the_overconfident_top_token() {
        // A token far more likely than the rest is atypical when the rest is
        // flat and wide: p_0 = 0.09, the others 0.0046 each, mean logit
        // 0.28, so the 199 flat tokens are the most typical.
        let mut logits = vec![0.0f32; 200];
        logits[0] = 3.0;
        let kept = run(&logits, 0.3, 1);
        assert!(!kept.contains(&0), "{kept:?}");
    }

    #[test]
    fn one_disables_and_validation() {
        let mut a = tokens(&[1.0, 2.0, 3.0]);
        let before = a.clone();
        Typical::new(TypicalParams { p: 1.0, min_keep: 1 }).unwrap().apply(&mut Candidates::new(&mut a)).unwrap();
        assert_eq!(a, before);
        for p in [f32::NAN, -0.01, 2.0] {
            assert!(Typical::new(TypicalParams { p, min_keep: 1 }).is_err());
        }
        let mut empty: Vec<TokenData> = Vec::new();
        Typical::new(TypicalParams::default()).unwrap().apply(&mut Candidates::new(&mut empty)).unwrap();
    }

    #[test]
    fn zero_probability_tokens_rank_last() {
        let kept = run(&[f32::NEG_INFINITY, 1.0, f32::NAN, 1.0], 0.99, 1);
        assert_eq!(kept, vec![1, 3]);
        let kept = run(&[f32::NEG_INFINITY, 1.0, f32::NAN, 1.0], 0.99, 3);
        assert_eq!(kept.len(), 3);
        let kept = run(&[f32::INFINITY, 1.0, f32::INFINITY], 0.4, 1);
        assert_eq!(kept.len(), 1);
    }
}
