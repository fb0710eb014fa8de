//! Dynamic temperature, in its two published forms.
//!
//! - [`TempExt`], the entropy-based form of llama.cpp's
//!   `llama_sampler_init_temp_ext(temp, delta, exponent)` (kalomaze's later
//!   entropy-based "DynaTemp"): with H the entropy of softmax(logits)
//!   and H_max = ln(n) that of the uniform distribution over the n
//!   candidates, `T = T_lo + (T_hi - T_lo) · (H / H_max)^exponent`, where
//!   `T_lo = max(0, temp - delta)` and `T_hi = temp + delta`. Confident
//!   (low-entropy) steps get a low temperature, flat ones a high one.
//! - [`DynamicTemperature`], kalomaze's early sigmoid form, as implemented
//!   by e-c-k-e-r/vall-e (`vall_e/samplers.py`, `dynamic_temperature`,
//!   which credits koboldcpp PR #464), seed 004 of this project: with
//!   p_max the top probability before scaling,
//!   `T = temp - (temp - min_temp) / (1 + exp(-k (p_max - c)))`. A top
//!   probability above c moves T towards min_temp, below c towards temp.
//!
//! Both then divide the logits by T (T <= 0 keeps only the best token, as
//! llama.cpp's temperature does; the reference would divide by zero).
//! Entropy and p_max are computed in one pass with f64 sums; no sort
//! (llama.cpp sorts the whole vocabulary for temp-ext).

use serde::{Deserialize, Serialize};

use super::mass::{exp_moments, exp_weights};
use crate::core::error::check_range;
use crate::core::math::softmax_in_place;
use crate::core::softmax_weights::{divide_exp_weights, max_and_moments, max_and_sum};
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenData};
use crate::samplers::temperature::apply_temperature;

/// Divides every logit by `t` as llama.cpp's temperature does: a true
/// division (bit-identical to llama.cpp, unlike a multiplication by 1/t,
/// which can break ties differently), nothing when `t == 1`, and for
/// `t <= 0` only the first best logit is kept (the others become -inf).
pub fn divide_logits(candidates: &mut Candidates<'_>, t: f32) {
    if t <= 0.0 {
        apply_temperature(candidates, t);
    } else if t != 1.0 {
        for x in candidates.as_mut_slice() {
            x.logit /= t;
        }
    }
}

// ---------------------------------------------------------------------------
// Entropy-based form (llama.cpp temp-ext)
// ---------------------------------------------------------------------------

/// Parameters of [`TempExt`], as llama.cpp's `llama_sampler_init_temp_ext`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempExtParams {
    /// Centre temperature (dimensionless). With `delta <= 0` this is a
    /// plain temperature: 1.0 leaves the logits unchanged, <= 0 keeps only
    /// the best token. Default 0.8 (llama.cpp's common default `temp`).
    pub temp: f32,
    /// Half-width of the temperature range (dimensionless): T varies in
    /// [max(0, temp - delta), temp + delta]. `delta <= 0` disables the
    /// dynamic part. Default 0.5 (llama.cpp's common default
    /// `dynatemp_range = 0` disables it).
    pub delta: f32,
    /// Exponent applied to the normalised entropy H / ln(n), >= 0: 1 maps
    /// entropy to temperature linearly, > 1 favours the low end, < 1 the
    /// high end, 0 always gives the top of the range. Default 1.0
    /// (llama.cpp's common default `dynatemp_exponent`).
    pub exponent: f32,
}

impl Default for TempExtParams {
    fn default() -> Self {
        Self { temp: 0.8, delta: 0.5, exponent: 1.0 }
    }
}

impl TempExtParams {
    /// Rejects non-finite values and a negative exponent.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !self.temp.is_finite() {
            return Err(ParamError::new("temp", self.temp, "must be a finite number (<= 0 means greedy)"));
        }
        if !self.delta.is_finite() {
            return Err(ParamError::new("delta", self.delta, "must be a finite number (<= 0 disables)"));
        }
        check_range("exponent", self.exponent, 0.0, f32::MAX, "must be a finite number >= 0")
    }
}

/// What a dynamic temperature sampler measured on its last `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct LastStep {
    /// The temperature applied.
    temp: f32,
    /// Entropy (temp-ext) or top probability (sigmoid form) it came from.
    measure: f64,
}

