//! llama.cpp's repetition, frequency and presence penalties over the last n
//! accepted tokens.
//!
//! Source: the repetition penalty of Keskar et al. 2019 ("CTRL", section
//! 4.1) in llama.cpp's sign-aware form, plus OpenAI's frequency and presence
//! penalties. Same behaviour as `llama_sampler_init_penalties(n_vocab,
//! penalty_last_n, penalty_repeat, penalty_freq, penalty_present)`:
//! for every candidate whose id occurs `c > 0` times in the window,
//!
//! ```text
//! logit = logit <= 0 ? logit * repeat : logit / repeat
//! logit -= c * freq + present
//! ```
//!
//! Differences in cost, not in results: the counts are kept up to date in
//! `accept` (as llama.cpp does), and `apply` touches only the penalised
//! tokens when the array is in vocabulary order (`data[i].id == i`), where
//! llama.cpp looks up every candidate in a hash map.

use serde::{Deserialize, Serialize};

use super::util::{scale_sign_aware, History, IdMap, IdTouch};
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenId};

/// Parameters of [`Penalties`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PenaltiesParams {
    /// Window: how many of the most recently accepted tokens are counted.
    /// `0` disables the sampler (nothing is recorded). As in llama.cpp's
    /// sampler, a negative value is treated as 0 (disabled): the "-1 = whole
    /// context" convention of llama.cpp's command line is resolved by its
    /// `common` layer, not by the sampler; pass the context size instead.
    /// Default 64.
    pub penalty_last_n: i32,
    /// Repetition penalty (dimensionless factor): positive logits of
    /// repeated tokens are divided by it, negative ones multiplied. Must be
    /// finite and > 0 (with 1/repeat finite). `1.0` disables. Default 1.1
    /// (llama.cpp's `common` default is 1.0, i.e. off).
    pub penalty_repeat: f32,
    /// Frequency penalty (logit units per occurrence in the window): subtracts
    /// `count * freq`. `0.0` disables. Default 0.0.
    pub penalty_freq: f32,
    /// Presence penalty (logit units): subtracted once from every token that
    /// occurs in the window. `0.0` disables. Default 0.0.
    pub penalty_present: f32,
}

impl Default for PenaltiesParams {
    fn default() -> Self {
        Self { penalty_last_n: 64, penalty_repeat: 1.1, penalty_freq: 0.0, penalty_present: 0.0 }
    }
}

impl PenaltiesParams {
    /// The same checks as llama.cpp's `common_sampler` parameters: repeat
    /// finite, > 0 and with a finite inverse; freq and present finite.
    pub fn validate(&self) -> Result<(), ParamError> {
        let r = self.penalty_repeat;
        if !(r.is_finite() && r > 0.0 && (1.0 / r).is_finite()) {
            return Err(ParamError::new("penalty_repeat", r, "must be finite and > 0 (1.0 disables)"));
        }
        if !self.penalty_freq.is_finite() {
            return Err(ParamError::new("penalty_freq", self.penalty_freq, "must be finite (0.0 disables)"));
        }
        if !self.penalty_present.is_finite() {
            return Err(ParamError::new("penalty_present", self.penalty_present, "must be finite (0.0 disables)"));
        }
        Ok(())
    }

    /// True when the sampler changes nothing: no window, or all three
    /// penalties at their neutral values (llama.cpp's `is_disabled`).
    pub fn is_disabled(&self) -> bool {
        self.penalty_last_n <= 0 || (self.penalty_repeat == 1.0 && self.penalty_freq == 0.0 && self.penalty_present == 0.0)
    }
}

/// Repetition, frequency and presence penalties (llama.cpp's `penalties`).
#[derive(Debug, Clone)]
pub struct Penalties {
    params: PenaltiesParams,
    /// The accepted tokens (the last `penalty_last_n` count).
    history: History,
    /// Occurrences of each token in the window (only ids with count > 0).
    counts: IdMap<u32>,
    /// Scratch for apply: the penalised ids and their counts.
    ids: Vec<TokenId>,
    vals: Vec<u32>,
    touch: IdTouch,
}

