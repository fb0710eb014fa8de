//! Statistics of one attention row: the last layer's attention of the
//! token being sampled, per head, over the KV cells.
//!
//! Input layout: `probs[h * n_kv + j]` is head h's softmax weight on KV cell
//! j (llama.cpp's `kq_soft_max` row, heads already broadcast for GQA).
//! Masked cells are exactly 0 there; a cell is *valid* when at least one
//! head gives it a weight above 0. Every statistic uses valid cells only, so
//! the padding and the causal mask never count (the reference Entropix
//! computed over a zero-padded 4096-slot cache; its thresholds do not
//! transfer).

use serde::{Deserialize, Serialize};

/// Attention statistics of one step. Entropies in bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttentionMetrics {
    /// Mean over heads of the per-head entropy -sum a log2 a, bits.
    pub entropy_bits: f64,
    /// Population variance across heads of the per-head entropies, bits².
    /// This is what the original Entropix calls "attn_varentropy".
    pub head_entropy_variance_bits2: f64,
    /// Mean over heads of the true per-head varentropy
    /// sum a (log2 a + H_h)^2, bits² (the entropix-local fix).
    pub varentropy_bits2: f64,
    /// Mean over heads and valid cells of |a_h - mean over heads of a|.
    /// 0 when all heads attend alike.
    pub agreement: f64,
    /// Mean |scaled pre-softmax score| over heads and valid cells, when the
    /// pre-softmax scores were captured; dimensionless (logit units).
    pub interaction_strength: Option<f64>,
    /// Number of heads.
    pub n_head: usize,
    /// Number of valid (unmasked) KV cells.
    pub n_valid: usize,
}

/// Computes [`AttentionMetrics`] from one row of attention probabilities
/// (`n_head * n_kv` values) and, optionally, the matching pre-softmax
/// scores `kq` (same layout, unscaled Q.K) with their `scale` (usually
/// 1/sqrt(d_head)). Returns `None` when the shapes do not match or no cell
/// is valid. Sums in f64.
pub fn attention_metrics(probs: &[f32], n_head: usize, n_kv: usize, scores: Option<(&[f32], f32)>) -> Option<AttentionMetrics> {
    if n_head == 0 || n_kv == 0 || probs.len() != n_head * n_kv {
        return None;
    }
    if let Some((s, _)) = scores {
        if s.len() != probs.len() {
            return None;
        }
    }
    // No allocation: validity is recomputed per cell where needed.
    let valid = |j: usize| (0..n_head).any(|h| probs[h * n_kv + j] > 0.0);
    let n_valid = (0..n_kv).filter(|&j| valid(j)).count();
    if n_valid == 0 {
        return None;
    }
    let ln2 = std::f64::consts::LN_2;
    let mut head_entropy = Vec::with_capacity(n_head);
    let mut varentropy_sum = 0.0f64;
    for h in 0..n_head {
        let row = &probs[h * n_kv..(h + 1) * n_kv];
        // Normalise defensively: rows sum to 1 up to float error.
        let total: f64 = row.iter().map(|&a| a.max(0.0) as f64).sum();
        if total <= 0.0 {
            head_entropy.push(0.0);
            continue;
        }
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &a in row {
            if a > 0.0 {
                let p = a as f64 / total;
                let l = p.ln() / ln2;
                s1 += p * l;
                s2 += p * l * l;
            }
        }
        let h_bits = -s1;
        head_entropy.push(h_bits);
        varentropy_sum += (s2 - s1 * s1).max(0.0);
    }
    let mean_entropy = head_entropy.iter().sum::<f64>() / n_head as f64;
    let head_var = head_entropy.iter().map(|e| (e - mean_entropy).powi(2)).sum::<f64>() / n_head as f64;

    let mut agreement_sum = 0.0f64;
    for j in (0..n_kv).filter(|&j| valid(j)) {
        let mean: f64 = (0..n_head).map(|h| probs[h * n_kv + j] as f64).sum::<f64>() / n_head as f64;
        agreement_sum += (0..n_head).map(|h| (probs[h * n_kv + j] as f64 - mean).abs()).sum::<f64>();
    }
    let agreement = agreement_sum / (n_head * n_valid) as f64;

    let interaction_strength = scores.map(|(s, scale)| {
        let mut sum = 0.0f64;
        for h in 0..n_head {
            for j in (0..n_kv).filter(|&j| valid(j)) {
                sum += (s[h * n_kv + j] as f64 * scale as f64).abs();
            }
        }
        sum / (n_head * n_valid) as f64
    });

    Some(AttentionMetrics {
        entropy_bits: mean_entropy,
        head_entropy_variance_bits2: head_var,
        varentropy_bits2: varentropy_sum / n_head as f64,
        agreement,
        interaction_strength,
        n_head,
        n_valid,
    })
}

