//! Mirostat v1: top-k with k from a Zipf fit and the running surprise
//! bound `mu`.

use serde::{Deserialize, Serialize};

use super::{json_f64, update_mu, Observed};
use crate::core::error::check_range;
use crate::core::math::{cmp_logit_desc, logit_key};
use crate::core::partition::members_into;
use crate::core::radix::sort_logit_desc;
use crate::core::sampler::require_candidates;
use crate::core::{Candidates, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId, RANDOM_SEED};
use crate::samplers::dist::pick_by_probability;

/// Parameters of [`Mirostat`] (v1), in the order of llama.cpp's
/// `llama_sampler_init_mirostat(n_vocab, seed, tau, eta, m)`.
///
/// There is no disabling value: to turn Mirostat off, leave it out of the
/// chain (llama.cpp's `mirostat = 0` is a switch in its common code, not a
/// parameter of the sampler).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MirostatParams {
    /// Vocabulary size N of the Zipf model (tokens). `0` uses the number of
    /// candidates of each step. Must be >= 0. Default 0; llama.cpp has no
    /// default and takes the model's vocabulary size.
    pub n_vocab: i32,
    /// RNG seed. `0xFFFFFFFF` (llama.cpp's `LLAMA_DEFAULT_SEED`) draws a
    /// random seed at construction. Default `0xFFFFFFFF`.
    pub seed: u32,
    /// Target surprise tau, in bits (-log2 of a token's probability).
    /// Finite and >= 0. Default 5.0. `mu` starts at `2 * tau`.
    pub tau: f32,
    /// Learning rate eta of the `mu` update (bits of `mu` per bit of
    /// surprise error). Finite and >= 0; 0 freezes `mu` at `2 * tau`.
    /// Default 0.1.
    pub eta: f32,
    /// Number m of top candidates over which the Zipf exponent is
    /// estimated. >= 2. Default 100 (as in the paper and llama.cpp).
    pub m: i32,
}

impl Default for MirostatParams {
    fn default() -> Self {
        Self { n_vocab: 0, seed: RANDOM_SEED, tau: 5.0, eta: 0.1, m: 100 }
    }
}

impl MirostatParams {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.n_vocab < 0 {
            return Err(ParamError::new("n_vocab", self.n_vocab, "must be >= 0 (0 = the candidate count)"));
        }
        check_range("tau", self.tau, 0.0, f32::MAX, "must be finite and >= 0 (bits)")?;
        check_range("eta", self.eta, 0.0, f32::MAX, "must be finite and >= 0")?;
        if self.m < 2 {
            return Err(ParamError::new("m", self.m, "must be >= 2 (the Zipf fit needs two candidates)"));
        }
        Ok(())
    }
}

/// Mirostat v1.
///
/// `apply`: sorts the top `m` candidates, estimates the Zipf exponent s of
/// their probabilities ([`zipf_exponent`]), turns it and `mu` into a size k
/// ([`estimate_k`]), keeps the k most likely candidates (sorted, `p`
/// renormalised over them), samples one and selects it. `accept(token)`:
/// `mu -= eta * (-log2 p(token) - tau)`, with `p` the renormalised
/// probability of that token in the last `apply`.
///
/// A token that the last `apply` did not keep (or kept with probability 0),
/// or an `accept` with no `apply` since the previous `accept` (prompt
/// tokens), has no finite surprise under the truncated distribution: `mu`
/// is left unchanged for that step, and the RNG still advances.
///
/// Where llama.cpp's result is undefined behaviour, ours is defined:
/// - the fit uses only pairs of neighbours with finite logits (llama.cpp's
///   ratio of zero probabilities gives NaN and then k = 1 on x86);
/// - k below 1 or NaN (fewer than two finite candidates) keeps 1; k above
///   the candidate count (including +inf, e.g. a flat top with
///   `2^mu > N - 1`) keeps all, where llama.cpp's `int(k)` overflows and
///   keeps 1.
#[derive(Debug, Clone)]
pub struct Mirostat {
    params: MirostatParams,
    mu: f32,
    rng: SeededRng,
    observed: Observed,
    last: LastStep,
    /// Scratch of `apply`: a strided sample of logits and the gathered top.
    sample: Vec<f32>,
    top: Vec<TokenData>,
}