impl Penalties {
    /// A validated penalties sampler with an empty history.
    pub fn new(params: PenaltiesParams) -> Result<Self, ParamError> {
        params.validate()?;
        let cap = params.penalty_last_n.max(0) as usize;
        Ok(Self {
            params,
            history: History::new(Some(cap)),
            counts: IdMap::default(),
            ids: Vec::new(),
            vals: Vec::new(),
            touch: IdTouch::default(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &PenaltiesParams {
        &self.params
    }

    /// How often `token` occurs in the current window.
    pub fn count(&self, token: TokenId) -> u32 {
        self.counts.get(&token).copied().unwrap_or(0)
    }
}

impl Sampler for Penalties {
    fn name(&self) -> &'static str {
        "penalties"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        if self.params.is_disabled() || self.counts.is_empty() {
            return Ok(());
        }
        self.ids.clear();
        self.vals.clear();
        for (&id, &c) in &self.counts {
            self.ids.push(id);
            self.vals.push(c);
        }
        let PenaltiesParams { penalty_repeat: repeat, penalty_freq: freq, penalty_present: present, .. } = self.params;
        let vals = &self.vals;
        let touched = self.touch.for_each(candidates.as_mut_slice(), &self.ids, |t, k| {
            let c = vals[k];
            t.logit = scale_sign_aware(t.logit, repeat);
            // Same grouping as llama.cpp: one subtraction of (c*freq + present).
            t.logit -= c as f32 * freq + present;
        });
        if touched {
            candidates.set_sorted(false);
        }
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        if self.params.penalty_last_n <= 0 {
            return;
        }
        self.history.push(token);
        *self.counts.entry(token).or_insert(0) += 1;
        if let Some(old) = self.history.just_evicted() {
            if let Some(c) = self.counts.get_mut(&old) {
                *c -= 1;
                if *c == 0 {
                    self.counts.remove(&old);
                }
            }
        }
    }

    fn reset(&mut self) {
        self.history.clear();
        self.counts.clear();
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "window_len": self.history.window().len(), "distinct_tokens": self.counts.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    fn run(s: &mut Penalties, logits: &[f32]) -> Vec<f32> {
        let mut a: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        a.iter().map(|t| t.logit).collect()
    }

    #[test]
    fn repeat_is_sign_aware_and_freq_present_subtract() {
        let p = PenaltiesParams { penalty_last_n: 8, penalty_repeat: 2.0, penalty_freq: 0.5, penalty_present: 0.25 };
        let mut s = Penalties::new(p).unwrap();
        for t in [0, 1, 1] {
            s.accept(t);
        }
        let out = run(&mut s, &[4.0, -4.0, 3.0]);
        assert_eq!(out, vec![4.0 / 2.0 - 0.75, -4.0 * 2.0 - 1.25, 3.0]);
        // apply is pure
        assert_eq!(run(&mut s, &[4.0, -4.0, 3.0]), out);
    }

    #[test]
    fn window_forgets_old_tokens_and_reset_clears() {
        let p = PenaltiesParams { penalty_last_n: 2, penalty_repeat: 1.0, penalty_freq: 1.0, penalty_present: 0.0 };
        let mut s = Penalties::new(p).unwrap();
        for t in [0, 0, 1, 2] {
            s.accept(t);
        }
        assert_eq!((s.count(0), s.count(1), s.count(2)), (0, 1, 1));
        assert_eq!(run(&mut s, &[0.0, 0.0, 0.0]), vec![0.0, -1.0, -1.0]);
        let c = s.box_clone();
        s.reset();
        assert_eq!(run(&mut s, &[0.0, 0.0, 0.0]), vec![0.0, 0.0, 0.0]);
        drop(c);
    }

    #[test]
    fn disabling_values_are_no_ops() {
        for p in [
            PenaltiesParams { penalty_last_n: 0, penalty_repeat: 3.0, penalty_freq: 1.0, penalty_present: 1.0 },
            PenaltiesParams { penalty_last_n: -1, penalty_repeat: 3.0, penalty_freq: 1.0, penalty_present: 1.0 },
            PenaltiesParams { penalty_last_n: 64, penalty_repeat: 1.0, penalty_freq: 0.0, penalty_present: 0.0 },
        ] {
            let mut s = Penalties::new(p).unwrap();
            s.accept(0);
            s.accept(1);
            assert_eq!(run(&mut s, &[2.0, -2.0]), vec![2.0, -2.0], "{p:?}");
        }
    }

    #[test]
    fn validate_rejects_bad_values() {
        let d = PenaltiesParams::default();
        for bad in [
            PenaltiesParams { penalty_repeat: 0.0, ..d },
            PenaltiesParams { penalty_repeat: -1.0, ..d },
            PenaltiesParams { penalty_repeat: f32::NAN, ..d },
            PenaltiesParams { penalty_repeat: 1e-40, ..d },
            PenaltiesParams { penalty_freq: f32::INFINITY, ..d },
            PenaltiesParams { penalty_present: f32::NAN, ..d },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(d.validate().is_ok());
    }

    #[test]
    fn shuffled_array_and_odd_logits() {
        let p = PenaltiesParams { penalty_last_n: 4, penalty_repeat: 2.0, penalty_freq: 0.0, penalty_present: 0.0 };
        let mut s = Penalties::new(p).unwrap();
        s.accept(7);
        let mut a = vec![TokenData::new(7, f32::NAN), TokenData::new(3, 1.0), TokenData::new(9, 2.0)];
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        assert!(a[0].logit.is_nan());
        let mut b = vec![TokenData::new(3, 1.0), TokenData::new(7, f32::NEG_INFINITY)];
        s.apply(&mut Candidates::new(&mut b)).unwrap();
        assert_eq!(b[1].logit, f32::NEG_INFINITY);
        s.apply(&mut Candidates::new(&mut [])).unwrap();
    }
}