/// llama.cpp's entropy-based dynamic temperature.
#[derive(Debug, Clone)]
pub struct TempExt {
    params: TempExtParams,
    last: Option<LastStep>,
}

impl TempExt {
    /// A validated temp-ext sampler.
    pub fn new(params: TempExtParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params, last: None })
    }

    /// The parameters.
    pub fn params(&self) -> &TempExtParams {
        &self.params
    }
}

/// The entropy-based dynamic temperature of `candidates` (see the module
/// docs), with the entropy in nats; `None` when there is nothing to scale
/// (fewer than two candidates, or no finite logit).
pub fn temp_ext_temperature(candidates: &Candidates<'_>, params: &TempExtParams) -> Option<(f32, f64)> {
    let data = candidates.as_slice();
    let max = candidates.max_logit();
    let moments = (data.len() > 1 && max.is_finite()).then(|| exp_moments(data, max));
    temperature_for(data, max, moments, params)
}

/// [`temp_ext_temperature`] for `data` with largest logit `max`, given the
/// moments (S0, S1) of exp(logit - max) (see [`exp_moments`]) when `max` is
/// finite; `None` when there is nothing to scale.
fn temperature_for(data: &[TokenData], max: f32, moments: Option<(f64, f64)>, params: &TempExtParams) -> Option<(f32, f64)> {
    let n = data.len();
    if n <= 1 || max == f32::NEG_INFINITY {
        return None;
    }
    let entropy = match moments {
        Some(m) => entropy_of_moments(m),
        // max = +inf: uniform over the +inf tokens.
        None => (data.iter().filter(|t| t.logit == f32::INFINITY).count() as f64).ln(),
    };
    let max_entropy = (n as f64).ln();
    let lo = (params.temp - params.delta).max(0.0) as f64;
    let hi = (params.temp + params.delta) as f64;
    let t = lo + (hi - lo) * (entropy / max_entropy).powf(params.exponent as f64);
    Some((t as f32, entropy))
}

/// Entropy (nats) from the moments (S0, S1) of [`exp_moments`].
fn entropy_of_moments((s0, s1): (f64, f64)) -> f64 {
    (s0.ln() - s1 / s0).max(0.0)
}

/// Below this entropy (nats) [`apply_temp_ext`] recomputes the moments
/// with the subnormal weights the vectorised kernel drops.
const NEAR_ONE_HOT_NATS: f64 = 1e-20;

/// Applies temp-ext; returns what it measured (None when it only applied
/// the plain temperature or did nothing).
///
/// As llama.cpp: with `delta <= 0` a plain temperature `temp`; otherwise a
/// single candidate is left as it is, and after scaling every `p` is set to
/// the softmax of the new logits.
pub fn apply_temp_ext(candidates: &mut Candidates<'_>, params: &TempExtParams) -> Option<(f32, f64)> {
    if params.delta.is_nan() || params.delta <= 0.0 {
        divide_logits(candidates, params.temp);
        return None;
    }
    // The moments come from the logit scan (one read of the array, the
    // maximum with them; f64 sums, as a near-one-hot array's entropy is the
    // small difference of two of them), whose exponential flushes weights
    // under 1.2e-38 to 0. Those change S1 by less than n · 1.3e-36, nothing
    // beside an entropy above NEAR_ONE_HOT_NATS; under it (where T_lo = 0
    // turns a tiny entropy into a tiny positive T, not greedy) the moments
    // are taken again with them.
    let scanned = if candidates.len() > 1 { max_and_moments(candidates.as_slice()) } else { None };
    let data = candidates.as_mut_slice();
    let (max, moments) = match scanned {
        Some((max, s0, s1)) => {
            let fast = (s0, s1);
            (max, Some(if entropy_of_moments(fast) > NEAR_ONE_HOT_NATS { fast } else { exp_moments(data, max) }))
        }
        // A single candidate, a +inf logit, or none above -inf.
        None => (crate::core::math::max_logit(data), None),
    };
    let (t, entropy) = temperature_for(data, max, moments, params)?;
    // Division by t > 0 is monotone, so the largest logit divided by t is
    // the largest new logit: the division and the new weights take one pass.
    if t > 0.0 && t != 1.0 && (max / t).is_finite() {
        let data = candidates.as_mut_slice();
        let inv = (1.0 / divide_exp_weights(data, t, max / t)) as f32;
        crate::core::softmax_weights::scale_p(data, inv);
        return Some((t, entropy));
    }
    divide_logits(candidates, t);
    // Division by t > 0 is monotone, so the largest logit is still the
    // largest; greedy (t <= 0) keeps it as it is.
    let new_max = if t > 0.0 && t != 1.0 { max / t } else { max };
    let data = candidates.as_mut_slice();
    if new_max.is_finite() {
        let inv = (1.0 / exp_weights(data, new_max)) as f32;
        crate::core::softmax_weights::scale_p(data, inv);
    } else {
        softmax_in_place(data, new_max);
    }
    Some((t, entropy))
}

