//! Mirostat v2: keep the candidates whose surprise is at most `mu`.

use serde::{Deserialize, Serialize};

use super::{json_f64, update_mu, Observed};
use crate::core::error::check_range;
use crate::core::math::logit_key;
use crate::core::partition::members_into;
use crate::core::radix::sort_logit_desc_into;
use crate::core::sampler::require_candidates;
use crate::core::softmax_weights::max_and_sum;
use crate::core::{Candidates, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId, RANDOM_SEED};
use crate::samplers::dist::pick_by_probability;

/// Parameters of [`MirostatV2`], in the order of llama.cpp's
/// `llama_sampler_init_mirostat_v2(seed, tau, eta)`.
///
/// There is no disabling value: to turn Mirostat off, leave it out of the
/// chain.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MirostatV2Params {
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
}

impl Default for MirostatV2Params {
    fn default() -> Self {
        Self { seed: RANDOM_SEED, tau: 5.0, eta: 0.1 }
    }
}

impl MirostatV2Params {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("tau", self.tau, 0.0, f32::MAX, "must be finite and >= 0 (bits)")?;
        check_range("eta", self.eta, 0.0, f32::MAX, "must be finite and >= 0")?;
        Ok(())
    }
}

/// Mirostat v2.
///
/// `apply`: keeps the candidates whose surprise `-log2 p` (p = softmax over
/// all current candidates) is at most `mu` bits, or the single most likely
/// one when none is, sorted descending with `p` renormalised over them;
/// samples one and selects it. The cut is done on logits
/// (`logit >= max + ln Z - mu ln 2`, Z summed in f64), so only the kept
/// candidates are sorted, never the whole vocabulary.
///
/// `accept(token)`: `mu -= eta * (-log2 p(token) - tau)`, with `p` the
/// renormalised probability of that token in the last `apply`. A token the
/// last `apply` did not keep (or kept with probability 0), or an `accept`
/// with no `apply` since the previous `accept` (prompt tokens), has no
/// finite surprise under the truncated distribution: `mu` is left unchanged
/// for that step, and the RNG still advances.
#[derive(Debug, Clone)]
pub struct MirostatV2 {
    params: MirostatV2Params,
    mu: f32,
    rng: SeededRng,
    observed: Observed,
    /// The kept candidates of an unsorted array, in array order (scratch
    /// of `apply`).
    kept: Vec<TokenData>,
    last_kept: usize,
    last_threshold: f64,
    last_surprise: Option<f32>,
}

impl MirostatV2 {
    /// A validated Mirostat v2 sampler with `mu = 2 * tau`.
    pub fn new(params: MirostatV2Params) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self {
            params,
            mu: 2.0 * params.tau,
            rng: SeededRng::new(params.seed),
            observed: Observed::default(),
            kept: Vec::new(),
            last_kept: 0,
            last_threshold: f64::NAN,
            last_surprise: None,
        })
    }

    /// The current maximum surprise `mu`, in bits.
    pub fn mu(&self) -> f32 {
        self.mu
    }

    /// The parameters.
    pub fn params(&self) -> &MirostatV2Params {
        &self.params
    }
}

/// The smallest logit whose surprise is at most `mu` bits:
/// `max + ln(sum exp(logit - max)) - mu ln 2`, with the maximum and the
/// sum (f64 totals of f32 lane sums, relative error about 1e-7) from one
/// logit scan; +inf when a logit is +inf, which keeps only the +inf
/// logits. `NoFiniteLogits` when no logit is above -inf.
fn logit_threshold(candidates: &Candidates<'_>, mu: f32) -> Result<f64, SampleError> {
    let mu_nats = mu as f64 * std::f64::consts::LN_2;
    match max_and_sum(candidates.as_slice()) {
        Some((max, sum)) => Ok(max as f64 + sum.ln() - mu_nats),
        None if candidates.max_logit() == f32::INFINITY => Ok(f64::INFINITY),
        None => Err(SampleError::NoFiniteLogits),
    }
}

/// The smallest f32 at or above `threshold`, and never -inf (which would
/// keep the -inf logits): the lower end of the kept logits in f32.
fn f32_at_or_above(threshold: f64) -> f32 {
    let lo = threshold as f32;
    if (lo as f64) < threshold {
        lo.next_up()
    } else {
        lo
    }
}