/// Where an attention-aware sampler gets the attention of the step it is
/// sampling. Implemented by the eval-callback capture; tests supply fixed
/// values.
///
/// `metrics()` returns `None` when no fresh attention exists for the
/// current step (flash attention on, tensor absent, callback not
/// installed): the sampler then follows its documented fallback and never
/// uses an earlier step's attention.
pub trait AttentionSource: Send + Sync {
    /// Metrics of the current step's attention row, if fresh.
    fn metrics(&self) -> Option<AttentionMetrics>;
}

/// A fixed value, for tests and for hosts that compute attention
/// themselves.
#[derive(Debug, Clone, Default)]
pub struct FixedAttention(pub Option<AttentionMetrics>);

impl AttentionSource for FixedAttention {
    fn metrics(&self) -> Option<AttentionMetrics> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_heads_over_valid_cells() {
        // 2 heads, 4 cells of which the last is masked (0 in both heads).
        let probs = [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0];
        let m = attention_metrics(&probs, 2, 4, None).unwrap();
        assert!((m.entropy_bits - 3f64.log2()).abs() < 1e-6);
        assert!(m.head_entropy_variance_bits2.abs() < 1e-9);
        assert!(m.varentropy_bits2.abs() < 1e-9);
        assert!(m.agreement.abs() < 1e-9);
        assert_eq!(m.n_valid, 3);
    }

    #[test]
    fn disagreeing_heads() {
        // head 0 on cell 0, head 1 on cell 1.
        let probs = [1.0, 0.0, 0.0, 1.0];
        let scores = [2.0, -4.0, 8.0, 6.0];
        let m = attention_metrics(&probs, 2, 2, Some((&scores, 0.5))).unwrap();
        assert_eq!(m.entropy_bits, 0.0);
        // mean per cell 0.5; |1-0.5| + |0-0.5| = 1 per cell; / (2 heads * 2 cells).
        assert!((m.agreement - 0.5).abs() < 1e-12);
        assert!((m.interaction_strength.unwrap() - (1.0 + 2.0 + 4.0 + 3.0) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn head_variance_and_true_varentropy_differ() {
        // head 0 uniform over 2 cells (H = 1 bit, V = 0); head 1 peaked.
        let probs = [0.5, 0.5, 0.9, 0.1];
        let m = attention_metrics(&probs, 2, 2, None).unwrap();
        let h1 = -(0.9f64 * 0.9f64.log2() + 0.1 * 0.1f64.log2());
        let v1 = 0.9 * (0.9f64.log2() + h1).powi(2) + 0.1 * (0.1f64.log2() + h1).powi(2);
        assert!((m.entropy_bits - (1.0 + h1) / 2.0).abs() < 1e-6);
        assert!((m.head_entropy_variance_bits2 - ((1.0 - h1) / 2.0).powi(2)).abs() < 1e-6);
        assert!((m.varentropy_bits2 - v1 / 2.0).abs() < 1e-6);
    }

    #[test]
    fn bad_shapes_and_all_masked_give_none() {
        assert!(attention_metrics(&[0.0; 4], 2, 2, None).is_none());
        assert!(attention_metrics(&[0.5; 3], 2, 2, None).is_none());
        assert!(attention_metrics(&[0.5; 4], 2, 2, Some((&[1.0; 3], 1.0))).is_none());
    }
}