impl Sampler for TempExt {
    fn name(&self) -> &'static str {
        "temp-ext"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        self.last = apply_temp_ext(candidates, &self.params).map(|(temp, measure)| LastStep { temp, measure });
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn state_json(&self) -> serde_json::Value {
        match self.last {
            Some(s) => serde_json::json!({ "temp": s.temp, "entropy_nats": s.measure }),
            None => serde_json::Value::Null,
        }
    }
}

// ---------------------------------------------------------------------------
// Sigmoid form (kalomaze's early dynamic temperature, seed 004)
// ---------------------------------------------------------------------------

/// Parameters of [`DynamicTemperature`] (the sigmoid form).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicTemperatureParams {
    /// Temperature T (dimensionless) used when the top probability is low;
    /// the upper end of the range. Must be >= 0. Default 1.0 (the
    /// reference's default).
    pub temp: f32,
    /// Temperature T_min (dimensionless) approached when the top
    /// probability is high. Must be >= 0. `min_temp == temp` disables the
    /// dynamic part (a plain temperature T). Default 0.0 (the reference's
    /// default).
    pub min_temp: f32,
    /// Steepness k of the sigmoid, per unit of probability, >= 0. 0 makes
    /// T the constant midpoint (T + T_min) / 2. Default 10 (the
    /// reference's default).
    pub k: f32,
    /// Centre c of the sigmoid: the top probability at which T is midway
    /// between temp and min_temp, in [0, 1]. Default 0.5 (the reference's
    /// default).
    pub c: f32,
}

impl Default for DynamicTemperatureParams {
    fn default() -> Self {
        Self { temp: 1.0, min_temp: 0.0, k: 10.0, c: 0.5 }
    }
}

impl DynamicTemperatureParams {
    /// Rejects NaN, infinite and negative temperatures and steepness, and a
    /// centre outside [0, 1].
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("temp", self.temp, 0.0, f32::MAX, "must be a finite temperature >= 0")?;
        check_range("min_temp", self.min_temp, 0.0, f32::MAX, "must be a finite temperature >= 0")?;
        check_range("k", self.k, 0.0, f32::MAX, "must be a finite steepness >= 0")?;
        check_range("c", self.c, 0.0, 1.0, "must be a probability in [0, 1]")
    }

    /// The temperature for a top probability `p_max` (in [0, 1]).
    pub fn temperature_for(&self, p_max: f64) -> f32 {
        if self.min_temp == self.temp {
            return self.temp;
        }
        let (t, t_min) = (self.temp as f64, self.min_temp as f64);
        let sigmoid = 1.0 / (1.0 + (-(self.k as f64) * (p_max - self.c as f64)).exp());
        (t - (t - t_min) * sigmoid) as f32
    }
}

/// The sigmoid dynamic temperature (seed 004).
#[derive(Debug, Clone)]
pub struct DynamicTemperature {
    params: DynamicTemperatureParams,
    last: Option<LastStep>,
}

impl DynamicTemperature {
    /// A validated sigmoid dynamic temperature sampler.
    pub fn new(params: DynamicTemperatureParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params, last: None })
    }

    /// The parameters.
    pub fn params(&self) -> &DynamicTemperatureParams {
        &self.params
    }
}

