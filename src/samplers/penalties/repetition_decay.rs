//! Repetition penalty with distance decay (seed 004, the vall-e sampler
//! collection: `reptition_penalize` in e-c-k-e-r/vall-e `vall_e/samplers.py`).
//!
//! For every token in the window at distance `d` (1 = the most recently
//! accepted token), the token's logit is penalised by the divisor
//!
//! ```text
//! q(d) = factor * d^decay
//! ```
//!
//! sign-aware as in llama.cpp: a positive logit is divided by `q`, a logit
//! <= 0 multiplied by it. `decay > 0` makes the penalty grow with distance,
//! `decay < 0` makes it fade with distance, `decay == 0` gives every
//! occurrence the plain `factor`.
//!
//! Differences from the reference, on purpose:
//! - the reference divides every logit, negative ones included, which makes
//!   a repeated token with a negative logit MORE likely; we use llama.cpp's
//!   sign-aware form;
//! - the divisor never crosses 1: with `factor > 1` it is at least 1 (a
//!   fading penalty fades to nothing, it does not turn into a bonus), with
//!   `factor < 1` (a bonus) it is at most 1. The reference lets
//!   `factor * d^decay` cross 1 (e.g. factor 1.5, decay -0.5 at d = 9
//!   gives 0.5, a bonus);
//! - the window is an explicit `limit` (the reference's was implicitly 75
//!   tokens, "one second of audio under EnCodec").
//!
//! With `one_time` each distinct token is penalised once, at its nearest
//! distance; without it every occurrence divides again (the divisors
//! multiply).

use serde::{Deserialize, Serialize};

use super::util::{scale_sign_aware, History, IdMap, IdTouch};
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenId};

/// Parameters of [`RepetitionDecay`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RepetitionDecayParams {
    /// Penalty factor at distance 1 (dimensionless divisor of positive
    /// logits, multiplier of negative ones). Finite and > 0; `1.0`
    /// disables; values below 1 reward repetition. Default 1.1 (the
    /// reference's default is 1.0, i.e. off).
    pub factor: f32,
    /// Distance exponent: the divisor at distance d is `factor * d^decay`.
    /// Finite; `0.0` makes the penalty independent of distance. Default 0.0.
    pub decay: f32,
    /// Penalise each distinct token once, at its nearest occurrence (true),
    /// or once per occurrence in the window (false). Default true (as the
    /// reference).
    pub one_time: bool,
    /// Window in tokens: occurrences farther than `limit` are ignored.
    /// `0` = no limit (every token accepted since the last reset; memory
    /// and cost then grow with the generation). Default 75 (the reference's
    /// implicit window).
    pub limit: u32,
}

impl Default for RepetitionDecayParams {
    fn default() -> Self {
        Self { factor: 1.1, decay: 0.0, one_time: true, limit: 75 }
    }
}

impl RepetitionDecayParams {
    /// Rejects a non-finite or non-positive factor and a non-finite decay.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Err(ParamError::new("factor", self.factor, "must be finite and > 0 (1.0 disables)"));
        }
        if !self.decay.is_finite() {
            return Err(ParamError::new("decay", self.decay, "must be finite (0.0: no decay)"));
        }
        Ok(())
    }

    /// True when the sampler changes nothing (`factor == 1`).
    pub fn is_disabled(&self) -> bool {
        self.factor == 1.0
    }

    /// The divisor for an occurrence at distance `d >= 1`, clamped so that
    /// it never crosses 1 (see the module doc).
    pub fn divisor(&self, d: usize) -> f64 {
        let f = self.factor as f64;
        let q = if self.decay == 0.0 { f } else { f * (d as f64).powf(self.decay as f64) };
        if f >= 1.0 {
            q.max(1.0)
        } else {
            q.min(1.0)
        }
    }
}

/// Repetition penalty whose strength depends on how far back the token was.
#[derive(Debug, Clone)]
pub struct RepetitionDecay {
    params: RepetitionDecayParams,
    history: History,
    /// Scratch for apply: id -> index into `ids`/`divs`.
    index: IdMap<u32>,
    ids: Vec<TokenId>,
    divs: Vec<f64>,
    touch: IdTouch,
}

