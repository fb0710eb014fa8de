//! The parameters of the AlphaSampler and seed 000's parameter maps.

use serde::{Deserialize, Serialize};

use crate::core::error::check_range;
use crate::core::{ParamError, RANDOM_SEED};

/// Largest accepted `window`.
pub(crate) const MAX_WINDOW: u32 = 1_000_000;
/// Largest accepted `penalty_last_n`.
pub(crate) const MAX_PENALTY_LAST_N: i32 = 1_000_000;
/// Largest accepted `lookahead_k` (each candidate takes one spare KV
/// sequence; llama.cpp allows at most 256 sequences).
pub(crate) const MAX_LOOKAHEAD_K: i32 = 64;

/// Parameters of [`super::AlphaSampler`] (C: `entropix_alpha_params`).
///
/// alpha is dimensionless: normalised token entropy + normalised attention
/// entropy, each in [0, 1], so alpha is in [0, 2]. Defaults are the
/// reference's (EdwardDali/alpha `SamplerConfig`, seed 000) except
/// `lookahead_k` (reference `spec_top_k` 10; 3 here, as the reference notes
/// of this project ask) and `window` (the reference's code keeps a window of
/// 1, its README 100; 100 here).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlphaParams {
    /// Number of steps whose alpha is averaged (the current step's alpha
    /// and the alphas of the last `window - 1` accepted steps), in
    /// [1, 1000000]. `1` disables the averaging (each step uses its own
    /// alpha). Default 1 (reference 100; see `Default`).
    pub window: u32,
    /// COLD below this (dimensionless alpha, compared with the window
    /// mean): `alpha < cold_point`. Finite. COLD is checked first, so a
    /// `cold_point` above `hot_point` makes COLD win where both hold.
    /// Default 0.6.
    pub cold_point: f32,
    /// HOT above this: `alpha > hot_point` (and not COLD). Finite.
    /// Default 1.8.
    pub hot_point: f32,
    /// Window of the repetition penalty: the last n accepted tokens, in
    /// [0, 1000000]. `0` disables the penalty. Default 0 (seed 000: 128;
    /// see `Default`).
    pub penalty_last_n: i32,
    /// Run the COLD-state lookahead when a context is attached
    /// (`entropix_alpha_set_lookahead`). `false` disables it: COLD steps
    /// then sample with the derived parameters like the other states.
    /// Default false (reference true; see `Default`: with the lookahead on,
    /// it does nothing until a context is attached).
    pub lookahead: bool,
    /// Most candidates the lookahead decodes, in [1, 64]; each one uses one
    /// spare KV sequence (the context needs `n_seq_max >= lookahead_k + 1`).
    /// Default 3.
    pub lookahead_k: i32,
    /// The lookahead takes the best candidates while their cumulative
    /// probability (softmax at T = 1 of the penalised logits) stays
    /// `<= lookahead_p`, at least one; in (0, 1]. `1` removes the mass
    /// limit (only `lookahead_k` counts). Default 0.9.
    pub lookahead_p: f32,
    /// Weight of the mean per-head attention entropy (bits) of a lookahead
    /// candidate in its score. Finite. Default 0.8.
    pub entropy_weight: f32,
    /// Weight of the variance across heads of the per-head attention
    /// entropies (bits²) of a lookahead candidate in its score. Finite.
    /// Default 0.2.
    pub var_entropy_weight: f32,
    /// RNG seed. `0xFFFFFFFF` (llama.cpp's `LLAMA_DEFAULT_SEED`) draws a
    /// random seed at construction. Default `0xFFFFFFFF`.
    pub seed: u32,
}