/// Top probability of softmax(logits), 1 / S0 with S0 = sum exp(logit -
/// max) from the logit scan (one read of the array for the maximum and
/// S0, f32 lanes added in f64: relative error about 1e-7); `None` when no
/// logit is finite or +inf.
pub fn top_probability(candidates: &Candidates<'_>) -> Option<f64> {
    if let Some((_, s0)) = max_and_sum(candidates.as_slice()) {
        return Some(1.0 / s0);
    }
    // A +inf logit (uniform over the +inf ones), or none above -inf.
    let max = candidates.max_logit();
    if max == f32::NEG_INFINITY {
        return None;
    }
    Some(1.0 / candidates.as_slice().iter().filter(|t| t.logit == f32::INFINITY).count() as f64)
}

/// Applies the sigmoid dynamic temperature; returns (T, p_max), or `None`
/// when nothing was measured (empty input, no finite logit, or the dynamic
/// part disabled, in which case the plain temperature is applied).
pub fn apply_dynamic_temperature(candidates: &mut Candidates<'_>, params: &DynamicTemperatureParams) -> Option<(f32, f64)> {
    if params.min_temp == params.temp {
        divide_logits(candidates, params.temp);
        return None;
    }
    let p_max = top_probability(candidates)?;
    let t = params.temperature_for(p_max);
    divide_logits(candidates, t);
    Some((t, p_max))
}

