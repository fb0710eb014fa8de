//! The AlphaSampler state machine.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

use super::lookahead::{lookahead_candidates, score_candidates, LookaheadBackend, ScoredCandidate};
use super::params::{top_k_of, AlphaDerived, AlphaParams, ThermoState};
use crate::core::logit_scan::{scan_logits_counting, LogitScan};
use crate::core::math::logit_moments;
use crate::core::sampler::require_candidates;
use crate::core::{Attachments, Candidates, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId};
use crate::metrics::{AttentionMetrics, AttentionSource};
use crate::samplers::dist::{sample_softmax, SoftmaxScratch};
use crate::samplers::filters::top_p::apply_top_p;
use crate::samplers::temperature::apply_temperature;
use crate::samplers::top_k::apply_top_k;

/// What the lookahead did in the last step.
#[derive(Debug, Clone, PartialEq)]
pub enum LookaheadOutcome {
    /// The state was not COLD.
    NotCold,
    /// COLD, but `params.lookahead` is false.
    Off,
    /// COLD, but no backend (context) is attached.
    NoContext,
    /// Only one candidate qualified: chosen without decoding.
    SingleCandidate,
    /// The candidates were decoded and scored; the lowest score won.
    Decided,
    /// The backend failed (reason); the step sampled with the derived
    /// parameters instead.
    Failed(String),
}

impl LookaheadOutcome {
    /// `"not_cold"`, `"off"`, `"no_context"`, `"single_candidate"`,
    /// `"decided"` or `"failed"`.
    pub fn name(&self) -> &'static str {
        match self {
            LookaheadOutcome::NotCold => "not_cold",
            LookaheadOutcome::Off => "off",
            LookaheadOutcome::NoContext => "no_context",
            LookaheadOutcome::SingleCandidate => "single_candidate",
            LookaheadOutcome::Decided => "decided",
            LookaheadOutcome::Failed(_) => "failed",
        }
    }
}

/// What the last `apply` computed (scratch for traces and `state_json`;
/// not persistent state).
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaStep {
    /// Entropy of softmax(logits) at T = 1 over the candidates received,
    /// bits.
    pub token_entropy_bits: f64,
    /// Number of candidates with probability > 0 (logit > -inf, not NaN;
    /// the +inf ones when there are any): the entropy's maximum is
    /// log2 of it.
    pub token_support: usize,
    /// `token_entropy_bits / log2(token_support)`, in [0, 1]; 0 when the
    /// support has one token.
    pub token_entropy_norm: f64,
    /// The attention metrics of this step; `None` when unavailable.
    pub attention: Option<AttentionMetrics>,
    /// `attention.entropy_bits / log2(attention.n_valid)`, in [0, 1]; 0
    /// when attention is unavailable or covers one cell.
    pub attention_entropy_norm: f64,
    /// This step's alpha: `token_entropy_norm + attention_entropy_norm`.
    pub alpha: f64,
    /// Mean of this step's alpha and the alphas of the last `window - 1`
    /// accepted steps: what the state and the parameters follow.
    pub alpha_mean: f64,
    /// The state of `alpha_mean`.
    pub state: ThermoState,
    /// The parameters derived from `alpha_mean`.
    pub derived: AlphaDerived,
    /// What the lookahead did.
    pub lookahead: LookaheadOutcome,
    /// Lookahead candidates with their scores (empty unless the lookahead
    /// ran).
    pub candidates: Vec<ScoredCandidate>,
    /// True when the lookahead result was reused from an earlier `apply`
    /// at the same position (no decode in between).
    pub lookahead_reused: bool,
    /// The token selected.
    pub selected_token: Option<TokenId>,
}

/// A lookahead result kept for an `apply` repeated at the same position, so
/// that it does not decode again.
#[derive(Debug, Clone)]
struct LookaheadCache {
    /// The backend stamp right after the lookahead.
    stamp: (u64, i64),
    /// The candidates decoded.
    tokens: Vec<TokenId>,
    /// Their attention, or the backend's error.
    result: Result<Vec<AttentionMetrics>, String>,
}

/// Name of the sampler (`Sampler::name`, registry key).
pub const NAME: &str = "alpha";