impl Default for AlphaParams {
    /// [`AlphaParams::reference`] without its three parts that `eval`
    /// showed hurt the text, on SmolLM2-135M-Instruct (100 arithmetic
    /// questions, 12 open prompts; greedy 15/100, the llama.cpp-like
    /// default chain 11/100 at seq-rep-4 0.022, NLL 1.07 nats/token):
    ///
    /// | settings | correct | seq-rep-4 | NLL | chain µs/token |
    /// |---|---|---|---|---|
    /// | reference (window 100, penalty 128, lookahead k 3) | 2/100 | 0.003 | 1.53 | 13037 |
    /// | no repetition penalty | 3/100 | 0.053 | 1.02 | 13791 |
    /// | and window 1 | 6/100 | 0.035 | 1.07 | 4368 |
    /// | and no lookahead (the default) | 12/100 | 0.051 | 0.82 | 204 |
    ///
    /// - `penalty_last_n` 0: seed 000's penalty (up to 1.3 over 128
    ///   tokens, the prompt included) penalises the numbers a question
    ///   asks about.
    /// - `window` 1: a 100-token mean of alpha cannot see that this token
    ///   is a confident one (a digit of an answer).
    /// - `lookahead` false: choosing among the top candidates by the
    ///   attention entropy one step ahead picks less likely tokens and
    ///   costs a batched decode per COLD step (20x the sampler's time).
    fn default() -> Self {
        Self { window: 1, penalty_last_n: 0, lookahead: false, ..Self::reference() }
    }
}

impl AlphaParams {
    /// The settings of seed 000 and its reference (EdwardDali/alpha): the `reference`
    /// preset (`--preset reference` in the CLI). [`Default`] departs from
    /// it where `eval` showed better text; the fields say where and why.
    pub fn reference() -> Self {
        Self {
            window: 100,
            cold_point: 0.6,
            hot_point: 1.8,
            penalty_last_n: 128,
            lookahead: true,
            lookahead_k: 3,
            lookahead_p: 0.9,
            entropy_weight: 0.8,
            var_entropy_weight: 0.2,
            seed: RANDOM_SEED,
        }
    }
}

impl AlphaParams {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(ParamError::new("window", self.window, "must be in [1, 1000000] (1 disables averaging)"));
        }
        for (name, v) in [
            ("cold_point", self.cold_point),
            ("hot_point", self.hot_point),
            ("entropy_weight", self.entropy_weight),
            ("var_entropy_weight", self.var_entropy_weight),
        ] {
            check_range(name, v, f32::MIN, f32::MAX, "must be a finite number")?;
        }
        if !(0..=MAX_PENALTY_LAST_N).contains(&self.penalty_last_n) {
            return Err(ParamError::new("penalty_last_n", self.penalty_last_n, "must be in [0, 1000000] (0 disables)"));
        }
        if !(1..=MAX_LOOKAHEAD_K).contains(&self.lookahead_k) {
            return Err(ParamError::new("lookahead_k", self.lookahead_k, "must be in [1, 64]"));
        }
        if !(self.lookahead_p.is_finite() && self.lookahead_p > 0.0 && self.lookahead_p <= 1.0) {
            return Err(ParamError::new("lookahead_p", self.lookahead_p, "must be in (0, 1] (1 removes the mass limit)"));
        }
        Ok(())
    }
}

/// The thermodynamic state of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThermoState {
    /// alpha < cold_point: high certainty; lookahead when a context is
    /// attached.
    Cold,
    /// alpha > hot_point: high uncertainty.
    Hot,
    /// Everything else.
    Mixed,
}

impl ThermoState {
    /// The state of window-mean alpha `alpha`: COLD when `alpha <
    /// cold_point`, else HOT when `alpha > hot_point`, else MIXED (the
    /// reference's order). NaN is MIXED. The f32 thresholds are compared
    /// exactly as they are stored, widened to f64 (`0.6f32` is
    /// 0.6000000238...; an alpha of exactly `0.6f64` is therefore COLD).
    pub fn of(alpha: f64, cold_point: f32, hot_point: f32) -> Self {
        if alpha < cold_point as f64 {
            ThermoState::Cold
        } else if alpha > hot_point as f64 {
            ThermoState::Hot
        } else {
            ThermoState::Mixed
        }
    }

    /// `"cold"`, `"hot"` or `"mixed"`.
    pub fn name(self) -> &'static str {
        match self {
            ThermoState::Cold => "cold",
            ThermoState::Hot => "hot",
            ThermoState::Mixed => "mixed",
        }
    }
}