/// Diagnostics of the last `apply` (scratch, for `state_json`).
#[derive(Debug, Clone, Copy, Default)]
struct LastStep {
    s_hat: f64,
    k_estimate: f64,
    k: usize,
    surprise_bits: Option<f32>,
}

impl Mirostat {
    /// A validated Mirostat v1 sampler with `mu = 2 * tau`.
    pub fn new(params: MirostatParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self {
            params,
            mu: 2.0 * params.tau,
            rng: SeededRng::new(params.seed),
            observed: Observed::default(),
            last: LastStep { s_hat: f64::NAN, k_estimate: f64::NAN, ..Default::default() },
            sample: Vec::new(),
            top: Vec::new(),
        })
    }

    /// The current maximum surprise `mu`, in bits.
    pub fn mu(&self) -> f32 {
        self.mu
    }

    /// The parameters.
    pub fn params(&self) -> &MirostatParams {
        &self.params
    }

    /// The k computed by the last `apply` before rounding and clamping
    /// (NaN before the first `apply`; may be +inf).
    pub fn last_k_estimate(&self) -> f64 {
        self.last.k_estimate
    }
}

/// Least-squares estimate (through the origin) of the Zipf exponent s of a
/// sorted run of candidates: with p_i proportional to i^-s,
/// ln(p_i / p_(i+1)) = s ln((i+1)/i). Uses the pairs of neighbours with
/// finite logits, where ln(p_i / p_(i+1)) is exactly the logit difference
/// (computed in f64, so no probability underflows). NaN when there is no
/// such pair.
pub fn zipf_exponent(top: &[TokenData]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, w) in top.windows(2).enumerate() {
        let (a, b) = (w[0].logit, w[1].logit);
        if a.is_finite() && b.is_finite() {
            let t = ((i + 2) as f64 / (i + 1) as f64).ln();
            num += t * (a as f64 - b as f64);
            den += t * t;
        }
    }
    num / den
}

/// Mirostat v1's k: ((eps 2^mu) / (1 - N^-eps))^(1/s) with eps = s - 1,
/// computed in log space in f64 (the eps -> 0 limit, 1 / ln N, is used near
/// s = 1). Not rounded or clamped: may be < 1, +inf, or NaN (s NaN, or
/// N <= 1 which gives 1).
pub fn estimate_k(s_hat: f64, mu: f32, n_vocab: f64) -> f64 {
    if n_vocab <= 1.0 {
        return 1.0;
    }
    let eps = s_hat - 1.0;
    let ln_n = n_vocab.ln();
    // eps / (1 - N^-eps) > 0 for every s >= 0.
    let factor = if eps.abs() < 1e-9 { 1.0 / ln_n } else { eps / -(-eps * ln_n).exp_m1() };
    let ln_k = (factor.ln() + mu as f64 * std::f64::consts::LN_2) / s_hat;
    ln_k.exp()
}

/// Size of the strided sample [`gather_top`] estimates its threshold from.
const SAMPLE: usize = 2048;
/// [`gather_top`] aims at this many candidates at least (k is usually a
/// few hundred or less with m = 100), so the top k is usually among them.
const GATHER_MIN: usize = 512;

/// Copies into `out`, sorted descending, every candidate whose logit is at
/// least a threshold estimated from a strided sample, so that about
/// `1.5 * want` candidates and a margin pass: one cheap scan instead of a
/// selection over the whole vocabulary. Returns false (and `out` means
/// nothing) for small arrays, or when fewer than `want` or more than a
/// quarter of the candidates pass; the caller then selects the usual way.
fn gather_top(data: &[TokenData], want: usize, sample: &mut Vec<f32>, out: &mut Vec<TokenData>) -> bool {
    let n = data.len();
    if n < 4 * SAMPLE || want.saturating_mul(8) > n {
        return false;
    }
    let stride = n / SAMPLE;
    sample.clear();
    sample.extend((0..SAMPLE).map(|i| logit_key(data[i * stride].logit)));
    let j = ((want as f64 * 1.5 * SAMPLE as f64 / n as f64) as usize + 4).min(SAMPLE - 1);
    // No NaN in the sample (logit_key), so the order is total.
    let (_, &mut threshold, _) = sample.select_nth_unstable_by(j, |a, b| b.partial_cmp(a).unwrap());
    if threshold == f32::NEG_INFINITY {
        return false;
    }
    // One SIMD pass (NaN is never a member).
    members_into(data, threshold, f32::INFINITY, out);
    if out.len() < want || out.len() > n / 4 {
        return false;
    }
    sort_logit_desc(out);
    true
}

