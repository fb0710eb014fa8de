//! Length penalty on the stop token(s) (seed 004, the vall-e sampler
//! collection: `length_penalize` in e-c-k-e-r/vall-e `vall_e/samplers.py`).
//!
//! With `L` the number of tokens accepted since the last reset, the logit
//! of every stop token is scaled by
//!
//! ```text
//! s = max(L, 1)^factor
//! logit = logit > 0 ? logit / s : logit * s      (sign-aware)
//! ```
//!
//! so `factor > 0` restrains stopping more and more as the sequence grows
//! (longer outputs) and `factor < 0` encourages it (shorter outputs);
//! `factor == 0` (s = 1) disables. With `L <= 1` nothing changes.
//!
//! Differences from the reference, on purpose: the reference divides the
//! stop logit by `length^factor` whatever its sign (a negative stop logit is
//! then pushed the opposite way) and divides by zero at length 0; here the
//! scaling is sign-aware (as llama.cpp's repetition penalty) and the length
//! is at least 1.

use serde::{Deserialize, Serialize};

use super::util::{scale_sign_aware, IdTouch};
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenId};

/// Parameters of [`LengthPenalty`]. The stop tokens are given to the
/// constructor.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LengthPenaltyParams {
    /// Exponent of the generated length (dimensionless). `> 0` makes
    /// stopping less likely as the output grows, `< 0` more likely; `0.0`
    /// disables. Finite. Default 0.0 (as the reference: the direction is the
    /// user's choice).
    pub factor: f32,
}

impl Default for LengthPenaltyParams {
    fn default() -> Self {
        Self { factor: 0.0 }
    }
}

impl LengthPenaltyParams {
    /// Rejects a non-finite factor.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.factor.is_finite() {
            Ok(())
        } else {
            Err(ParamError::new("factor", self.factor, "must be finite (0.0 disables)"))
        }
    }

    /// The scale `max(length, 1)^factor` applied to the stop logits.
    pub fn scale(&self, length: u64) -> f32 {
        (length.max(1) as f64).powf(self.factor as f64) as f32
    }
}

/// Scales the stop tokens' logits with the generated length.
#[derive(Debug, Clone)]
pub struct LengthPenalty {
    params: LengthPenaltyParams,
    stop_tokens: Vec<TokenId>,
    /// Tokens accepted since the last reset.
    length: u64,
    touch: IdTouch,
}

impl LengthPenalty {
    /// A validated sampler for the given stop token ids (duplicates are
    /// dropped; an empty list makes the sampler a no-op).
    pub fn new(params: LengthPenaltyParams, mut stop_tokens: Vec<TokenId>) -> Result<Self, ParamError> {
        params.validate()?;
        stop_tokens.sort_unstable();
        stop_tokens.dedup();
        Ok(Self { params, stop_tokens, length: 0, touch: IdTouch::default() })
    }

    /// Tokens accepted since the last reset.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The stop token ids (sorted, distinct).
    pub fn stop_tokens(&self) -> &[TokenId] {
        &self.stop_tokens
    }
}

impl Sampler for LengthPenalty {
    fn name(&self) -> &'static str {
        "length-penalty"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        if self.params.factor == 0.0 || self.stop_tokens.is_empty() || self.length <= 1 {
            return Ok(());
        }
        let s = self.params.scale(self.length);
        let touched = self.touch.for_each(candidates.as_mut_slice(), &self.stop_tokens, |t, _| {
            t.logit = scale_sign_aware(t.logit, s);
        });
        if touched {
            candidates.set_sorted(false);
        }
        Ok(())
    }

    fn accept(&mut self, _token: TokenId) {
        self.length += 1;
    }

    fn reset(&mut self) {
        self.length = 0;
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "length": self.length, "scale": self.params.scale(self.length) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    fn run(s: &mut LengthPenalty, logits: &[f32]) -> Vec<f32> {
        let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        a.iter().map(|t| t.logit).collect()
    }

    #[test]
    fn positive_factor_restrains_negative_encourages() {
        let mut restrain = LengthPenalty::new(LengthPenaltyParams { factor: 1.0 }, vec![2, 0]).unwrap();
        let mut encourage = LengthPenalty::new(LengthPenaltyParams { factor: -1.0 }, vec![0, 2]).unwrap();
        for _ in 0..4 {
            restrain.accept(5);
            encourage.accept(5);
        }
        assert_eq!(run(&mut restrain, &[8.0, 1.0, -1.0]), vec![2.0, 1.0, -4.0]);
        assert_eq!(run(&mut encourage, &[8.0, 1.0, -1.0]), vec![32.0, 1.0, -0.25]);
        // grows with length
        restrain.accept(5);
        assert!(run(&mut restrain, &[8.0])[0] < 2.0);
        restrain.reset();
        assert_eq!(restrain.length(), 0);
        assert_eq!(run(&mut restrain, &[8.0]), vec![8.0]);
    }

    #[test]
    fn zero_factor_and_no_stop_tokens_are_no_ops() {
        let mut off = LengthPenalty::new(LengthPenaltyParams { factor: 0.0 }, vec![0]).unwrap();
        let mut none = LengthPenalty::new(LengthPenaltyParams { factor: 2.0 }, vec![]).unwrap();
        for _ in 0..10 {
            off.accept(1);
            none.accept(1);
        }
        assert_eq!(run(&mut off, &[3.0, -3.0]), vec![3.0, -3.0]);
        assert_eq!(run(&mut none, &[3.0, -3.0]), vec![3.0, -3.0]);
        assert!(LengthPenaltyParams { factor: f32::NAN }.validate().is_err());
        assert!(LengthPenaltyParams { factor: f32::NEG_INFINITY }.validate().is_err());
    }
}