/// Seed 000's temperature map: `0.1 + 1.2 / (1 + exp(-1.5 (alpha - 1)))`,
/// in (0.1, 1.3).
pub fn temperature_of(alpha: f64) -> f64 {
    0.1 + 1.2 / (1.0 + (-1.5 * (alpha - 1.0)).exp())
}

/// Seed 000's top-k map before rounding:
/// `10 + 190 (atan(alpha - 1) / pi + 0.5)`, in (10, 200).
pub fn top_k_raw_of(alpha: f64) -> f64 {
    10.0 + 190.0 * ((alpha - 1.0).atan() / std::f64::consts::PI + 0.5)
}

/// The top-k used: [`top_k_raw_of`] rounded to the nearest integer (half
/// away from zero). The reference truncates (`int(...)`); rounding is the
/// nearest integer to the seed's formula. 10..=200 for every finite alpha.
pub fn top_k_of(alpha: f64) -> i32 {
    top_k_raw_of(alpha).round() as i32
}

/// Seed 000's top-p map: `0.85 + 0.1 (2 / (1 + exp(-0.8 alpha)) - 1)`,
/// in (0.75, 0.95); 0.85 at alpha = 0 and above it for alpha > 0.
pub fn top_p_of(alpha: f64) -> f64 {
    0.85 + 0.1 * (2.0 / (1.0 + (-0.8 * alpha).exp()) - 1.0)
}

/// Seed 000's repetition-penalty map:
/// `1 + 0.3 / (1 + exp(-2 (alpha - 1)))`, in (1.0, 1.3).
pub fn rep_penalty_of(alpha: f64) -> f64 {
    1.0 + 0.3 / (1.0 + (-2.0 * (alpha - 1.0)).exp())
}

/// The four parameters derived from one alpha.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaDerived {
    /// Temperature (dimensionless), [`temperature_of`].
    pub temperature: f64,
    /// Top-k, [`top_k_of`].
    pub top_k: i32,
    /// Top-p, [`top_p_of`].
    pub top_p: f64,
    /// Repetition penalty factor, [`rep_penalty_of`].
    pub rep_penalty: f64,
}

impl AlphaDerived {
    /// All four maps at `alpha`.
    pub fn of(alpha: f64) -> Self {
        Self { temperature: temperature_of(alpha), top_k: top_k_of(alpha), top_p: top_p_of(alpha), rep_penalty: rep_penalty_of(alpha) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let p = AlphaParams::default();
        p.validate().unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<AlphaParams>(&json).unwrap(), p);
        assert_eq!(serde_json::from_str::<AlphaParams>("{}").unwrap(), p);
    }

    #[test]
    fn validate_rejects_out_of_range() {
        let bad = [
            AlphaParams { window: 0, ..Default::default() },
            AlphaParams { cold_point: f32::NAN, ..Default::default() },
            AlphaParams { hot_point: f32::INFINITY, ..Default::default() },
            AlphaParams { penalty_last_n: -1, ..Default::default() },
            AlphaParams { lookahead_k: 0, ..Default::default() },
            AlphaParams { lookahead_k: 65, ..Default::default() },
            AlphaParams { lookahead_p: 0.0, ..Default::default() },
            AlphaParams { lookahead_p: 1.5, ..Default::default() },
            AlphaParams { entropy_weight: f32::NAN, ..Default::default() },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }

    #[test]
    fn maps_stay_in_their_ranges() {
        for i in 0..=200 {
            let a = i as f64 / 100.0;
            let d = AlphaDerived::of(a);
            assert!(d.temperature > 0.1 && d.temperature < 1.3);
            assert!((10..=200).contains(&d.top_k));
            assert!(d.top_p >= 0.85 && d.top_p < 0.95);
            assert!(d.rep_penalty > 1.0 && d.rep_penalty < 1.3);
        }
        assert_eq!(top_k_of(1.0), 105);
        let (c, h) = (0.6f32, 1.8f32);
        assert_eq!(ThermoState::of(0.599, c, h), ThermoState::Cold);
        assert_eq!(ThermoState::of(c as f64, c, h), ThermoState::Mixed);
        assert_eq!(ThermoState::of(h as f64, c, h), ThermoState::Mixed);
        assert_eq!(ThermoState::of(1.8001, c, h), ThermoState::Hot);
    }
}