/// The AlphaSampler ("thermodynamic" sampler, seed 000; reference
/// EdwardDali/alpha). Selects a token: put it last in a chain (or alone).
///
/// Each step:
/// 1. **alpha** = normalised token entropy + normalised attention entropy,
///    each in [0, 1]:
///    - token entropy: entropy of softmax(logits) at T = 1 over the
///      candidates received, bits, divided by log2 of the number of
///      candidates with p > 0 (those with a logit above -inf). With the
///      whole vocabulary (the sampler first or alone in the chain) that is
///      the reference's log2(n_vocab) up to tokens llama.cpp masked to
///      -inf; after a truncating stage it is the truncated support, so the
///      normalised entropy stays a fraction of what was possible.
///    - attention entropy: [`AttentionMetrics::entropy_bits`] (mean over
///      heads of the per-head entropy of the last layer's attention row,
///      bits) divided by log2(`n_valid`), the number of unmasked KV cells.
///      (The reference averages the heads' attention first and takes one
///      entropy; the mean per-head entropy is what the capture provides
///      and is the seed's "attention entropy" per head.)
///    - **Fallback**: without attention (no source, or it returns `None`:
///      flash attention on, no callback) the attention half is 0, alpha is
///      the token half alone (in [0, 1]), and `state_json` says
///      `attention_available: false`.
/// 2. **window**: the state and parameters follow the mean of this step's
///    alpha and the alphas of the last `window - 1` accepted steps. The
///    window is state: `accept` appends the alpha of the last `apply`
///    (an `accept` with no `apply` before it, e.g. a prompt token, appends
///    nothing).
/// 3. **state**: COLD if mean < `cold_point`, else HOT if mean >
///    `hot_point`, else MIXED.
/// 4. **parameters** from the mean, exactly seed 000's maps
///    ([`super::temperature_of`], [`super::top_k_of`] (rounded to the
///    nearest integer), [`super::top_p_of`], [`super::rep_penalty_of`]).
/// 5. **repetition penalty** over the distinct tokens among the last
///    `penalty_last_n` accepted ones, llama.cpp's sign-aware form: a
///    positive logit is divided by the penalty, a negative one multiplied.
///    (The reference divides every logit, which rewards repeated tokens
///    with negative logits.)
/// 6. **selection**:
///    - COLD with `lookahead` on and a backend attached
///      ([`AlphaSampler::set_lookahead`]): the best candidates of softmax at
///      T = 1 of the penalised logits (at most `lookahead_k`, cumulative
///      p <= `lookahead_p`, at least one) are decoded one step ahead in one
///      batch; each is scored `entropy_weight * mean head entropy +
///      var_entropy_weight * variance of head entropies` (bits, bits²;
///      population variance, the reference uses torch's unbiased `var`)
///      of its step's attention, and the lowest score is selected
///      (deterministic, as in the reference). The candidates are left
///      truncated to the lookahead set, sorted, with p their probability at
///      T = 1. One qualifying candidate is selected without decoding. If the
///      backend fails, the step samples as below and reports why.
///    - otherwise: top-k, temperature, top-p (llama.cpp semantics: the
///      token that crosses p is kept), softmax over the survivors, one
///      inverse-CDF draw from the step's RNG stream.
///
/// `apply` changes no persistent state. The lookahead decode changes the
/// engine's state only temporarily (the llama.cpp backend restores the KV
/// cache exactly, and the attention capture's rows) but does overwrite the
/// context's logits. A repeated `apply` at the same position (same backend
/// stamp) reuses the lookahead result instead of decoding again.
#[derive(Clone)]
pub struct AlphaSampler {
    params: AlphaParams,
    rng: SeededRng,
    source: Option<Arc<dyn AttentionSource>>,
    backend: AttachedBackend,
    /// Alphas of the last `window - 1` accepted steps (state).
    alphas: VecDeque<f64>,
    /// The last `penalty_last_n` accepted tokens (state).
    history: VecDeque<TokenId>,
    /// Occurrences of each token in `history` (state).
    counts: HashMap<TokenId, u32>,
    /// Alpha of the last `apply`, appended by the next `accept` (scratch).
    pending_alpha: Option<f64>,
    /// Report of the last `apply` (scratch).
    last: Option<AlphaStep>,
    /// See [`LookaheadCache`] (scratch).
    cache: Option<LookaheadCache>,
    scratch: Vec<TokenData>,
    /// Scratch of the final draw ([`sample_softmax`]).
    softmax_scratch: SoftmaxScratch,
    /// The last apply's scan of the candidates (scratch).
    scan: LogitScan,
    /// The scan's best candidates with their penalised logits (scratch).
    ranked: Vec<(u32, f32)>,
    missing: HashSet<TokenId>,
}

