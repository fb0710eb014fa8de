//! The COLD-state lookahead ("speculative decoding" in seed 000): the
//! interface the sampler needs from an inference engine, the candidate
//! choice and the score.
//!
//! The sampler stays pure Rust: it asks a [`LookaheadBackend`] to decode
//! each candidate one step ahead and to return the attention of that step.
//! The llama.cpp backend (one batched `llama_decode` in spare KV sequences,
//! cache restored afterwards) is `crate::ffi::LlamaLookahead`, in the layer
//! that may talk to llama.cpp and the attention capture.

use crate::core::math::{logit_key, max_logit};
use crate::core::{TokenData, TokenId};
use crate::metrics::AttentionMetrics;

/// An engine that can decode candidate tokens one step ahead of the
/// current position and report the attention of those steps.
///
/// Contract: [`LookaheadBackend::look_ahead`] leaves the model state the
/// host samples from exactly as it found it (for llama.cpp: the KV cache,
/// and the attention capture's rows, which the sampler and others read
/// again), so that `apply` keeps no persistent effect.
pub trait LookaheadBackend: Send {
    /// Decodes every token of `tokens` one step after the current position,
    /// each as its own continuation of the current sequence, and returns the
    /// attention metrics of each one's step (last layer, as
    /// [`crate::metrics::attention_metrics`] computes them), in the same
    /// order. Errors (with the reason) when it cannot; the model state is
    /// restored in every case.
    fn look_ahead(&mut self, tokens: &[TokenId]) -> Result<Vec<AttentionMetrics>, String>;

    /// A value that changes whenever the host decodes something or the
    /// sequence moves (for llama.cpp: the capture's graph counter and the
    /// next position). Two equal stamps mean nothing was decoded in
    /// between, so a result computed at the first one still holds. `None`
    /// when unknown (nothing is then cached).
    fn stamp(&self) -> Option<(u64, i64)>;

    /// What the backend is attached to, for `state_json`. Must not call
    /// into the engine (the sampler's state is readable after the host has
    /// freed its context, as long as the sampler lives).
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// One lookahead candidate and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredCandidate {
    /// The token.
    pub token: TokenId,
    /// Its probability under softmax at T = 1 of the penalised logits the
    /// sampler received.
    pub p: f64,
    /// Mean over heads of the per-head attention entropy at the step after
    /// this token, bits; NaN when not decoded.
    pub attn_entropy_bits: f64,
    /// Population variance across heads of those entropies, bits²; NaN
    /// when not decoded.
    pub head_entropy_variance_bits2: f64,
    /// `entropy_weight * attn_entropy_bits + var_entropy_weight *
    /// head_entropy_variance_bits2`; the lowest wins. NaN when not decoded
    /// (a single candidate is chosen without decoding).
    pub score: f64,
}

/// The best candidates for the lookahead, as (index in `data`, token, p):
/// in descending logit order (NaN counts as -inf; the first index wins a
/// tie), at most `k`, taken while the cumulative probability of
/// softmax(logits) at T = 1 stays `<= p_limit` (no limit when `p_limit >=
/// 1`), at least one; never a candidate with p = 0. Empty when no logit is
/// finite or +inf. One pass for the maximum, one for the sum and the top k.
pub fn lookahead_candidates(data: &[TokenData], k: usize, p_limit: f32) -> Vec<(usize, TokenId, f64)> {
    let max = max_logit(data);
    if max == f32::NEG_INFINITY || k == 0 {
        return Vec::new();
    }
    let inf = max == f32::INFINITY;
    let mut sum = 0.0f64;
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, t) in data.iter().enumerate() {
        let key = logit_key(t.logit);
        if key == f32::NEG_INFINITY {
            continue;
        }
        if inf {
            sum += (key == f32::INFINITY) as u32 as f64;
        } else {
            sum += ((key - max) as f64).exp();
        }
        if best.len() < k || key > logit_key(data[best[best.len() - 1]].logit) {
            let pos = best.iter().position(|&j| logit_key(data[j].logit) < key).unwrap_or(best.len());
            best.insert(pos, i);
            best.truncate(k);
        }
    }
    let prob = |l: f32| -> f64 {
        if inf {
            if l == f32::INFINITY {
                1.0 / sum
            } else {
                0.0
            }
        } else {
            ((l - max) as f64).exp() / sum
        }
    };
    let mut out = Vec::with_capacity(best.len());
    let mut cum = 0.0f64;
    for i in best {
        let p = prob(data[i].logit);
        if p.is_nan() || p <= 0.0 {
            break;
        }
        cum += p;
        if !out.is_empty() && p_limit < 1.0 && cum > p_limit as f64 {
            break;
        }
        out.push((i, data[i].id, p));
    }
    out
}

