//! Top-p (nucleus) truncation: keep the smallest set of best candidates
//! whose probability sum reaches p.
//!
//! Source: Holtzman et al. 2020, "The Curious Case of Neural Text
//! Degeneration" (ICLR). Same survivors and probabilities as llama.cpp's
//! `llama_sampler_init_top_p(p, min_keep)`: candidates ordered by
//! descending probability, the token whose running sum first reaches p is
//! kept, at least `min_keep` survive, the survivors are sorted descending
//! and their `p` is their softmax probability over the input (not
//! renormalised after the cut).
//!
//! Cost: O(n) plus sorting the survivors. llama.cpp sorts the whole
//! vocabulary whenever the nucleus is larger than 256 tokens. Here, from
//! 4096 unsorted candidates, one scan gives the maximum and the
//! normaliser, and only the candidates near the estimated cut are
//! collected and sorted (`window.rs`); below that a histogram of
//! probability mass finds the cut without any sort (`mass.rs`). Running
//! sums accumulate in f64.

use serde::{Deserialize, Serialize};

use super::mass::{exp_weights, exp_weights_histogram, is_small, select_from_histogram, select_mass, Histogram};
use super::window::{select_window, Ranking, MIN_WINDOW_N};
use crate::core::error::check_range;
use crate::core::math::{cmp_logit_desc, logit_key};
use crate::core::softmax_weights::max_and_sum;
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenData};

/// Parameters of [`TopP`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopPParams {
    /// Probability mass p to keep, in [0, 1]. The best candidates are kept
    /// until their probabilities sum to at least p (the one that crosses p
    /// is kept). `p = 1` disables; `p = 0` keeps only the best token.
    /// Default 0.95 (llama.cpp's common default `top_p`).
    pub p: f32,
    /// Minimum number of candidates kept, whatever p says. 0 and 1 both
    /// mean "at least one". Default 1.
    pub min_keep: usize,
}

impl Default for TopPParams {
    fn default() -> Self {
        Self { p: 0.95, min_keep: 1 }
    }
}

impl TopPParams {
    /// Rejects a p that is NaN, infinite or outside [0, 1].
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("p", self.p, 0.0, 1.0, "must be a probability in [0, 1] (1 disables)")
    }
}

/// Keeps the nucleus of probability mass p.
#[derive(Debug, Clone)]
pub struct TopP {
    params: TopPParams,
}

impl TopP {
    /// A validated top-p sampler.
    pub fn new(params: TopPParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params })
    }

    /// The parameters.
    pub fn params(&self) -> &TopPParams {
        &self.params
    }
}