impl Sampler for MirostatV2 {
    fn name(&self) -> &'static str {
        "mirostat-v2"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        // A failed apply leaves nothing for accept to use.
        self.observed.kept.clear();
        require_candidates(candidates)?;
        let threshold = logit_threshold(candidates, self.mu)?;
        let kept = if candidates.is_sorted() {
            candidates.as_slice().partition_point(|t| logit_key(t.logit) as f64 >= threshold)
        } else {
            // The kept candidates (one SIMD pass finds them), sorted over
            // the front: only they are (their `p`, recomputed below, is
            // not carried). Past them the array keeps what they did not
            // overwrite; it is truncated below.
            let data = candidates.as_mut_slice();
            members_into(data, f32_at_or_above(threshold), f32::INFINITY, &mut self.kept);
            let kept = self.kept.len();
            sort_logit_desc_into(&self.kept, &mut data[..kept]);
            kept
        };
        if kept == 0 {
            // Nothing within mu: keep the most likely candidate alone.
            let best = candidates.argmax().ok_or(SampleError::NoFiniteLogits)?;
            candidates.as_mut_slice().swap(0, best);
        }
        candidates.truncate(kept.max(1));
        candidates.set_sorted(true);
        candidates.softmax();
        let index = pick_by_probability(candidates, self.rng.stream().next_f64());
        candidates.select(index);
        self.observed.record(candidates.as_slice());
        self.last_kept = candidates.len();
        self.last_threshold = threshold;
        self.last_surprise = None;
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        self.last_surprise = update_mu(&mut self.mu, &mut self.observed, token, self.params.tau, self.params.eta);
        self.rng.advance();
    }

    fn reset(&mut self) {
        self.mu = 2.0 * self.params.tau;
        self.rng.rewind();
        self.observed.kept.clear();
        self.last_kept = 0;
        self.last_threshold = f64::NAN;
        self.last_surprise = None;
    }

    fn selects(&self) -> bool {
        true
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    /// `mu_bits`, the parameters, and of the last step: `kept` (survivor
    /// count), `logit_threshold`, and `surprise_bits` of the last accepted
    /// token (null when it moved nothing).
    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mu_bits": self.mu,
            "tau_bits": self.params.tau,
            "eta": self.params.eta,
            "kept": self.last_kept,
            "logit_threshold": json_f64(self.last_threshold),
            "surprise_bits": self.last_surprise,
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

    /// Surprise in bits of every token under softmax over `data`, by id.
    fn surprises(data: &[TokenData]) -> Vec<f64> {
        let max = data.iter().map(|t| t.logit as f64).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = data.iter().map(|t| (t.logit as f64 - max).exp()).sum();
        let mut s = vec![0.0; data.len()];
        for t in data {
            s[t.id as usize] = -((t.logit as f64 - max).exp() / z).log2();
        }
        s
    }

    #[test]
    fn threshold_is_accurate() {
        let mut data = normal_logits(10_001, 3);
        let max = data.iter().map(|t| t.logit).fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = data.iter().map(|t| (t.logit as f64 - max).exp()).sum();
        let want = max + z.ln() - 7.5 * std::f64::consts::LN_2;
        let got = logit_threshold(&Candidates::new(&mut data), 7.5).unwrap();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let mut inf = vec![TokenData::new(0, 1.0), TokenData::new(1, f32::INFINITY)];
        assert_eq!(logit_threshold(&Candidates::new(&mut inf), 7.5), Ok(f64::INFINITY));
        let mut none = vec![TokenData::new(0, f32::NEG_INFINITY), TokenData::new(1, f32::NAN)];
        assert_eq!(logit_threshold(&Candidates::new(&mut none), 7.5), Err(SampleError::NoFiniteLogits));
    }

    #[test]
    fn the_kept_range_rounds_the_threshold_up_and_never_keeps_nan_or_minus_inf() {
        let logits = [1.0f32, f32::NAN, f32::NEG_INFINITY, 1.0f32.next_up(), -3.0, f32::INFINITY, f32::MIN];
        let data: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        for (threshold, want) in [
            // Just above 1 in f64: 1 is out, the next f32 is in.
            (1.0 + 1e-12, vec![3, 5]),
            (1.0, vec![0, 3, 5]),
            (f64::INFINITY, vec![5]),
            // Below every f32: every logit but NaN and -inf.
            (-1e300, vec![0, 3, 4, 5, 6]),
        ] {
            let mut kept = Vec::new();
            members_into(&data, f32_at_or_above(threshold), f32::INFINITY, &mut kept);
            assert_eq!(kept.iter().map(|t| t.id).collect::<Vec<_>>(), want, "threshold {threshold}");
            assert!(kept.iter().all(|t| t.logit == logits[t.id as usize]));
        }
    }

    #[test]
    fn validate_rejects_out_of_range() {
        assert!(MirostatV2Params::default().validate().is_ok());
        assert!(MirostatV2::new(MirostatV2Params { tau: -1.0, ..Default::default() }).is_err());
        assert!(MirostatV2::new(MirostatV2Params { eta: f32::NAN, ..Default::default() }).is_err());
    }

    #[test]
    fn keeps_exactly_the_tokens_within_mu() {
        for seed in 0..20u64 {
            let base = normal_logits(2000, seed);
            let surprise = surprises(&base);
            let mut s = MirostatV2::new(MirostatV2Params { seed: seed as u32, ..Default::default() }).unwrap();
            for sorted in [false, true] {
                let mut a = base.clone();
                if sorted {
                    a.sort_by(|x, y| y.logit.partial_cmp(&x.logit).unwrap());
                }
                let mut c = Candidates::with_state(&mut a, sorted, None);
                s.apply(&mut c).unwrap();
                let mut kept: Vec<i32> = c.as_slice().iter().map(|t| t.id).collect();
                kept.sort();
                let mut want: Vec<i32> = (0..2000).filter(|&i| surprise[i as usize] <= 10.0).collect();
                if want.is_empty() {
                    want.push(base.iter().max_by(|a, b| a.logit.partial_cmp(&b.logit).unwrap()).unwrap().id);
                }
                assert_eq!(kept, want, "seed {seed} sorted {sorted}");
                assert!(c.as_slice().windows(2).all(|w| w[0].logit >= w[1].logit));
                assert!(c.is_sorted());
            }
        }
    }

    #[test]
    fn apply_is_pure_and_accept_updates_mu() {
        let base = normal_logits(1000, 7);
        let mut s = MirostatV2::new(MirostatV2Params { seed: 1, ..Default::default() }).unwrap();
        let mut a = base.clone();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        let out = c.as_slice().to_vec();
        let sel = c.selected().unwrap();
        let mut b = base.clone();
        let mut c2 = Candidates::new(&mut b);
        s.apply(&mut c2).unwrap();
        assert_eq!(c2.as_slice(), &out[..]);
        assert_eq!(c2.selected(), Some(sel));
        assert_eq!(s.mu(), 10.0);
        s.accept(out[sel].id);
        assert_eq!(s.mu(), 10.0 - 0.1 * (-out[sel].p.log2() - 5.0));
        let mu = s.mu();
        s.accept(out[sel].id); // no apply in between: unchanged
        assert_eq!(s.mu(), mu);
        let mut clone = s.box_clone();
        s.reset();
        assert_eq!(s.mu(), 10.0);
        assert_eq!(clone.state_json()["mu_bits"].as_f64().unwrap() as f32, mu);
        clone.reset();
        assert_eq!(clone.state_json()["mu_bits"].as_f64().unwrap(), 10.0);
    }

    #[test]
    fn nothing_within_mu_keeps_the_best_alone() {
        let mut s = MirostatV2::new(MirostatV2Params { seed: 1, tau: 0.0, eta: 0.1 }).unwrap();
        // mu = 0: only a token with p = 1 would fit.
        let mut a = vec![TokenData::new(0, 1.0), TokenData::new(1, 3.0), TokenData::new(2, 2.0)];
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.as_slice()[0].id, 1);
        assert_eq!(c.as_slice()[0].p, 1.0);
        assert_eq!(c.selected(), Some(0));
    }

    #[test]
    fn observed_surprise_tracks_tau() {
        // The controller's purpose: the mean surprise of accepted tokens
        // approaches tau.
        let mut s = MirostatV2::new(MirostatV2Params { seed: 11, tau: 4.0, eta: 0.1 }).unwrap();
        let (mut sum, mut count) = (0.0f64, 0);
        for step in 0..4000u64 {
            let mut a = normal_logits(3000, step);
            let mut c = Candidates::new(&mut a);
            s.apply(&mut c).unwrap();
            let t = c.as_slice()[c.selected().unwrap()];
            s.accept(t.id);
            if step >= 500 {
                sum += -(t.p as f64).log2();
                count += 1;
            }
        }
        let mean = sum / count as f64;
        assert!((mean - 4.0).abs() < 0.25, "mean surprise {mean}");
    }
}
