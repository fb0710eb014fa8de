//! Logit bias: add a fixed bias to the logit of listed ids.
//!
//! Source: OpenAI's `logit_bias`; same behaviour as llama.cpp's
//! `llama_sampler_init_logit_bias(n_vocab, n_logit_bias, logit_bias)`:
//! `logit += bias` for every candidate whose id is listed; ids absent from
//! the candidates (including ids outside the vocabulary) have no effect.
//! Like llama.cpp, it touches only the listed entries when the array is in
//! vocabulary order (`data[id].id == id`) and scans otherwise (llama.cpp's
//! scan is O(candidates x unplaced biases), this one O(candidates)).
//!
//! One deliberate difference: when an id is listed several times, its
//! biases are all added, in list order. llama.cpp does that too when the
//! array is in vocabulary order, but when it has to search (a shuffled or
//! truncated array) it adds only the first bias of that id.

use serde::{Deserialize, Serialize};

use super::util::IdTouch;
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenId};

/// One bias, laid out like llama.cpp's `llama_logit_bias`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogitBiasEntry {
    /// Token id.
    pub token: TokenId,
    /// Added to the logit (logit units, nats). `-inf` bans the token;
    /// `0.0` does nothing. Not NaN.
    pub bias: f32,
}

/// Adds per-token biases to the logits.
#[derive(Debug, Clone)]
pub struct LogitBias {
    ids: Vec<TokenId>,
    biases: Vec<f32>,
    touch: IdTouch,
}

impl LogitBias {
    /// A logit-bias sampler; rejects a NaN bias. An empty list disables.
    pub fn new(entries: Vec<LogitBiasEntry>) -> Result<Self, ParamError> {
        if let Some(e) = entries.iter().find(|e| e.bias.is_nan()) {
            return Err(ParamError::new("bias", format!("NaN (token {})", e.token), "must not be NaN (+-inf is allowed)"));
        }
        Ok(Self {
            ids: entries.iter().map(|e| e.token).collect(),
            biases: entries.iter().map(|e| e.bias).collect(),
            touch: IdTouch::default(),
        })
    }

    /// The entries, in the order given.
    pub fn entries(&self) -> Vec<LogitBiasEntry> {
        self.ids.iter().zip(&self.biases).map(|(&token, &bias)| LogitBiasEntry { token, bias }).collect()
    }
}

impl Sampler for LogitBias {
    fn name(&self) -> &'static str {
        "logit-bias"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        let biases = &self.biases;
        if self.touch.for_each(candidates.as_mut_slice(), &self.ids, |t, k| t.logit += biases[k]) {
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

    fn e(token: TokenId, bias: f32) -> LogitBiasEntry {
        LogitBiasEntry { token, bias }
    }

    #[test]
    fn adds_biases_in_both_layouts() {
        let mut s = LogitBias::new(vec![e(1, 2.0), e(3, f32::NEG_INFINITY), e(1, 0.5), e(1000, 9.0)]).unwrap();
        let mut a: Vec<TokenData> = (0..4).map(|i| TokenData::new(i, 1.0)).collect();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        assert_eq!(a.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![1.0, 3.5, 1.0, f32::NEG_INFINITY]);
        let mut b = vec![TokenData::new(3, 1.0), TokenData::new(1, 1.0), TokenData::new(1000, 0.0)];
        s.apply(&mut Candidates::new(&mut b)).unwrap();
        assert_eq!(b.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![f32::NEG_INFINITY, 3.5, 9.0]);
        assert!(LogitBias::new(vec![e(0, f32::NAN)]).is_err());
        assert_eq!(s.entries().len(), 4);
    }
}