/// Top-p truncation (see the module docs). No change when `p >= 1`, when
/// the array is empty or when no logit is finite or +inf.
pub fn apply_top_p(candidates: &mut Candidates<'_>, p: f32, min_keep: usize) {
    if p.is_nan() || p >= 1.0 || candidates.is_empty() {
        return;
    }
    let n = candidates.len();
    let want = min_keep.max(1).min(n);
    let sorted = candidates.is_sorted();
    if !sorted && n >= MIN_WINDOW_N {
        if let Some((max, sum)) = max_and_sum(candidates.as_slice()) {
            if let Some(k) = select_window(candidates.as_mut_slice(), Ranking::Top, max, sum, p as f64 * sum, false, want) {
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
    let key = |t: &TokenData| -logit_key(t.logit);
    let (sum, mut k) = if sorted {
        // Already in order: scan until the running mass reaches the target.
        let sum = exp_weights(data, max);
        let target = p as f64 * sum;
        let mut acc = 0.0f64;
        let k = data.iter().position(|t| {
            acc += t.p as f64;
            acc >= target
        });
        (sum, k.map_or(n, |i| i + 1))
    } else if max == f32::INFINITY || is_small(data) {
        let sum = exp_weights(data, max);
        (sum, select_mass(data, key, 0.0, p as f64 * sum, false))
    } else {
        // One pass for the weights, their sum and the mass histogram over
        // the distance from the best logit; then one partition pass.
        let mut hist = Histogram::new();
        let sum = exp_weights_histogram(data, max, &mut hist);
        let badness = |t: &TokenData| max - t.logit;
        (sum, select_from_histogram(data, key, badness, &hist, p as f64 * sum, false))
    };
    if k < want {
        if !sorted {
            // The k best are in front; bring the next (want - k) best after them.
            let rest = &mut data[k..];
            if want - k < rest.len() {
                rest.select_nth_unstable_by(want - k - 1, cmp_logit_desc);
            }
        }
        k = want;
    }
    if !sorted {
        crate::core::radix::sort_logit_desc(&mut data[..k]);
    }
    let inv = (1.0 / sum) as f32;
    crate::core::softmax_weights::scale_p(&mut data[..k], inv);
    candidates.truncate(k);
    candidates.set_sorted(true);
}

impl Sampler for TopP {
    fn name(&self) -> &'static str {
        "top-p"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        apply_top_p(candidates, self.params.p, self.params.min_keep);
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

    fn run(logits: &[f32], p: f32, min_keep: usize, sorted: bool) -> Vec<(i32, f32)> {
        let mut a = tokens(logits);
        let mut c = Candidates::with_state(&mut a, sorted, None);
        TopP::new(TopPParams { p, min_keep }).unwrap().apply(&mut c).unwrap();
        assert!(c.is_sorted());
        c.as_slice().iter().map(|t| (t.id, t.p)).collect()
    }

    #[test]
    fn keeps_the_token_that_crosses_p() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (logits ln of them).
        let l = [0.125f32.ln(), 0.5f32.ln(), 0.125f32.ln(), 0.25f32.ln()];
        let ids = |v: Vec<(i32, f32)>| v.into_iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(ids(run(&l, 0.5, 1, false)), vec![1]);
        assert_eq!(ids(run(&l, 0.6, 1, false)), vec![1, 3]);
        assert_eq!(ids(run(&l, 0.75, 1, false)), vec![1, 3]);
        assert_eq!(ids(run(&l, 0.8, 1, false)).len(), 3);
        assert_eq!(ids(run(&l, 0.0, 1, false)), vec![1]);
        assert_eq!(ids(run(&l, 0.0, 3, false)).len(), 3);
        assert_eq!(ids(run(&l, 0.5, 9, false)).len(), 4);
        let p = run(&l, 0.6, 1, false);
        assert!((p[0].1 - 0.5).abs() < 1e-6 && (p[1].1 - 0.25).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn sorted_and_unsorted_large_inputs_agree() {
        let mut rng = crate::core::DrawStream::from_state(5);
        let logits: Vec<f32> = (0..50_000).map(|_| (rng.next_normal() * 3.0) as f32).collect();
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        for p in [0.1, 0.9, 0.99] {
            let a = run(&logits, p, 1, false);
            let b = run(&sorted, p, 1, true);
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(logits[x.0 as usize], sorted[y.0 as usize]);
            }
        }
    }

    #[test]
    fn one_disables_and_validation() {
        let mut a = tokens(&[1.0, 2.0, 3.0]);
        let before = a.clone();
        let mut c = Candidates::new(&mut a);
        TopP::new(TopPParams { p: 1.0, min_keep: 1 }).unwrap().apply(&mut c).unwrap();
        assert!(!c.is_sorted());
        assert_eq!(a, before);
        for p in [f32::NAN, -0.1, 1.5, f32::INFINITY] {
            assert!(TopP::new(TopPParams { p, min_keep: 1 }).is_err(), "{p}");
        }
        let mut empty: Vec<TokenData> = Vec::new();
        TopP::new(TopPParams::default()).unwrap().apply(&mut Candidates::new(&mut empty)).unwrap();
    }

    #[test]
    fn nan_never_survives_and_inf_wins() {
        let out = run(&[f32::NAN, 1.0, f32::NEG_INFINITY, 0.5], 0.5, 1, false);
        assert_eq!(out.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1]);
        let out = run(&[f32::INFINITY, 1.0, f32::INFINITY, f32::NAN], 0.9, 1, false);
        let mut ids: Vec<i32> = out.iter().map(|t| t.0).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 2]);
        assert!(out.iter().all(|t| t.1 == 0.5));
    }
}