/// The lookahead backend the host attached, if any. A clone of the sampler
/// starts without one: a backend drives one sequence of one host context,
/// which a clone (llama.cpp clones per parallel slot) must not share; the
/// host attaches each clone to its own sequence.
#[derive(Default)]
struct AttachedBackend(Option<Box<dyn LookaheadBackend>>);

impl Clone for AttachedBackend {
    fn clone(&self) -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for AlphaSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlphaSampler")
            .field("params", &self.params)
            .field("rng", &self.rng)
            .field("has_source", &self.source.is_some())
            .field("has_lookahead", &self.backend.0.is_some())
            .field("alphas", &self.alphas.len())
            .field("history", &self.history.len())
            .field("last", &self.last)
            .finish()
    }
}

/// Entropy of softmax(logits) at T = 1 (bits) and its support (the number
/// of candidates with p > 0). With +inf logits the distribution is uniform
/// over them. `None` when nothing is finite or +inf.
fn token_entropy(data: &[TokenData], max: f32) -> Option<(f64, usize)> {
    if max == f32::NEG_INFINITY {
        return None;
    }
    if max == f32::INFINITY {
        let n_inf = data.iter().filter(|t| t.logit == f32::INFINITY).count();
        return Some(((n_inf as f64).log2(), n_inf));
    }
    let support = data.iter().filter(|t| t.logit > f32::NEG_INFINITY).count();
    let m = logit_moments(data)?;
    Some((m.entropy_bits(), support))
}

/// `bits / log2(n)` clamped to [0, 1]; 0 when n <= 1 or bits is not finite.
fn normalise(bits: f64, n: usize) -> f64 {
    if n <= 1 || !bits.is_finite() {
        return 0.0;
    }
    (bits / (n as f64).log2()).clamp(0.0, 1.0)
}

/// llama.cpp's sign-aware repetition penalty on one logit.
#[inline]
fn penalise(logit: f32, penalty: f32) -> f32 {
    if logit <= 0.0 {
        logit * penalty
    } else {
        logit / penalty
    }
}