/// Scores the candidates from their lookahead attention and returns the
/// index of the lowest score (the first on ties; NaN scores never win
/// unless all are NaN).
pub fn score_candidates(cands: &mut [ScoredCandidate], metrics: &[AttentionMetrics], entropy_weight: f64, var_weight: f64) -> usize {
    for (c, m) in cands.iter_mut().zip(metrics) {
        c.attn_entropy_bits = m.entropy_bits;
        c.head_entropy_variance_bits2 = m.head_entropy_variance_bits2;
        c.score = entropy_weight * m.entropy_bits + var_weight * m.head_entropy_variance_bits2;
    }
    let mut best = 0;
    for (i, c) in cands.iter().enumerate() {
        if c.score < cands[best].score || (cands[best].score.is_nan() && !c.score.is_nan()) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    #[test]
    fn candidates_follow_k_and_cumulative_p() {
        // p = 0.5, 0.25, 0.125, 0.125 at ids 1, 3, 0, 2.
        let l = tokens(&[0.125f32.ln(), 0.5f32.ln(), 0.125f32.ln(), 0.25f32.ln()]);
        let ids = |v: Vec<(usize, TokenId, f64)>| v.into_iter().map(|c| c.1).collect::<Vec<_>>();
        assert_eq!(ids(lookahead_candidates(&l, 3, 0.9)), vec![1, 3, 0]);
        assert_eq!(ids(lookahead_candidates(&l, 3, 0.8)), vec![1, 3]);
        assert_eq!(ids(lookahead_candidates(&l, 3, 0.3)), vec![1]);
        assert_eq!(ids(lookahead_candidates(&l, 2, 1.0)), vec![1, 3]);
        assert_eq!(ids(lookahead_candidates(&l, 9, 1.0)).len(), 4);
        let c = lookahead_candidates(&l, 1, 1.0);
        assert!((c[0].2 - 0.5).abs() < 1e-7);
        // NaN and -inf never; +inf takes all mass.
        let l = tokens(&[f32::NAN, 1.0, f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY]);
        assert_eq!(ids(lookahead_candidates(&l, 5, 1.0)), vec![2, 4]);
        assert!(lookahead_candidates(&tokens(&[f32::NAN, f32::NEG_INFINITY]), 3, 0.9).is_empty());
    }

    #[test]
    fn lowest_score_wins() {
        let m = |e: f64, v: f64| AttentionMetrics {
            entropy_bits: e,
            head_entropy_variance_bits2: v,
            varentropy_bits2: 0.0,
            agreement: 0.0,
            interaction_strength: None,
            n_head: 2,
            n_valid: 4,
        };
        let blank = ScoredCandidate { token: 0, p: 0.0, attn_entropy_bits: f64::NAN, head_entropy_variance_bits2: f64::NAN, score: f64::NAN };
        let mut c = vec![blank; 3];
        let best = score_candidates(&mut c, &[m(2.0, 0.0), m(1.0, 2.0), m(1.5, 0.1)], 0.8, 0.2);
        assert_eq!(best, 1);
        assert!((c[1].score - 1.2).abs() < 1e-12 && (c[2].score - 1.22).abs() < 1e-12);
    }
}