impl Sampler for DynamicTemperature {
    fn name(&self) -> &'static str {
        "dyn-temp-sigmoid"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        self.last = apply_dynamic_temperature(candidates, &self.params).map(|(temp, measure)| LastStep { temp, measure });
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn state_json(&self) -> serde_json::Value {
        match self.last {
            Some(s) => serde_json::json!({ "temp": s.temp, "p_max": s.measure }),
            None => serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    fn logits_after(s: &mut dyn Sampler, logits: &[f32]) -> Vec<f32> {
        let mut a = tokens(logits);
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        a.iter().map(|t| t.logit).collect()
    }

    #[test]
    fn temp_ext_maps_entropy_to_the_range() {
        let p = TempExtParams { temp: 1.0, delta: 0.5, exponent: 1.0 };
        // Uniform: H = H_max, so T = temp + delta = 1.5.
        let mut s = TempExt::new(p).unwrap();
        let out = logits_after(&mut s, &[3.0, 3.0, 3.0, 3.0]);
        assert!(out.iter().all(|&l| (l - 2.0).abs() < 1e-6), "{out:?}");
        assert_eq!(s.state_json()["temp"], serde_json::json!(1.5f32));
        // One-hot-like: H ~ 0, so T ~ temp - delta = 0.5.
        let out = logits_after(&mut s, &[100.0, 0.0, 0.0]);
        assert!((out[0] - 200.0).abs() < 1e-2, "{out:?}");
        // Exponent 2 on a mid entropy.
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let (t, h) = temp_ext_temperature(&Candidates::new(&mut tokens(&logits)), &TempExtParams { exponent: 2.0, ..p }).unwrap();
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let want_h: f64 = -logits.iter().map(|&l| (l as f64).exp() / z).map(|q| q * q.ln()).sum::<f64>();
        assert!((h - want_h).abs() < 1e-6);
        let want_t = 0.5 + (want_h / 4f64.ln()).powi(2);
        assert!((t as f64 - want_t).abs() < 1e-6, "{t} vs {want_t}");
    }

    #[test]
    fn temp_ext_writes_probabilities_and_leaves_single_candidates() {
        let mut s = TempExt::new(TempExtParams::default()).unwrap();
        let mut a = tokens(&[1.0, 2.0, f32::NEG_INFINITY]);
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        let total: f32 = a.iter().map(|t| t.p).sum();
        assert!((total - 1.0).abs() < 1e-6 && a[2].p == 0.0, "{a:?}");
        assert_eq!(logits_after(&mut s, &[5.0]), vec![5.0]);
    }

    #[test]
    fn temp_ext_without_delta_is_plain_temperature() {
        let mut s = TempExt::new(TempExtParams { temp: 0.5, delta: 0.0, exponent: 1.0 }).unwrap();
        assert_eq!(logits_after(&mut s, &[1.0, -2.0]), vec![2.0, -4.0]);
        assert_eq!(logits_after(&mut s, &[5.0]), vec![10.0]);
        let mut s = TempExt::new(TempExtParams { temp: 1.0, delta: -1.0, exponent: 1.0 }).unwrap();
        assert_eq!(logits_after(&mut s, &[1.0, -2.0]), vec![1.0, -2.0]);
        for bad in [
            TempExtParams { temp: f32::NAN, ..Default::default() },
            TempExtParams { delta: f32::INFINITY, ..Default::default() },
            TempExtParams { exponent: -1.0, ..Default::default() },
        ] {
            assert!(TempExt::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sigmoid_form_follows_the_formula() {
        let p = DynamicTemperatureParams { temp: 1.2, min_temp: 0.2, k: 10.0, c: 0.5 };
        // Top probability exactly c: midway.
        assert!((p.temperature_for(0.5) - 0.7).abs() < 1e-6);
        // Very confident: near min_temp; flat: near temp.
        assert!((p.temperature_for(1.0) - (1.2 - 1.0 / (1.0 + (-5.0f64).exp())) as f32).abs() < 1e-6);
        assert!(p.temperature_for(0.0) > 1.19);
        // Two equal logits: p_max = 0.5, T = 0.7.
        let mut s = DynamicTemperature::new(p).unwrap();
        let out = logits_after(&mut s, &[0.7, 0.7]);
        assert!(out.iter().all(|&l| (l - 1.0).abs() < 1e-6), "{out:?}");
        assert_eq!(s.state_json()["p_max"], serde_json::json!(0.5));
        // k = 0: constant midpoint.
        let flat = DynamicTemperatureParams { k: 0.0, ..p };
        assert!((flat.temperature_for(0.99) - 0.7).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_form_disabled_when_min_equals_temp() {
        let mut s = DynamicTemperature::new(DynamicTemperatureParams { temp: 2.0, min_temp: 2.0, k: 10.0, c: 0.5 }).unwrap();
        assert_eq!(logits_after(&mut s, &[4.0, -2.0, 100.0]), vec![2.0, -1.0, 50.0]);
        let mut s = DynamicTemperature::new(DynamicTemperatureParams { temp: 1.0, min_temp: 1.0, k: 3.0, c: 0.1 }).unwrap();
        assert_eq!(logits_after(&mut s, &[4.0, -2.0]), vec![4.0, -2.0]);
        for bad in [
            DynamicTemperatureParams { temp: -1.0, ..Default::default() },
            DynamicTemperatureParams { min_temp: f32::NAN, ..Default::default() },
            DynamicTemperatureParams { k: -2.0, ..Default::default() },
            DynamicTemperatureParams { c: 1.5, ..Default::default() },
        ] {
            assert!(DynamicTemperature::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn top_probability_matches_an_f64_softmax() {
        let mut rng = crate::core::DrawStream::from_state(3);
        for (n, scale) in [(2usize, 1.0f64), (300, 3.0), (50_000, 3.0), (50_000, 40.0)] {
            let logits: Vec<f32> = (0..n).map(|_| (rng.next_normal() * scale) as f32).collect();
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let want = 1.0 / logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>();
            let got = top_probability(&Candidates::new(&mut tokens(&logits))).unwrap();
            assert!((got - want).abs() <= 1e-6 * want, "n {n}: {got} vs {want}");
        }
        // A +inf logit takes all the mass it shares with the other +inf ones.
        let inf = [f32::INFINITY, 2.0, f32::INFINITY, f32::NAN];
        assert_eq!(top_probability(&Candidates::new(&mut tokens(&inf))), Some(0.5));
        assert_eq!(top_probability(&Candidates::new(&mut tokens(&[f32::NEG_INFINITY, f32::NAN]))), None);
        // NaN weighs nothing beside a finite logit.
        assert_eq!(top_probability(&Candidates::new(&mut tokens(&[f32::NAN, 1.0]))), Some(1.0));
    }

    #[test]
    fn special_inputs() {
        let mut s = DynamicTemperature::new(DynamicTemperatureParams::default()).unwrap();
        let mut empty: Vec<TokenData> = Vec::new();
        s.apply(&mut Candidates::new(&mut empty)).unwrap();
        let out = logits_after(&mut s, &[f32::NEG_INFINITY, f32::NAN]);
        assert!(out[0] == f32::NEG_INFINITY && out[1].is_nan());
        let mut t = TempExt::new(TempExtParams::default()).unwrap();
        t.apply(&mut Candidates::new(&mut empty)).unwrap();
        let out = logits_after(&mut t, &[f32::INFINITY, 0.0, f32::NAN]);
        assert_eq!(out[0], f32::INFINITY);
    }
}