impl AlphaSampler {
    /// A validated alpha sampler with no attention source and no lookahead
    /// backend.
    pub fn new(params: AlphaParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self {
            params,
            rng: SeededRng::new(params.seed),
            source: None,
            backend: AttachedBackend(None),
            alphas: VecDeque::new(),
            history: VecDeque::new(),
            counts: HashMap::new(),
            pending_alpha: None,
            last: None,
            cache: None,
            scratch: Vec::new(),
            softmax_scratch: SoftmaxScratch::default(),
            scan: LogitScan::default(),
            ranked: Vec::new(),
            missing: HashSet::new(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &AlphaParams {
        &self.params
    }

    /// What the last `apply` did; `None` before the first successful one,
    /// after a failed one and after a reset.
    pub fn last_step(&self) -> Option<&AlphaStep> {
        self.last.as_ref()
    }

    /// Attaches (`Some`) or detaches (`None`) the COLD-state lookahead
    /// backend (for llama.cpp: `crate::ffi::LlamaLookahead`). The attention
    /// source is set separately ([`Sampler::set_attention_source`]); with
    /// llama.cpp it is normally the backend's capture. The backend is the
    /// host's to attach and detach; a clone of this sampler starts without
    /// one (attach it to the clone's own sequence).
    pub fn set_lookahead(&mut self, backend: Option<Box<dyn LookaheadBackend>>) {
        self.backend = AttachedBackend(backend);
        self.cache = None;
    }

    /// Whether a lookahead backend is attached.
    pub fn has_lookahead(&self) -> bool {
        self.backend.0.is_some()
    }

    /// Mean of `alpha` and the stored window.
    fn window_mean(&self, alpha: f64) -> f64 {
        let sum: f64 = self.alphas.iter().sum::<f64>() + alpha;
        sum / (self.alphas.len() + 1) as f64
    }

    /// The main step's attention, from the source (a lookahead leaves it as
    /// it found it).
    fn main_attention(&self) -> Option<AttentionMetrics> {
        self.source.as_ref().and_then(|s| s.metrics()).filter(|m| m.entropy_bits.is_finite() && m.head_entropy_variance_bits2.is_finite())
    }

    /// Top-k after the penalty: from the scan's best candidates (their
    /// logits read again, as the penalty may have lowered them) when the
    /// scan kept enough of them, else over the whole array.
    fn keep_top_k(&mut self, candidates: &mut Candidates<'_>, k: i32) {
        let k_us = k.max(0) as usize;
        if k <= 0 || !self.scan.covers(k_us + self.counts.len()) {
            apply_top_k(candidates, k, &mut self.scratch);
            return;
        }
        let data = candidates.as_slice();
        self.ranked.clear();
        self.ranked.extend(self.scan.best.iter().map(|&(i, _)| (i, data[i as usize].logit)));
        self.ranked.sort_unstable_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
        self.ranked.truncate(k_us);
        candidates.keep_indices(self.ranked.iter().map(|&(i, _)| i as usize), &mut self.scratch);
    }

    /// Applies the repetition penalty to the tokens of the window. Touches
    /// only those tokens when the array is in vocabulary order
    /// (`data[id].id == id`), else scans once for the others.
    fn apply_penalty(&mut self, candidates: &mut Candidates<'_>, penalty: f32) {
        if self.counts.is_empty() || penalty == 1.0 {
            return;
        }
        let data = candidates.as_mut_slice();
        self.missing.clear();
        let mut touched = false;
        for &id in self.counts.keys() {
            match usize::try_from(id).ok().and_then(|i| data.get_mut(i)).filter(|t| t.id == id) {
                Some(t) => {
                    t.logit = penalise(t.logit, penalty);
                    touched = true;
                }
                None => {
                    self.missing.insert(id);
                }
            }
        }
        if !self.missing.is_empty() {
            for t in data.iter_mut() {
                if self.missing.contains(&t.id) {
                    t.logit = penalise(t.logit, penalty);
                    touched = true;
                }
            }
        }
        if touched {
            candidates.set_sorted(false);
        }
    }

    /// The lookahead of a COLD step. Returns the outcome and the scored
    /// candidates; on `Decided`/`SingleCandidate` the candidates are
    /// truncated to the lookahead set with the winner selected.
    fn look_ahead(&mut self, candidates: &mut Candidates<'_>) -> (LookaheadOutcome, Vec<ScoredCandidate>, bool) {
        let chosen = lookahead_candidates(candidates.as_slice(), self.params.lookahead_k as usize, self.params.lookahead_p);
        if chosen.is_empty() {
            return (LookaheadOutcome::Failed("no candidate with p > 0".into()), Vec::new(), false);
        }
        let mut scored: Vec<ScoredCandidate> = chosen
            .iter()
            .map(|&(_, token, p)| ScoredCandidate { token, p, attn_entropy_bits: f64::NAN, head_entropy_variance_bits2: f64::NAN, score: f64::NAN })
            .collect();
        let (winner, outcome, reused) = if chosen.len() == 1 {
            (0, LookaheadOutcome::SingleCandidate, false)
        } else {
            let tokens: Vec<TokenId> = chosen.iter().map(|c| c.1).collect();
            let Some(backend) = self.backend.0.as_mut() else {
                return (LookaheadOutcome::NoContext, Vec::new(), false);
            };
            let stamp_before = backend.stamp();
            let cached = self.cache.as_ref().filter(|c| Some(c.stamp) == stamp_before && c.tokens == tokens).map(|c| c.result.clone());
            let reused = cached.is_some();
            let result = match cached {
                Some(r) => r,
                None => {
                    let r = backend.look_ahead(&tokens);
                    self.cache = backend.stamp().map(|stamp| LookaheadCache { stamp, tokens, result: r.clone() });
                    r
                }
            };
            match result {
                Ok(metrics) if metrics.len() == scored.len() => {
                    let w = score_candidates(&mut scored, &metrics, self.params.entropy_weight as f64, self.params.var_entropy_weight as f64);
                    (w, LookaheadOutcome::Decided, reused)
                }
                Ok(metrics) => {
                    let why = format!("the backend returned {} results for {} candidates", metrics.len(), scored.len());
                    return (LookaheadOutcome::Failed(why), scored, reused);
                }
                Err(e) => return (LookaheadOutcome::Failed(e), scored, reused),
            }
        };
        // Leave the lookahead set in front, sorted, with p at T = 1, and
        // select the winner. The caller's storage beyond the view is scratch.
        let picked: Vec<TokenData> = chosen
            .iter()
            .map(|&(i, _, p)| {
                let mut t = candidates.as_slice()[i];
                t.p = p as f32;
                t
            })
            .collect();
        let n = picked.len();
        candidates.as_mut_slice()[..n].copy_from_slice(&picked);
        candidates.truncate(n);
        candidates.set_sorted(true);
        candidates.select(winner);
        (outcome, scored, reused)
    }
}

impl Sampler for AlphaSampler {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        self.last = None;
        self.pending_alpha = None;
        require_candidates(candidates)?;
        // One pass for the entropy and the best candidates. Alpha is in
        // [0, 2], so top-k is at most top_k_of(2); the penalty can only push
        // the tokens of the window down, so the best top_k after it are
        // among the best top_k + (tokens in the window) before it.
        let depth = top_k_of(2.0) as usize + self.counts.len();
        scan_logits_counting(candidates.as_slice(), depth, &mut self.scan);
        let (token_entropy_bits, token_support) = match (self.scan.moments, self.scan.finite) {
            (Some(m), Some(finite)) if self.scan.max.is_finite() => (m.entropy_nats() / std::f64::consts::LN_2, finite),
            _ => token_entropy(candidates.as_slice(), candidates.max_logit()).ok_or(SampleError::NoFiniteLogits)?,
        };
        let token_entropy_norm = normalise(token_entropy_bits, token_support);
        let attention = self.main_attention();
        let attention_entropy_norm = attention.map_or(0.0, |m| normalise(m.entropy_bits, m.n_valid));
        let alpha = token_entropy_norm + attention_entropy_norm;
        let alpha_mean = self.window_mean(alpha);
        let state = ThermoState::of(alpha_mean, self.params.cold_point, self.params.hot_point);
        let derived = AlphaDerived::of(alpha_mean);

        if self.params.penalty_last_n > 0 {
            self.apply_penalty(candidates, derived.rep_penalty as f32);
        }

        let (outcome, scored, reused) = match state {
            ThermoState::Cold if !self.params.lookahead => (LookaheadOutcome::Off, Vec::new(), false),
            ThermoState::Cold if self.backend.0.is_none() => (LookaheadOutcome::NoContext, Vec::new(), false),
            ThermoState::Cold => self.look_ahead(candidates),
            _ => (LookaheadOutcome::NotCold, Vec::new(), false),
        };
        if !matches!(outcome, LookaheadOutcome::Decided | LookaheadOutcome::SingleCandidate) {
            let mut draws = self.rng.stream();
            self.keep_top_k(candidates, derived.top_k);
            apply_temperature(candidates, derived.temperature as f32);
            apply_top_p(candidates, derived.top_p as f32, 1);
            sample_softmax(candidates, &mut draws, &mut self.softmax_scratch)?;
        }
        self.pending_alpha = Some(alpha);
        self.last = Some(AlphaStep {
            token_entropy_bits,
            token_support,
            token_entropy_norm,
            attention,
            attention_entropy_norm,
            alpha,
            alpha_mean,
            state,
            derived,
            lookahead: outcome,
            candidates: scored,
            lookahead_reused: reused,
            selected_token: candidates.selected_token(),
        });
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        if let Some(a) = self.pending_alpha.take() {
            let keep = self.params.window as usize - 1;
            if keep > 0 {
                self.alphas.push_back(a);
                while self.alphas.len() > keep {
                    self.alphas.pop_front();
                }
            }
        }
        let n = self.params.penalty_last_n.max(0) as usize;
        if n > 0 {
            self.history.push_back(token);
            *self.counts.entry(token).or_insert(0) += 1;
            if self.history.len() > n {
                if let Some(old) = self.history.pop_front() {
                    if let Some(c) = self.counts.get_mut(&old) {
                        *c -= 1;
                        if *c == 0 {
                            self.counts.remove(&old);
                        }
                    }
                }
            }
        }
        self.rng.advance();
    }

    fn reset(&mut self) {
        self.alphas.clear();
        self.history.clear();
        self.counts.clear();
        self.pending_alpha = None;
        self.last = None;
        self.cache = None;
        self.rng.rewind();
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn selects(&self) -> bool {
        true
    }

    fn needs_attention(&self) -> bool {
        true
    }

    fn set_attention_source(&mut self, source: Option<Arc<dyn AttentionSource>>) -> bool {
        self.source = source;
        self.cache = None;
        true
    }

    fn take_attachments(&mut self) -> Attachments {
        self.cache = None;
        let other = self.backend.0.take().map(|b| Box::new(b) as Box<dyn std::any::Any + Send>);
        Attachments { attention: self.source.take(), other }
    }

    fn put_attachments(&mut self, attachments: Attachments) {
        self.cache = None;
        self.source = attachments.attention;
        self.backend = AttachedBackend(attachments.other.and_then(|o| o.downcast::<Box<dyn LookaheadBackend>>().ok()).map(|b| *b));
    }

    /// The parameters' key values, `window_len` (stored alphas),
    /// `window_mean_accepted` (mean of the stored alphas, null when none),
    /// `has_attention_source`, `lookahead_attached` (and `lookahead_backend`,
    /// what it is attached to), and `last_step` (null before the first
    /// apply): `alpha` (this step's), `alpha_mean` (window mean including
    /// it), `state` ("cold", "hot", "mixed"), `temperature`, `top_k`,
    /// `top_p`, `rep_penalty`, `token_entropy_bits`, `token_support`,
    /// `token_entropy_norm`, `attention_available`,
    /// `attention_entropy_bits`, `attention_n_valid`,
    /// `attention_entropy_norm`, `lookahead` (what it did: "not_cold",
    /// "off", "no_context", "single_candidate", "decided", "failed"),
    /// `lookahead_error`, `lookahead_reused`, `candidates` (token, p,
    /// attn_entropy_bits, head_entropy_variance_bits2, score; null for
    /// numbers not computed), `chosen` (the lookahead's choice) and
    /// `selected_token`.
    fn state_json(&self) -> Value {
        let stored_mean = if self.alphas.is_empty() { None } else { Some(self.alphas.iter().sum::<f64>() / self.alphas.len() as f64) };
        let last = self.last.as_ref().map(|s| {
            let candidates: Vec<Value> = s
                .candidates
                .iter()
                .map(|c| {
                    json!({
                        "token": c.token,
                        "p": num(c.p),
                        "attn_entropy_bits": num(c.attn_entropy_bits),
                        "head_entropy_variance_bits2": num(c.head_entropy_variance_bits2),
                        "score": num(c.score),
                    })
                })
                .collect();
            let decided = matches!(s.lookahead, LookaheadOutcome::Decided | LookaheadOutcome::SingleCandidate);
            json!({
                "alpha": num(s.alpha),
                "alpha_mean": num(s.alpha_mean),
                "state": s.state.name(),
                "temperature": num(s.derived.temperature),
                "top_k": s.derived.top_k,
                "top_p": num(s.derived.top_p),
                "rep_penalty": num(s.derived.rep_penalty),
                "token_entropy_bits": num(s.token_entropy_bits),
                "token_support": s.token_support,
                "token_entropy_norm": num(s.token_entropy_norm),
                "attention_available": s.attention.is_some(),
                "attention_entropy_bits": s.attention.map(|m| num(m.entropy_bits)),
                "attention_n_valid": s.attention.map(|m| m.n_valid),
                "attention_entropy_norm": num(s.attention_entropy_norm),
                "lookahead": s.lookahead.name(),
                "lookahead_error": match &s.lookahead { LookaheadOutcome::Failed(e) => Some(e.clone()), _ => None },
                "lookahead_reused": s.lookahead_reused,
                "candidates": candidates,
                "chosen": if decided { s.selected_token } else { None },
                "selected_token": s.selected_token,
            })
        });
        json!({
            "window": self.params.window,
            "cold_point": self.params.cold_point,
            "hot_point": self.params.hot_point,
            "penalty_last_n": self.params.penalty_last_n,
            "lookahead_enabled": self.params.lookahead,
            "lookahead_k": self.params.lookahead_k,
            "lookahead_p": self.params.lookahead_p,
            "window_len": self.alphas.len(),
            "window_mean_accepted": stored_mean.map(num),
            "has_attention_source": self.source.is_some(),
            "lookahead_attached": self.backend.0.is_some(),
            "lookahead_backend": self.backend.0.as_ref().map_or(Value::Null, |b| b.describe()),
            "last_step": last,
        })
    }
}

/// A finite float as a JSON number, anything else as null.
fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FixedAttention;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    fn attn(entropy_bits: f64, n_valid: usize) -> AttentionMetrics {
        AttentionMetrics {
            entropy_bits,
            head_entropy_variance_bits2: 0.0,
            varentropy_bits2: 0.0,
            agreement: 0.0,
            interaction_strength: None,
            n_head: 4,
            n_valid,
        }
    }

    #[test]
    fn top_k_from_the_scan_matches_the_whole_array_after_the_penalty() {
        let mut rng = crate::core::DrawStream::from_state(11);
        let logits: Vec<f32> = (0..5000).map(|_| (rng.next_normal() * 3.0) as f32).collect();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap());
        let mut s = AlphaSampler::new(AlphaParams { penalty_last_n: 64, ..Default::default() }).unwrap();
        // The window holds 40 of the best tokens, so the penalty reorders the top.
        for &i in order.iter().step_by(2).take(40) {
            s.accept(i as TokenId);
        }
        for (k, penalty) in [(10, 1.5f32), (58, 1.2), (153, 3.0), (153, 1.0)] {
            let mut a = tokens(&logits);
            let mut c = Candidates::new(&mut a);
            scan_logits_counting(c.as_slice(), top_k_of(2.0) as usize + s.counts.len(), &mut s.scan);
            s.apply_penalty(&mut c, penalty);
            s.keep_top_k(&mut c, k);
            let got: Vec<TokenId> = c.as_slice().iter().map(|t| t.id).collect();
            let mut b = tokens(&logits);
            let mut whole = Candidates::new(&mut b);
            s.apply_penalty(&mut whole, penalty);
            apply_top_k(&mut whole, k, &mut Vec::new());
            let want: Vec<TokenId> = whole.as_slice().iter().map(|t| t.id).collect();
            assert_eq!(got, want, "k {k}, penalty {penalty}");
        }
    }

    #[test]
    fn uniform_logits_and_uniform_attention_give_alpha_two() {
        let mut s = AlphaSampler::new(AlphaParams { seed: 1, ..Default::default() }).unwrap();
        s.set_attention_source(Some(Arc::new(FixedAttention(Some(attn(3.0, 8))))));
        let mut a = tokens(&[0.0; 16]);
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        let step = s.last_step().unwrap();
        assert!((step.alpha - 2.0).abs() < 1e-12);
        assert_eq!(step.state, ThermoState::Hot);
    }

    #[test]
    fn penalty_is_sign_aware_and_only_on_history() {
        let mut s = AlphaSampler::new(AlphaParams { seed: 1, window: 1, ..AlphaParams::reference() }).unwrap();
        s.accept(0);
        s.accept(1);
        let base = tokens(&[2.0, -2.0, 1.0]);
        let mut a = base.clone();
        let mut c = Candidates::new(&mut a);
        s.apply_penalty(&mut c, 2.0);
        assert_eq!(a.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![1.0, -4.0, 1.0]);
        // Out of vocabulary order: the scan finds them.
        let mut b: Vec<TokenData> = base.iter().rev().copied().collect();
        let mut c = Candidates::new(&mut b);
        s.apply_penalty(&mut c, 2.0);
        assert_eq!(b.iter().map(|t| (t.id, t.logit)).collect::<Vec<_>>(), vec![(2, 1.0), (1, -4.0), (0, 1.0)]);
    }

    #[test]
    fn window_averages_accepted_alphas() {
        let mut s = AlphaSampler::new(AlphaParams { seed: 1, window: 2, penalty_last_n: 0, ..Default::default() }).unwrap();
        let uniform = tokens(&[0.0; 4]);
        let peaked = tokens(&[100.0, 0.0, 0.0, 0.0]);
        s.apply(&mut Candidates::new(&mut uniform.clone())).unwrap();
        assert!((s.last_step().unwrap().alpha_mean - 1.0).abs() < 1e-12);
        s.accept(0);
        s.apply(&mut Candidates::new(&mut peaked.clone())).unwrap();
        let st = s.last_step().unwrap().clone();
        assert!(st.alpha < 1e-6);
        assert!((st.alpha_mean - 0.5 * (1.0 + st.alpha)).abs() < 1e-12);
        // An accept with no apply adds nothing.
        s.accept(0);
        s.accept(0);
        s.apply(&mut Candidates::new(&mut uniform.clone())).unwrap();
        assert!((s.last_step().unwrap().alpha_mean - 0.5 * (1.0 + st.alpha)).abs() < 1e-12);
    }
}