impl RepetitionDecay {
    /// A validated sampler with an empty history.
    pub fn new(params: RepetitionDecayParams) -> Result<Self, ParamError> {
        params.validate()?;
        let cap = (params.limit > 0).then_some(params.limit as usize);
        Ok(Self {
            params,
            history: History::new(cap),
            index: IdMap::default(),
            ids: Vec::new(),
            divs: Vec::new(),
            touch: IdTouch::default(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &RepetitionDecayParams {
        &self.params
    }
}

impl Sampler for RepetitionDecay {
    fn name(&self) -> &'static str {
        "repetition-decay"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        if self.params.is_disabled() || candidates.is_empty() {
            return Ok(());
        }
        self.index.clear();
        self.ids.clear();
        self.divs.clear();
        for (d0, &tok) in self.history.window().iter().rev().enumerate() {
            let d = d0 + 1;
            match self.index.get(&tok) {
                Some(_) if self.params.one_time => {}
                Some(&k) => self.divs[k as usize] *= self.params.divisor(d),
                None => {
                    self.index.insert(tok, self.ids.len() as u32);
                    self.ids.push(tok);
                    self.divs.push(self.params.divisor(d));
                }
            }
        }
        let divs = &self.divs;
        let touched = self.touch.for_each(candidates.as_mut_slice(), &self.ids, |t, k| {
            t.logit = scale_sign_aware(t.logit, divs[k] as f32);
        });
        if touched {
            candidates.set_sorted(false);
        }
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        if !self.params.is_disabled() {
            self.history.push(token);
        }
    }

    fn reset(&mut self) {
        self.history.clear();
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "window_len": self.history.window().len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    fn run(s: &mut RepetitionDecay, logits: &[f32]) -> Vec<f32> {
        let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        a.iter().map(|t| t.logit).collect()
    }

    fn with_history(p: RepetitionDecayParams, hist: &[TokenId]) -> RepetitionDecay {
        let mut s = RepetitionDecay::new(p).unwrap();
        hist.iter().for_each(|&t| s.accept(t));
        s
    }

    #[test]
    fn decay_sign_changes_direction() {
        // history: 0 at distance 4, 1 at distance 1
        let hist = [0, 2, 3, 1];
        let grow = RepetitionDecayParams { factor: 2.0, decay: 1.0, one_time: true, limit: 0 };
        let out = run(&mut with_history(grow, &hist), &[8.0, 8.0, 0.0, 0.0, 8.0]);
        assert_eq!(out[0], 8.0 / 8.0); // 2 * 4^1
        assert_eq!(out[1], 8.0 / 2.0); // 2 * 1^1
        assert_eq!(out[4], 8.0);
        let fade = RepetitionDecayParams { decay: -0.5, ..grow };
        let out = run(&mut with_history(fade, &hist), &[8.0, 8.0, -8.0, 0.0, 8.0]);
        assert_eq!(out[0], 8.0); // 2 * 4^-0.5 = 1: no penalty left
        assert_eq!(out[1], 4.0);
        assert!((out[2] - -8.0 * 2.0 * 3f32.powf(-0.5)).abs() < 1e-5); // distance 3
    }

    #[test]
    fn penalty_never_becomes_a_bonus() {
        let p = RepetitionDecayParams { factor: 1.5, decay: -1.0, one_time: true, limit: 0 };
        let mut hist = vec![0];
        hist.extend(std::iter::repeat_n(1, 20));
        let out = run(&mut with_history(p, &hist), &[3.0, 3.0]);
        assert_eq!(out[0], 3.0);
        assert_eq!(out[1], 2.0);
    }

    #[test]
    fn one_time_vs_every_occurrence() {
        let hist = [0, 0, 0];
        let once = RepetitionDecayParams { factor: 2.0, decay: 0.0, one_time: true, limit: 0 };
        assert_eq!(run(&mut with_history(once, &hist), &[8.0]), vec![4.0]);
        let each = RepetitionDecayParams { one_time: false, ..once };
        assert_eq!(run(&mut with_history(each, &hist), &[8.0]), vec![1.0]);
        assert_eq!(run(&mut with_history(each, &hist), &[-1.0]), vec![-8.0]);
        // one_time uses the nearest distance
        let near = RepetitionDecayParams { factor: 2.0, decay: 1.0, one_time: true, limit: 0 };
        assert_eq!(run(&mut with_history(near, &[0, 1, 0, 1]), &[16.0]), vec![16.0 / 4.0]);
    }

    #[test]
    fn limit_ignores_far_tokens() {
        let p = RepetitionDecayParams { factor: 2.0, decay: 0.0, one_time: true, limit: 2 };
        let mut s = with_history(p, &[0, 1, 2]);
        assert_eq!(run(&mut s, &[4.0, 4.0, 4.0]), vec![4.0, 2.0, 2.0]);
        s.reset();
        assert_eq!(run(&mut s, &[4.0, 4.0, 4.0]), vec![4.0, 4.0, 4.0]);
    }

    #[test]
    fn factor_one_is_a_no_op_and_validate() {
        let p = RepetitionDecayParams { factor: 1.0, decay: 2.0, one_time: false, limit: 0 };
        assert_eq!(run(&mut with_history(p, &[0, 0, 1]), &[3.0, -3.0]), vec![3.0, -3.0]);
        let d = RepetitionDecayParams::default();
        for bad in [
            RepetitionDecayParams { factor: 0.0, ..d },
            RepetitionDecayParams { factor: f32::NAN, ..d },
            RepetitionDecayParams { factor: f32::INFINITY, ..d },
            RepetitionDecayParams { decay: f32::NAN, ..d },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