/// The integer k kept: NaN or below 1 keeps 1, above `n` keeps `n`.
fn clamp_k(k: f64, n: usize) -> usize {
    if k.is_nan() || k < 1.0 {
        1
    } else if k >= n as f64 {
        n
    } else {
        k as usize
    }
}

impl Sampler for Mirostat {
    fn name(&self) -> &'static str {
        "mirostat"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        // A failed apply leaves nothing for accept to use.
        self.observed.kept.clear();
        require_candidates(candidates)?;
        if candidates.max_logit() == f32::NEG_INFINITY {
            return Err(SampleError::NoFiniteLogits);
        }
        let n = candidates.len();
        let m = (self.params.m as usize).min(n);
        let was_sorted = candidates.is_sorted();
        // The top m, sorted: gathered into `self.top` by one scan (large
        // vocabularies), or selected to the front of the array.
        let gathered = !was_sorted && gather_top(candidates.as_slice(), m.max(GATHER_MIN), &mut self.sample, &mut self.top);
        if !was_sorted && !gathered {
            let data = candidates.as_mut_slice();
            if m < n {
                data.select_nth_unstable_by(m - 1, cmp_logit_desc);
                data[..m].sort_unstable_by(cmp_logit_desc);
            } else {
                data.sort_unstable_by(cmp_logit_desc);
            }
        }
        let top_m = if gathered { &self.top[..m] } else { &candidates.as_slice()[..m] };
        let s_hat = zipf_exponent(top_m);
        let n_vocab = if self.params.n_vocab > 0 { self.params.n_vocab as f64 } else { n as f64 };
        let k_estimate = estimate_k(s_hat, self.mu, n_vocab);
        let k = clamp_k(k_estimate, n);
        // The top k, sorted, at the front.
        let data = candidates.as_mut_slice();
        if gathered && k <= self.top.len() {
            // The view ends at k: what lay in data[..k] before is dropped.
            data[..k].copy_from_slice(&self.top[..k]);
        } else if gathered {
            // k beyond the gathered set (rare): select from the untouched array.
            if k < n {
                data.select_nth_unstable_by(k - 1, cmp_logit_desc);
                data[..k].sort_unstable_by(cmp_logit_desc);
            } else {
                data.sort_unstable_by(cmp_logit_desc);
            }
        } else if !was_sorted && k > m {
            // Extend the sorted prefix from m to k.
            let rest = &mut data[m..];
            if k < n {
                rest.select_nth_unstable_by(k - m - 1, cmp_logit_desc);
                rest[..k - m].sort_unstable_by(cmp_logit_desc);
            } else {
                rest.sort_unstable_by(cmp_logit_desc);
            }
        }
        candidates.truncate(k);
        candidates.set_sorted(true);
        candidates.softmax();
        let index = pick_by_probability(candidates, self.rng.stream().next_f64());
        candidates.select(index);
        self.observed.record(candidates.as_slice());
        self.last = LastStep { s_hat, k_estimate, k, surprise_bits: None };
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        self.last.surprise_bits = update_mu(&mut self.mu, &mut self.observed, token, self.params.tau, self.params.eta);
        self.rng.advance();
    }

    fn reset(&mut self) {
        self.mu = 2.0 * self.params.tau;
        self.rng.rewind();
        self.observed.kept.clear();
        self.last = LastStep { s_hat: f64::NAN, k_estimate: f64::NAN, ..Default::default() };
    }

    fn selects(&self) -> bool {
        true
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    /// `mu_bits`, the parameters, and of the last step: `s_hat`,
    /// `k_estimate` (null when infinite/NaN), `k`, and `surprise_bits` of
    /// the last accepted token (null when it moved nothing).
    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mu_bits": self.mu,
            "tau_bits": self.params.tau,
            "eta": self.params.eta,
            "m": self.params.m,
            "n_vocab": self.params.n_vocab,
            "s_hat": json_f64(self.last.s_hat),
            "k_estimate": json_f64(self.last.k_estimate),
            "k": self.last.k,
            "surprise_bits": self.last.surprise_bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DrawStream;

    fn normal_logits(n: usize, seed: u64) -> Vec<TokenData> {
        let mut r = DrawStream::from_state(seed);
        (0..n).map(|i| TokenData::new(i as i32, (r.next_normal() * 3.0) as f32)).collect()
    }

    fn params(seed: u32) -> MirostatParams {
        MirostatParams { seed, n_vocab: 32_000, ..Default::default() }
    }

    #[test]
    fn validate_rejects_out_of_range() {
        assert!(MirostatParams::default().validate().is_ok());
        for bad in [
            MirostatParams { n_vocab: -1, ..Default::default() },
            MirostatParams { tau: -0.5, ..Default::default() },
            MirostatParams { tau: f32::NAN, ..Default::default() },
            MirostatParams { eta: f32::INFINITY, ..Default::default() },
            MirostatParams { m: 1, ..Default::default() },
        ] {
            assert!(Mirostat::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zipf_fit_recovers_exponent() {
        // p_i = i^-1.3 exactly: logits -1.3 ln i.
        let top: Vec<TokenData> = (1..=100).map(|i| TokenData::new(i, -1.3 * (i as f32).ln())).collect();
        assert!((zipf_exponent(&top) - 1.3).abs() < 1e-5);
        assert!(zipf_exponent(&top[..1]).is_nan());
        // -inf neighbours are skipped, not turned into NaN.
        let mut masked = top[..10].to_vec();
        masked.push(TokenData::new(99, f32::NEG_INFINITY));
        masked.push(TokenData::new(98, f32::NEG_INFINITY));
        assert!((zipf_exponent(&masked) - 1.3).abs() < 1e-5);
    }

    #[test]
    fn k_is_continuous_through_s_equal_one_and_has_the_flat_limits() {
        let at = estimate_k(1.0, 10.0, 32_000.0);
        let below = estimate_k(1.0 - 1e-6, 10.0, 32_000.0);
        let above = estimate_k(1.0 + 1e-6, 10.0, 32_000.0);
        assert!(at.is_finite() && (at - below).abs() / at < 1e-4 && (at - above).abs() / at < 1e-4, "{below} {at} {above}");
        // Direct formula away from 1.
        let s = 1.4f64;
        let want = ((s - 1.0) * 2f64.powf(8.0) / (1.0 - 32_000f64.powf(-(s - 1.0)))).powf(1.0 / s);
        assert!((estimate_k(s, 8.0, 32_000.0) - want).abs() / want < 1e-12);
        // Flat top (s = 0): keep all when 2^mu > N - 1, else 1.
        assert_eq!(estimate_k(0.0, 16.0, 32_000.0), f64::INFINITY);
        assert_eq!(clamp_k(estimate_k(0.0, 10.0, 32_000.0), 500), 1);
        assert_eq!(clamp_k(f64::INFINITY, 500), 500);
        assert_eq!(clamp_k(f64::NAN, 500), 1);
    }

    #[test]
    fn apply_keeps_top_k_sorted_renormalised_and_is_pure() {
        let base = normal_logits(5000, 1);
        let mut s = Mirostat::new(params(9)).unwrap();
        let mut a = base.clone();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        let k = c.len();
        let sel = c.selected_token().unwrap();
        let out = c.as_slice().to_vec();
        assert_eq!(k, s.last.k);
        assert!(out.windows(2).all(|w| w[0].logit >= w[1].logit));
        let total: f64 = out.iter().map(|t| t.p as f64).sum();
        assert!((total - 1.0).abs() < 1e-5);
        let mut want: Vec<f32> = base.iter().map(|t| t.logit).collect();
        want.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(out.iter().map(|t| t.logit).collect::<Vec<_>>(), want[..k].to_vec());
        // Same input, same result; mu untouched by apply.
        let mut b = base.clone();
        let mut c2 = Candidates::new(&mut b);
        s.apply(&mut c2).unwrap();
        assert_eq!(c2.as_slice(), &out[..]);
        assert_eq!(c2.selected_token(), Some(sel));
        assert_eq!(s.mu(), 10.0);
        // Sorted input gives the same survivors.
        let mut sorted = base.clone();
        sorted.sort_by(|a, b| b.logit.partial_cmp(&a.logit).unwrap());
        let mut c3 = Candidates::with_state(&mut sorted, true, None);
        s.apply(&mut c3).unwrap();
        assert_eq!(c3.len(), k);
        assert_eq!(c3.selected_token(), Some(sel));
    }

    #[test]
    fn gathered_and_selected_paths_agree_on_large_vocabularies() {
        // Unsorted input of 60000 takes the gather path, sorted input the
        // plain one; mu values chosen to give small and large k.
        for (seed, mu) in [(1u64, 10.0f32), (2, 14.0), (3, 20.0), (4, 4.0)] {
            let base = normal_logits(60_000, seed);
            let mut s = Mirostat::new(params(seed as u32)).unwrap();
            s.mu = mu;
            let mut a = base.clone();
            let mut c = Candidates::new(&mut a);
            s.apply(&mut c).unwrap();
            let got: Vec<TokenData> = c.as_slice().to_vec();
            let mut sorted = base.clone();
            sorted.sort_by(|a, b| b.logit.partial_cmp(&a.logit).unwrap());
            let mut c2 = Candidates::with_state(&mut sorted, true, None);
            s.apply(&mut c2).unwrap();
            assert_eq!(got.len(), c2.len(), "mu {mu}");
            for (x, y) in got.iter().zip(c2.as_slice()) {
                assert_eq!(x.logit, y.logit, "mu {mu}");
                assert!((x.p - y.p).abs() <= 1e-7, "mu {mu}: {x:?} {y:?}");
            }
            let ids = |v: &[TokenData]| {
                let mut v: Vec<i32> = v.iter().map(|t| t.id).collect();
                v.sort();
                v
            };
            assert_eq!(ids(&got), ids(c2.as_slice()), "mu {mu}");
        }
    }

    #[test]
    fn accept_moves_mu_by_the_accepted_tokens_surprise() {
        let base = normal_logits(3000, 2);
        let mut s = Mirostat::new(params(5)).unwrap();
        let mut a = base.clone();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        // Accept a kept token other than the selected one when there is one.
        let t = *c.as_slice().last().unwrap();
        s.accept(t.id);
        let want = 10.0f32 - 0.1 * (-t.p.log2() - 5.0);
        assert_eq!(s.mu(), want);
        // A second accept without apply (a prompt token) leaves mu.
        s.accept(t.id);
        assert_eq!(s.mu(), want);
        // A token outside the kept set leaves mu.
        let mut a = base.clone();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        let outside = base.iter().map(|t| t.id).find(|id| !c.as_slice().iter().any(|k| k.id == *id)).unwrap();
        s.accept(outside);
        assert_eq!(s.mu(), want);
        assert_eq!(s.state_json()["surprise_bits"], serde_json::Value::Null);
        s.reset();
        assert_eq!(s.mu(), 10.0);
    }

    #[test]
    fn rejects_empty_and_all_masked_without_touching_them() {
        let mut s = Mirostat::new(params(1)).unwrap();
        let mut empty: Vec<TokenData> = Vec::new();
        assert_eq!(s.apply(&mut Candidates::new(&mut empty)), Err(SampleError::EmptyCandidates));
        let mut masked = vec![TokenData::new(0, f32::NEG_INFINITY), TokenData::new(1, f32::NAN)];
        let before = masked.clone();
        let mut c = Candidates::new(&mut masked);
        assert_eq!(s.apply(&mut c), Err(SampleError::NoFiniteLogits));
        assert_eq!(c.len(), 2);
        assert_eq!(format!("{:?}", masked), format!("{:?}", before));
    }

    #[test]
    fn few_finite_candidates_are_fitted_not_made_greedy() {
        // Five finite candidates and many masked: llama.cpp's fit hits 0/0
        // and keeps 1; ours fits the five.
        let mut a: Vec<TokenData> = (0..200).map(|i| TokenData::new(i, f32::NEG_INFINITY)).collect();
        for (i, l) in [2.0f32, 1.9, 1.8, 1.7, 1.6].iter().enumerate() {
            a[i * 7].logit = *l;
        }
        let mut s = Mirostat::new(MirostatParams { seed: 3, n_vocab: 200, ..Default::default() }).unwrap();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        assert!(c.len() >= 5, "kept {}", c.len());
        assert!(c.as_slice()[c.selected().unwrap()].p > 0.0);
    }
}
