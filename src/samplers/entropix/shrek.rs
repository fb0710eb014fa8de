//! The Entropix ("Shrek") sampler: five strategies chosen from the
//! entropy and varentropy of the logits and the model's attention.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{
    best_index, insertable, raw_logit, round_i32, sample_one, scan_argmax, scan_depth, scan_step, trunc_i32, truncate, AttnTerms, AttnVarentropyKind, Derived,
    Insertion, ScoredSample, StepReport, Strategy,
};
use crate::core::error::check_range;
use crate::core::logit_scan::LogitScan;
use crate::core::sampler::require_candidates;
use crate::core::{Attachments, Candidates, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId, RANDOM_SEED};
use crate::metrics::AttentionSource;
use crate::samplers::dist::pick_by_probability;

/// Which published form of Entropix to run ([`EntropixParams::variant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 0: the original (xjdr-alt/entropix, Oct 2024): the strategy is
    /// chosen from the logits entropy and varentropy alone, attention only
    /// enters the parameter formulas.
    Original,
    /// 1: the later "all six metrics" form (entropix-local): each of the
    /// four named strategies additionally requires its attention
    /// conditions (entropy, varentropy, and optionally agreement and
    /// interaction strength) against the `*_attn_*` / `*_agree` /
    /// `*_interaction` thresholds; otherwise the step is adaptive.
    AllMetrics,
    /// 2: logits only: attention is never read (`needs_attention()` is
    /// false, e.g. with flash attention on); every attention term is the
    /// neutral constant 0. Branches as in `Original`.
    LogitsOnly,
}

impl Variant {
    /// From the parameter value.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Original),
            1 => Some(Self::AllMetrics),
            2 => Some(Self::LogitsOnly),
            _ => None,
        }
    }

    /// The name used in `state_json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::AllMetrics => "all_metrics",
            Self::LogitsOnly => "logits_only",
        }
    }
}

/// How adaptive draws are scored ([`EntropixParams::score_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreMode {
    /// 0: seed 002 / reference: `score = ln p(token) + confidence`, with
    /// `confidence = (1 - H) w1 + (1 - attn_ent) w2 + (1 - V) w3 +
    /// (1 - attn_vent) w4 + agreement w5 + interaction w6`. The confidence
    /// is the same for every draw of the step, so the winner is simply the
    /// most probable draw (kept as written; the value is reported).
    Seed,
    /// 1: per candidate: H and V are replaced by the candidate's own
    /// surprise s = -log2 p(token) (bits) and its squared deviation
    /// (s - H)² (bits²), whose expectations over the distribution are H and
    /// V: `confidence_i = (1 - s) w1 + (1 - attn_ent) w2 +
    /// (1 - (s - H)²) w3 + (1 - attn_vent) w4 + agreement w5 +
    /// interaction w6`. With w3 > 0
    /// this prefers typical tokens (surprise near the entropy) over the
    /// merely most probable one.
    PerCandidate,
}

impl ScoreMode {
    /// From the parameter value.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Seed),
            1 => Some(Self::PerCandidate),
            _ => None,
        }
    }

    /// The name used in `state_json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::PerCandidate => "per_candidate",
        }
    }
}

/// Parameters of [`Entropix`]: every threshold and coefficient of the
/// reference `SamplerConfig`, with defaults from the original
/// (xjdr-alt/entropix). Units: entropies in bits, varentropies in bits²,
/// everything else dimensionless. Thresholds are model-specific; load a
/// calibrated [`super::Profile`] for your model.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntropixParams {
    /// Base temperature (dimensionless), > 0. Default 0.666.
    pub temp: f32,
    /// Base top-p, in [0, 1]; 1 disables. Default 0.90.
    pub top_p: f32,
    /// Base top-k; <= 0 disables top-k in every strategy. Default 27.
    pub top_k: i32,
    /// Base min-p, relative to the top probability at the step's
    /// temperature (p_i >= min_p * p_max), in [0, 1]; 0 disables min-p in
    /// every strategy (the adaptive clamp [0.01, 0.5] applies only when it
    /// is on). Default 0.05 (reference 0.03). (The reference computed min-p and never
    /// applied it; here it is applied.)
    pub min_p: f32,
    /// Upper bound of every strategy's temperature (dimensionless, > 0),
    /// applied after each strategy's own formula and bounds. The
    /// reference has none (`reference()`: 3.4e38, the largest f32): its
    /// adaptive and resampling temperatures reach 2-3.5 on small models
    /// and write noise. Default 0.8, chosen with `eval` (see `Default`).
    pub max_temp: f32,
    /// Flowing needs logits entropy below this, bits. Default 0.1.
    /// Negative disables the flowing strategy.
    pub low_ent: f32,
    /// Flowing and treading need logits varentropy below this, bits².
    /// Default 0.1. Negative disables both.
    pub low_vent: f32,
    /// Resampling needs logits entropy above this, bits. Default 3.0.
    /// (Entropies between med_ent and high_ent with high varentropy are
    /// already exploring, so resampling effectively starts at high_ent.) A
    /// value above log2 of the vocabulary size disables resampling.
    pub med_ent: f32,
    /// Treading needs entropy above this and exploring below it, bits.
    /// Default 5.0. (Seed 002's prose says 3.0 for treading; the
    /// reference code uses this threshold.) A value above log2 of the
    /// vocabulary size disables treading.
    pub high_ent: f32,
    /// Exploring and resampling need logits varentropy above this, bits².
    /// Default 5.0. A huge value disables both.
    pub high_vent: f32,
    /// Treading temperature: T = min(helv_max_temp, temp *
    /// (helv_attn_ent_offset + helv_attn_ent_coef * attn_ent)).
    /// Dimensionless multiplier of temp. Default 1.3.
    pub helv_attn_ent_offset: f32,
    /// Per bit of attention entropy (1/bits). Default 0.2; 0 removes the
    /// attention term.
    pub helv_attn_ent_coef: f32,
    /// Upper bound of the treading temperature (dimensionless, > 0).
    /// Default 1.5; a huge value removes the bound.
    pub helv_max_temp: f32,
    /// Exploring temperature: T = min(lehv_max_temp, temp *
    /// (lehv_interaction_strength_offset + lehv_interaction_strength_coef *
    /// interaction)). Dimensionless multiplier of temp. Default 1.2.
    pub lehv_interaction_strength_offset: f32,
    /// Per unit of interaction strength (dimensionless). Default 0.3; 0
    /// removes the term.
    pub lehv_interaction_strength_coef: f32,
    /// Upper bound of the exploring temperature (dimensionless, > 0).
    /// Default 1.5; a huge value removes the bound.
    pub lehv_max_temp: f32,
    /// Exploring top-k: max(lehv_min_top_k, int(top_k * (1 +
    /// lehv_agree_coef * (1 - agreement)))). Dimensionless. Default 0.5
    /// (a constant in the reference); 0 keeps top_k.
    pub lehv_agree_coef: f32,
    /// Lower bound of the exploring top-k (tokens, >= 1). Default 5.
    pub lehv_min_top_k: i32,
    /// Resampling top-p: max(hehv_min_top_p, top_p - hehv_attn_ent_coef *
    /// attn_ent), per bit of attention entropy (1/bits). Default 0.2; 0
    /// keeps top_p.
    pub hehv_attn_ent_coef: f32,
    /// Lower bound of the resampling top-p, in [0, 1]. Default 0.5; 0
    /// removes the bound.
    pub hehv_min_top_p: f32,
    /// Resampling temperature: T = max(hehv_min_temp, temp *
    /// (hehv_attn_vent_offset + hehv_attn_vent_coef * attn_vent)); no
    /// upper bound (seed 002 shows 2.45). Dimensionless multiplier of
    /// temp. Default 2.0.
    pub hehv_attn_vent_offset: f32,
    /// Per bit² of attention varentropy (1/bits²). Default 0.5; 0 removes
    /// the term.
    pub hehv_attn_vent_coef: f32,
    /// Lower bound of the resampling temperature (dimensionless, > 0).
    /// Default 2.0; a tiny value removes the bound.
    pub hehv_min_temp: f32,
    /// Number of draws the adaptive strategy scores, in [1, 4096]. Default
    /// 2, chosen with `eval` (see `Default`); reference 5 (the
    /// reference code; seed 002's prose says 12). 1 makes it a plain draw.
    pub n_adaptive_samples: i32,
    /// Adaptive temperature: T = temp * (1 + ada_temp_logits * (H + V) +
    /// ada_temp_attn * (attn_ent + attn_vent) - ada_temp_agree *
    /// agreement). Per unit of logits uncertainty H + V (the reference
    /// adds bits and bits² as plain numbers). Default 0.3; 0 removes the
    /// term.
    pub ada_temp_logits: f32,
    /// Per unit of attention uncertainty attn_ent + attn_vent (bits plus
    /// bits²). Default 0.2; 0 removes the term.
    pub ada_temp_attn: f32,
    /// Per unit of agreement (dimensionless). Default 0.2; 0 removes the
    /// term.
    pub ada_temp_agree: f32,
    /// Adaptive top-p: clip(top_p * (1 + ada_top_p * attn_vent), 0.1, 1),
    /// per bit² of attention varentropy. Default 0.1; 0 keeps top_p.
    pub ada_top_p: f32,
    /// Adaptive top-k: clip(round(top_k * (1 + ada_top_k_int *
    /// interaction - ada_top_k_agree * agreement)), 1, 100), per unit of interaction
    /// strength. Default 0.3; 0 removes the term.
    pub ada_top_k_int: f32,
    /// Per unit of agreement, see `ada_top_k_int`. Default 0.2; 0 removes
    /// the term.
    pub ada_top_k_agree: f32,
    /// Adaptive min-p: clip(min_p * (1 - ada_min_p * (H + V)), 0.01, 0.5),
    /// per unit of logits uncertainty H + V. Default 0 (reference 0.5,
    /// see `Default`); 0 keeps min_p
    /// (clipped).
    pub ada_min_p: f32,
    /// Score weight w1 of (1 - logits entropy in bits), dimensionless.
    /// Default 0.1. Every weight: 0 removes its term.
    pub ada_score_logits_ent: f32,
    /// Score weight w2 of (1 - attention entropy in bits). Default 0.2.
    pub ada_score_attn_ent: f32,
    /// Score weight w3 of (1 - logits varentropy in bits²). Default 0.3.
    pub ada_score_logits_vent: f32,
    /// Score weight w4 of (1 - attention varentropy in bits²). Default 0.4.
    pub ada_score_attn_vent: f32,
    /// Score weight w5 of agreement. Default 0.5.
    pub ada_score_agree: f32,
    /// Score weight w6 of interaction strength. Default 0.6.
    pub ada_score_int: f32,
    /// How adaptive draws are scored: 0 = the seed's formula (constant
    /// confidence, best log-probability wins), 1 = per-candidate
    /// confidence (see [`ScoreMode`]). Default 0.
    pub score_mode: u32,
    /// Token inserted by the treading strategy (the original used 2564,
    /// " ..." in Llama 3; resolve yours with `entropix_token_from_text`).
    /// -1 = none: treading always samples. Default -1.
    pub clarifying_token_id: i32,
    /// 0 = original, 1 = all six metrics, 2 = logits only (see
    /// [`Variant`]). Default 0.
    pub variant: u32,
    /// Attention "varentropy": 0 = variance of the per-head attention
    /// entropies (original), 1 = true per-head varentropy (entropix-local).
    /// Both bits². Default 0.
    pub attn_varentropy_kind: u32,
    /// Variant 1: attention entropy below this for flowing, treading and
    /// exploring, bits. Default 1.6 (a placeholder: calibrate per model).
    pub low_attn_ent: f32,
    /// Variant 1: attention entropy above this for resampling, bits.
    /// Default 5.0 (placeholder).
    pub high_attn_ent: f32,
    /// Variant 1: attention varentropy below this for flowing and
    /// treading, bits². Default 0.25 (placeholder).
    pub low_attn_vent: f32,
    /// Variant 1: attention varentropy above this for exploring and
    /// resampling, bits². Default 1.5 (placeholder).
    pub high_attn_vent: f32,
    /// Variant 1 with `select_on_agreement`: agreement below this for
    /// flowing, treading, exploring (dimensionless). Default 2.2e-3.
    pub low_agree: f32,
    /// Variant 1 with `select_on_agreement`: agreement above this for
    /// resampling. Default 3.8e-3.
    pub high_agree: f32,
    /// Variant 1 with `select_on_interaction`: interaction strength below
    /// this for flowing and treading, above it for exploring
    /// (dimensionless). Default 6.06.
    pub low_interaction: f32,
    /// Variant 1 with `select_on_interaction`: above this for resampling.
    /// Default 7.0.
    pub high_interaction: f32,
    /// Variant 1: also test agreement. Default false.
    pub select_on_agreement: bool,
    /// Variant 1: also test interaction strength (skipped when the capture
    /// has no pre-softmax scores). Default false.
    pub select_on_interaction: bool,
    /// RNG seed; 0xFFFFFFFF draws a random seed. Default 0xFFFFFFFF.
    pub seed: u32,
}

impl Default for EntropixParams {
    /// [`EntropixParams::reference`] with the temperature bounded and a
    /// plain min-p, chosen with `eval` on SmolLM2-135M-Instruct (its
    /// calibrated profile; 100 arithmetic questions, 12 open prompts, one
    /// seed each; greedy 15/100, seq-rep-4 0.128, NLL 0.66 nats/token):
    ///
    /// - `max_temp` 0.8 (reference: none). The reference's adaptive
    ///   temperature, temp (1 + 0.3 (H + V) + ...), runs near 3.5 on this
    ///   model and resampling is floored at 2: 3/100 correct, NLL 1.96.
    ///   Bounded at 0.8: 18/100, NLL 0.71; at 1.0: 18/100, NLL 0.69 with
    ///   more repetition (seq-rep-4 0.168 vs 0.129).
    /// - `ada_min_p` 0 and `min_p` 0.05 (reference 0.5 and 0.03): the
    ///   reference lowers min-p as uncertainty grows and clamps it to 0.01
    ///   at any H + V above 2, which leaves the tail in exactly where it
    ///   hurts. 19/100, NLL 0.66.
    /// - `n_adaptive_samples` 2 (reference 5): the best of 5 draws by
    ///   log-probability is mode seeking: 19/100 but seq-rep-4 0.131, as
    ///   repetitive as greedy. 2 draws keep most of the
    ///   likelihood and lose the loops: 10/100, seq-rep-4 0.039, NLL 0.79
    ///   (1 draw: 9/100, 0.048, 0.97; 3 draws: 15/100, 0.107, 0.71).
    ///   Held out (200 new questions, 24 new prompts; README, "Results"):
    ///   14/200 (greedy 22, default chain 9), seq-rep-4 0.084 (greedy
    ///   0.179), NLL 0.80. `min_p` 0.1, best on the dev items (14/100,
    ///   0.050, 0.75), did not hold there (18/200 but seq-rep-4 0.141) and
    ///   was not adopted.
    fn default() -> Self {
        Self { max_temp: 0.8, min_p: 0.05, ada_min_p: 0.0, n_adaptive_samples: 2, ..Self::reference() }
    }
}

impl EntropixParams {
    /// The settings of seed 002 and its reference (xjdr-alt/entropix): the `reference`
    /// preset (`--preset reference` in the CLI). [`Default`] departs from
    /// it where `eval` showed better text; the fields say where and why.
    pub fn reference() -> Self {
        Self {
            temp: 0.666,
            top_p: 0.90,
            top_k: 27,
            min_p: 0.03,
            max_temp: f32::MAX,
            low_ent: 0.1,
            low_vent: 0.1,
            med_ent: 3.0,
            high_ent: 5.0,
            high_vent: 5.0,
            helv_attn_ent_offset: 1.3,
            helv_attn_ent_coef: 0.2,
            helv_max_temp: 1.5,
            lehv_interaction_strength_offset: 1.2,
            lehv_interaction_strength_coef: 0.3,
            lehv_max_temp: 1.5,
            lehv_agree_coef: 0.5,
            lehv_min_top_k: 5,
            hehv_attn_ent_coef: 0.2,
            hehv_min_top_p: 0.5,
            hehv_attn_vent_offset: 2.0,
            hehv_attn_vent_coef: 0.5,
            hehv_min_temp: 2.0,
            n_adaptive_samples: 5,
            ada_temp_logits: 0.3,
            ada_temp_attn: 0.2,
            ada_temp_agree: 0.2,
            ada_top_p: 0.1,
            ada_top_k_int: 0.3,
            ada_top_k_agree: 0.2,
            ada_min_p: 0.5,
            ada_score_logits_ent: 0.1,
            ada_score_attn_ent: 0.2,
            ada_score_logits_vent: 0.3,
            ada_score_attn_vent: 0.4,
            ada_score_agree: 0.5,
            ada_score_int: 0.6,
            score_mode: 0,
            clarifying_token_id: -1,
            variant: 0,
            attn_varentropy_kind: 0,
            low_attn_ent: 1.6,
            high_attn_ent: 5.0,
            low_attn_vent: 0.25,
            high_attn_vent: 1.5,
            low_agree: 2.2e-3,
            high_agree: 3.8e-3,
            low_interaction: 6.06,
            high_interaction: 7.0,
            select_on_agreement: false,
            select_on_interaction: false,
            seed: RANDOM_SEED,
        }
    }
}

/// Largest accepted `n_adaptive_samples`.
const MAX_ADAPTIVE_SAMPLES: i32 = 4096;

/// Checks that `v` is finite.
fn finite(name: &'static str, v: f32) -> Result<(), ParamError> {
    check_range(name, v, f32::MIN, f32::MAX, "must be a finite number")
}

impl EntropixParams {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !(self.temp.is_finite() && self.temp > 0.0) {
            return Err(ParamError::new("temp", self.temp, "must be finite and > 0"));
        }
        check_range("top_p", self.top_p, 0.0, 1.0, "must be in [0, 1] (1 disables)")?;
        check_range("min_p", self.min_p, 0.0, 1.0, "must be in [0, 1] (0 disables)")?;
        if !(self.max_temp > 0.0) {
            return Err(ParamError::new("max_temp", self.max_temp, "must be > 0 (3.4e38: no bound)"));
        }
        for (name, v) in [
            ("low_ent", self.low_ent),
            ("low_vent", self.low_vent),
            ("med_ent", self.med_ent),
            ("high_ent", self.high_ent),
            ("high_vent", self.high_vent),
            ("helv_attn_ent_offset", self.helv_attn_ent_offset),
            ("helv_attn_ent_coef", self.helv_attn_ent_coef),
            ("lehv_interaction_strength_offset", self.lehv_interaction_strength_offset),
            ("lehv_interaction_strength_coef", self.lehv_interaction_strength_coef),
            ("lehv_agree_coef", self.lehv_agree_coef),
            ("hehv_attn_ent_coef", self.hehv_attn_ent_coef),
            ("hehv_attn_vent_offset", self.hehv_attn_vent_offset),
            ("hehv_attn_vent_coef", self.hehv_attn_vent_coef),
            ("ada_temp_logits", self.ada_temp_logits),
            ("ada_temp_attn", self.ada_temp_attn),
            ("ada_temp_agree", self.ada_temp_agree),
            ("ada_top_p", self.ada_top_p),
            ("ada_top_k_int", self.ada_top_k_int),
            ("ada_top_k_agree", self.ada_top_k_agree),
            ("ada_min_p", self.ada_min_p),
            ("ada_score_logits_ent", self.ada_score_logits_ent),
            ("ada_score_attn_ent", self.ada_score_attn_ent),
            ("ada_score_logits_vent", self.ada_score_logits_vent),
            ("ada_score_attn_vent", self.ada_score_attn_vent),
            ("ada_score_agree", self.ada_score_agree),
            ("ada_score_int", self.ada_score_int),
            ("low_attn_ent", self.low_attn_ent),
            ("high_attn_ent", self.high_attn_ent),
            ("low_attn_vent", self.low_attn_vent),
            ("high_attn_vent", self.high_attn_vent),
            ("low_agree", self.low_agree),
            ("high_agree", self.high_agree),
            ("low_interaction", self.low_interaction),
            ("high_interaction", self.high_interaction),
        ] {
            finite(name, v)?;
        }
        for (name, v) in [("helv_max_temp", self.helv_max_temp), ("lehv_max_temp", self.lehv_max_temp), ("hehv_min_temp", self.hehv_min_temp)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ParamError::new(name, v, "must be finite and > 0"));
            }
        }
        check_range("hehv_min_top_p", self.hehv_min_top_p, 0.0, 1.0, "must be in [0, 1]")?;
        if self.lehv_min_top_k < 1 {
            return Err(ParamError::new("lehv_min_top_k", self.lehv_min_top_k, "must be >= 1"));
        }
        if !(1..=MAX_ADAPTIVE_SAMPLES).contains(&self.n_adaptive_samples) {
            return Err(ParamError::new("n_adaptive_samples", self.n_adaptive_samples, "must be in [1, 4096]"));
        }
        if ScoreMode::from_code(self.score_mode).is_none() {
            return Err(ParamError::new("score_mode", self.score_mode, "must be 0 (seed) or 1 (per candidate)"));
        }
        if self.clarifying_token_id < -1 {
            return Err(ParamError::new("clarifying_token_id", self.clarifying_token_id, "must be a token id or -1 (none)"));
        }
        if Variant::from_code(self.variant).is_none() {
            return Err(ParamError::new("variant", self.variant, "must be 0 (original), 1 (all metrics) or 2 (logits only)"));
        }
        if AttnVarentropyKind::from_code(self.attn_varentropy_kind).is_none() {
            return Err(ParamError::new("attn_varentropy_kind", self.attn_varentropy_kind, "must be 0 (head-entropy variance) or 1 (per-head varentropy)"));
        }
        Ok(())
    }

    fn variant_enum(&self) -> Variant {
        Variant::from_code(self.variant).unwrap_or(Variant::Original)
    }

    fn kind(&self) -> AttnVarentropyKind {
        AttnVarentropyKind::from_code(self.attn_varentropy_kind).unwrap_or(AttnVarentropyKind::HeadEntropyVariance)
    }

    fn score_mode_enum(&self) -> ScoreMode {
        ScoreMode::from_code(self.score_mode).unwrap_or(ScoreMode::Seed)
    }
}

/// The Entropix sampler (seed 002; reference xjdr-alt/entropix). Selects a
/// token: put it last in a chain.
///
/// Each step computes the logits entropy H (bits) and varentropy V (bits²)
/// of softmax(logits) at T = 1 over the candidates it is given, and reads
/// the current step's attention metrics from its [`AttentionSource`]
/// (attention entropy in bits, attention varentropy in bits², agreement,
/// interaction strength). Strategies, checked in this order (variant 0):
///
/// 1. **flowing**, H < low_ent and V < low_vent: argmax.
/// 2. **treading**, H > high_ent and V < low_vent: insert the clarifying
///    token unless the previously accepted token was that token (state
///    updated in `accept`, so it is inserted at most once in a row) or it
///    is not among the candidates with a logit above -inf; otherwise
///    sample with T = min(helv_max_temp, temp * (1.3 + 0.2 attn_ent)) and
///    the base top-p/top-k/min-p.
/// 3. **exploring**, H < high_ent and V > high_vent: T = min(1.5, temp *
///    (1.2 + 0.3 interaction)), top_k = max(5, int(top_k * (1 + 0.5 (1 -
///    agreement)))).
/// 4. **resampling**, H > med_ent and V > high_vent: T = max(2.0, temp *
///    (2.0 + 0.5 attn_vent)) (no upper bound), top_p = max(0.5, top_p -
///    0.2 attn_ent).
/// 5. **adaptive** otherwise: with U_l = H + V and U_a = attn_ent +
///    attn_vent, T = temp (1 + 0.3 U_l + 0.2 U_a - 0.2 agreement),
///    top_p = clip(top_p (1 + 0.1 attn_vent), 0.1, 1), top_k =
///    clip(round(top_k (1 + 0.3 interaction - 0.2 agreement)), 1, 100),
///    min_p = clip(min_p (1 - 0.5 U_l), 0.01, 0.5); then
///    `n_adaptive_samples` independent inverse-CDF draws from that
///    distribution (one uniform each from the step's RNG stream), each
///    scored `ln p(token) + confidence` with p the untempered,
///    untruncated softmax (see [`ScoreMode`]); the best score wins, the
///    first on ties.
///
/// Sampling in every strategy: min-p relative to the top probability at
/// the step's temperature, top-k, temperature, top-p over the survivors,
/// softmax, one inverse-CDF draw. The candidates are left truncated and
/// renormalised with the token selected. Temperatures are derived in f64
/// and used as f32.
///
/// Without attention (no source, the source returns `None`, or variant
/// 2) the attention terms are the neutral constant 0 (see
/// `AttnTerms`): the formulas keep their logits part and variant 1's
/// attention conditions are skipped, so it branches like variant 0. The
/// step report says `attention_available: false`. Attention is read
/// afresh on every `apply`; an older step's attention is never reused.
///
/// Reference bugs not copied: min-p is applied; top-p runs over the
/// descending order; draws are inverse-CDF from uniforms (no Uniform noise
/// in an argmax(p/q) race); the attention variance over one head is 0, not
/// NaN (see `crate::metrics::attention_metrics`).
#[derive(Clone)]
pub struct Entropix {
    params: EntropixParams,
    rng: SeededRng,
    source: Option<Arc<dyn AttentionSource>>,
    /// The last accepted token (state, moved by `accept` only).
    last_token: Option<TokenId>,
    /// Report of the last `apply` (scratch).
    last: Option<StepReport>,
    scratch: Vec<TokenData>,
    raw: Vec<(TokenId, f32)>,
    /// The last apply's scan (scratch).
    scan: LogitScan,
}

impl std::fmt::Debug for Entropix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entropix")
            .field("params", &self.params)
            .field("rng", &self.rng)
            .field("has_source", &self.source.is_some())
            .field("last_token", &self.last_token)
            .field("last", &self.last)
            .finish()
    }
}

impl Entropix {
    /// A validated Entropix sampler with no attention source.
    pub fn new(params: EntropixParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self {
            params,
            rng: SeededRng::new(params.seed),
            source: None,
            last_token: None,
            last: None,
            scratch: Vec::new(),
            raw: Vec::new(),
            scan: LogitScan::default(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &EntropixParams {
        &self.params
    }

    /// What the last `apply` did; `None` before the first successful one
    /// (and after a failed one or a reset).
    pub fn last_step(&self) -> Option<&StepReport> {
        self.last.as_ref()
    }

    /// The last accepted token.
    pub fn last_accepted(&self) -> Option<TokenId> {
        self.last_token
    }

    fn uses_attention(&self) -> bool {
        self.params.variant_enum() != Variant::LogitsOnly
    }

    /// The strategy for these metrics.
    fn choose(&self, h: f64, v: f64, a: &AttnTerms) -> Strategy {
        let p = &self.params;
        let (low_ent, low_vent, med_ent, high_ent, high_vent) = (p.low_ent as f64, p.low_vent as f64, p.med_ent as f64, p.high_ent as f64, p.high_vent as f64);
        // Variant 1's attention conditions; all true when attention (or the
        // metric) is unavailable, or in the other variants.
        let six = p.variant_enum() == Variant::AllMetrics && a.available();
        let agree = six && p.select_on_agreement;
        let inter = six && p.select_on_interaction && a.interaction_available;
        let lo_ae = !six || a.entropy_bits < p.low_attn_ent as f64;
        let hi_ae = !six || a.entropy_bits > p.high_attn_ent as f64;
        let lo_av = !six || a.varentropy_bits2 < p.low_attn_vent as f64;
        let hi_av = !six || a.varentropy_bits2 > p.high_attn_vent as f64;
        let lo_ag = !agree || a.agreement < p.low_agree as f64;
        let hi_ag = !agree || a.agreement > p.high_agree as f64;
        let lo_in = !inter || a.interaction < p.low_interaction as f64;
        let above_lo_in = !inter || a.interaction > p.low_interaction as f64;
        let hi_in = !inter || a.interaction > p.high_interaction as f64;
        if h < low_ent && v < low_vent && lo_ae && lo_av && lo_ag && lo_in {
            Strategy::Flowing
        } else if h > high_ent && v < low_vent && lo_ae && lo_av && lo_ag && lo_in {
            Strategy::Treading
        } else if h < high_ent && v > high_vent && lo_ae && hi_av && lo_ag && above_lo_in {
            Strategy::Exploring
        } else if h > med_ent && v > high_vent && hi_ae && hi_av && hi_ag && hi_in {
            Strategy::Resampling
        } else {
            Strategy::Adaptive
        }
    }

    /// The parameters a strategy derives (not for flowing).
    pub(crate) fn derive(&self, strategy: Strategy, h: f64, v: f64, a: &AttnTerms) -> Derived {
        let p = &self.params;
        let temp = p.temp as f64;
        let base = Derived { temperature: p.temp, top_k: p.top_k.max(0), top_p: p.top_p, min_p: p.min_p };
        let derived = match strategy {
            Strategy::Flowing => Derived::GREEDY,
            Strategy::Treading => {
                let t = (temp * (p.helv_attn_ent_offset as f64 + p.helv_attn_ent_coef as f64 * a.entropy_bits)).min(p.helv_max_temp as f64);
                Derived { temperature: t as f32, ..base }
            }
            Strategy::Exploring => {
                let t =
                    (temp * (p.lehv_interaction_strength_offset as f64 + p.lehv_interaction_strength_coef as f64 * a.interaction)).min(p.lehv_max_temp as f64);
                let k = if p.top_k > 0 { trunc_i32(p.top_k as f64 * (1.0 + p.lehv_agree_coef as f64 * (1.0 - a.agreement))).max(p.lehv_min_top_k) } else { 0 };
                Derived { temperature: t as f32, top_k: k, ..base }
            }
            Strategy::Resampling => {
                let t = (temp * (p.hehv_attn_vent_offset as f64 + p.hehv_attn_vent_coef as f64 * a.varentropy_bits2)).max(p.hehv_min_temp as f64);
                let top_p = (p.top_p as f64 - p.hehv_attn_ent_coef as f64 * a.entropy_bits).max(p.hehv_min_top_p as f64).min(1.0);
                Derived { temperature: t as f32, top_p: top_p as f32, ..base }
            }
            Strategy::Adaptive => {
                let u_logits = h + v;
                let u_attn = a.entropy_bits + a.varentropy_bits2;
                let t = temp * (1.0 + p.ada_temp_logits as f64 * u_logits + p.ada_temp_attn as f64 * u_attn - p.ada_temp_agree as f64 * a.agreement);
                let top_p = (p.top_p as f64 * (1.0 + p.ada_top_p as f64 * a.varentropy_bits2)).clamp(0.1, 1.0);
                let top_k = if p.top_k > 0 {
                    round_i32(p.top_k as f64 * (1.0 + p.ada_top_k_int as f64 * a.interaction - p.ada_top_k_agree as f64 * a.agreement)).clamp(1, 100)
                } else {
                    0
                };
                let min_p = if p.min_p > 0.0 { (p.min_p as f64 * (1.0 - p.ada_min_p as f64 * u_logits)).clamp(0.01, 0.5) } else { 0.0 };
                Derived { temperature: t as f32, top_k, top_p: top_p as f32, min_p: min_p as f32 }
            }
        };
        derived.with_max_temp(p.max_temp)
    }

    /// The confidence term of the adaptive score for a draw with ln p =
    /// `log_prob` (nats), given the step's metrics.
    pub(crate) fn confidence(&self, log_prob: f64, h: f64, v: f64, a: &AttnTerms) -> f64 {
        let p = &self.params;
        let (h_term, v_term) = match p.score_mode_enum() {
            ScoreMode::Seed => (h, v),
            ScoreMode::PerCandidate => {
                let surprise = -log_prob / std::f64::consts::LN_2;
                (surprise, (surprise - h) * (surprise - h))
            }
        };
        (1.0 - h_term) * p.ada_score_logits_ent as f64
            + (1.0 - a.entropy_bits) * p.ada_score_attn_ent as f64
            + (1.0 - v_term) * p.ada_score_logits_vent as f64
            + (1.0 - a.varentropy_bits2) * p.ada_score_attn_vent as f64
            + a.agreement * p.ada_score_agree as f64
            + a.interaction * p.ada_score_int as f64
    }
}

impl Sampler for Entropix {
    fn name(&self) -> &'static str {
        "entropix"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        self.last = None;
        require_candidates(candidates)?;
        let kind = self.params.kind();
        let attn = AttnTerms::read(self.source.as_ref(), self.uses_attention(), kind);
        let depth = scan_depth(|s| self.derive(s, 0.0, 0.0, &attn));
        let stats = scan_step(candidates, depth, &mut self.scan).ok_or(SampleError::NoFiniteLogits)?;
        let (h, v) = (stats.entropy_bits, stats.varentropy_bits2);
        let strategy = self.choose(h, v, &attn);
        let mut report = StepReport::new(strategy, &stats, &attn, kind);
        let mut draws = self.rng.stream();
        match strategy {
            Strategy::Flowing => {
                let best = scan_argmax(candidates, &self.scan).ok_or(SampleError::NoFiniteLogits)?;
                candidates.select(best);
                report.derived = Derived::GREEDY;
            }
            Strategy::Treading => {
                let clarify = self.params.clarifying_token_id;
                let just_inserted = clarify >= 0 && self.last_token == Some(clarify);
                match insertable(candidates, clarify).filter(|_| !just_inserted) {
                    Some(i) => {
                        candidates.select(i);
                        report.derived = Derived::UNUSED;
                        report.inserted_token = Some(clarify);
                        report.insertion = Some(Insertion::Clarify);
                    }
                    None => {
                        let d = self.derive(strategy, h, v, &attn);
                        sample_one(candidates, &d, &mut self.scratch, Some(&self.scan), draws.next_f64());
                        report.derived = d;
                    }
                }
            }
            Strategy::Exploring | Strategy::Resampling => {
                let d = self.derive(strategy, h, v, &attn);
                sample_one(candidates, &d, &mut self.scratch, Some(&self.scan), draws.next_f64());
                report.derived = d;
            }
            Strategy::Adaptive => {
                let d = self.derive(strategy, h, v, &attn);
                truncate(candidates, &d, &mut self.scratch, Some(&mut self.raw), Some(&self.scan));
                let mut picks = Vec::with_capacity(self.params.n_adaptive_samples as usize);
                for _ in 0..self.params.n_adaptive_samples {
                    let index = pick_by_probability(candidates, draws.next_f64());
                    let token = candidates.as_slice()[index].id;
                    let log_prob = stats.log_prob(raw_logit(&self.raw, token));
                    let confidence = self.confidence(log_prob, h, v, &attn);
                    picks.push((index, ScoredSample { token, log_prob, confidence, score: log_prob + confidence }));
                }
                report.samples = picks.iter().map(|p| p.1).collect();
                let best = best_index(&report.samples);
                candidates.select(picks[best].0);
                report.derived = d;
            }
        }
        report.selected_token = candidates.selected_token();
        report.log("entropix");
        self.last = Some(report);
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        self.last_token = Some(token);
        self.rng.advance();
    }

    fn reset(&mut self) {
        self.last_token = None;
        self.last = None;
        self.rng.rewind();
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn selects(&self) -> bool {
        true
    }

    /// True for variants 0 and 1 (they use attention, and fall back to
    /// neutral attention terms when none arrives); false for variant 2.
    fn needs_attention(&self) -> bool {
        self.uses_attention()
    }

    fn set_attention_source(&mut self, source: Option<Arc<dyn AttentionSource>>) -> bool {
        if !self.uses_attention() {
            return false;
        }
        self.source = source;
        true
    }

    fn take_attachments(&mut self) -> Attachments {
        Attachments { attention: self.source.take(), other: None }
    }

    fn put_attachments(&mut self, attachments: Attachments) {
        self.source = attachments.attention;
    }

    /// `variant`, `score_mode`, `clarifying_token_id`,
    /// `last_accepted_token`, `has_attention_source`, and `last_step`
    /// (null before the first apply): the strategy name, `entropy_bits`,
    /// `varentropy_bits2`, `attention_available`, the attention terms used
    /// (`attn_entropy_bits`, `attn_varentropy_bits2`,
    /// `attn_varentropy_kind`, `agreement`, `interaction_strength`), the
    /// raw `attention` metrics (null when unavailable), the derived
    /// `temperature`, `top_k`, `top_p`, `min_p` (null when not used),
    /// `inserted_token`, `selected_token` and the adaptive `samples`.
    fn state_json(&self) -> serde_json::Value {
        json!({
            "variant": self.params.variant_enum().name(),
            "score_mode": self.params.score_mode_enum().name(),
            "clarifying_token_id": self.params.clarifying_token_id,
            "last_accepted_token": self.last_token,
            "has_attention_source": self.source.is_some(),
            "last_step": self.last.as_ref().map(StepReport::to_json),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{AttentionMetrics, FixedAttention};

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    fn attn(ent: f64, head_var: f64, vent: f64, agreement: f64, inter: Option<f64>) -> AttentionMetrics {
        AttentionMetrics {
            entropy_bits: ent,
            head_entropy_variance_bits2: head_var,
            varentropy_bits2: vent,
            agreement,
            interaction_strength: inter,
            n_head: 4,
            n_valid: 10,
        }
    }

    fn sampler(p: EntropixParams) -> Entropix {
        Entropix::new(EntropixParams { seed: 7, ..p }).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let p = EntropixParams::default();
        assert!(p.validate().is_ok());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<EntropixParams>(&json).unwrap(), p);
        assert_eq!(serde_json::from_str::<EntropixParams>("{}").unwrap(), p);
    }

    #[test]
    fn validate_rejects_bad_values() {
        let d = EntropixParams::default();
        for bad in [
            EntropixParams { temp: 0.0, ..d },
            EntropixParams { temp: f32::NAN, ..d },
            EntropixParams { top_p: 1.5, ..d },
            EntropixParams { min_p: -0.1, ..d },
            EntropixParams { high_vent: f32::INFINITY, ..d },
            EntropixParams { n_adaptive_samples: 0, ..d },
            EntropixParams { variant: 3, ..d },
            EntropixParams { attn_varentropy_kind: 2, ..d },
            EntropixParams { score_mode: 9, ..d },
            EntropixParams { clarifying_token_id: -2, ..d },
            EntropixParams { hehv_min_temp: 0.0, ..d },
            EntropixParams { lehv_min_top_k: 0, ..d },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn branch_order_of_the_original() {
        let s = sampler(EntropixParams::default());
        let a = AttnTerms::default();
        assert_eq!(s.choose(0.05, 0.05, &a), Strategy::Flowing);
        assert_eq!(s.choose(5.5, 0.05, &a), Strategy::Treading);
        // Seed prose threshold 3.0 is not the code's: 4.0 bits is adaptive.
        assert_eq!(s.choose(4.0, 0.05, &a), Strategy::Adaptive);
        assert_eq!(s.choose(2.1, 5.5, &a), Strategy::Exploring);
        assert_eq!(s.choose(5.5, 5.2, &a), Strategy::Resampling);
        assert_eq!(s.choose(2.0, 2.0, &a), Strategy::Adaptive);
    }

    #[test]
    fn all_metrics_variant_needs_attention_conditions() {
        let s = sampler(EntropixParams { variant: 1, ..Default::default() });
        let src: Arc<dyn AttentionSource> = Arc::new(FixedAttention(Some(attn(3.0, 2.0, 0.0, 0.0, None))));
        let a = AttnTerms::read(Some(&src), true, AttnVarentropyKind::HeadEntropyVariance);
        // attn entropy 3.0 is not below low_attn_ent 1.6: not flowing.
        assert_eq!(s.choose(0.05, 0.05, &a), Strategy::Adaptive);
        // attn entropy 3.0 not above high_attn_ent 5.0: not resampling.
        assert_eq!(s.choose(5.5, 5.2, &a), Strategy::Adaptive);
        let src: Arc<dyn AttentionSource> = Arc::new(FixedAttention(Some(attn(6.0, 2.0, 0.0, 0.0, None))));
        let a = AttnTerms::read(Some(&src), true, AttnVarentropyKind::HeadEntropyVariance);
        assert_eq!(s.choose(5.5, 5.2, &a), Strategy::Resampling);
        // Per-head varentropy 0 is below high_attn_vent: not resampling.
        let a = AttnTerms::read(Some(&src), true, AttnVarentropyKind::PerHeadVarentropy);
        assert_eq!(s.choose(5.5, 5.2, &a), Strategy::Adaptive);
        // Without attention it branches like the original.
        assert_eq!(s.choose(0.05, 0.05, &AttnTerms::default()), Strategy::Flowing);
    }

    #[test]
    fn derived_parameters_follow_the_formulas() {
        let s = sampler(EntropixParams { temp: 1.0, ..EntropixParams::reference() });
        let src: Arc<dyn AttentionSource> = Arc::new(FixedAttention(Some(attn(2.0, 0.9, 0.3, 0.1, Some(0.8)))));
        let a = AttnTerms::read(Some(&src), true, AttnVarentropyKind::HeadEntropyVariance);
        // Seed example: HEHV with attention varentropy 0.9 and T = 1 -> 2.45.
        let d = s.derive(Strategy::Resampling, 5.5, 5.2, &a);
        assert!((d.temperature - 2.45).abs() < 1e-6, "{d:?}");
        assert!((d.top_p - 0.5).abs() < 1e-6);
        let d = s.derive(Strategy::Exploring, 2.1, 5.5, &a);
        assert!((d.temperature - 1.44).abs() < 1e-6, "{d:?}");
        assert_eq!(d.top_k, (27.0f64 * (1.0 + 0.5 * 0.9)) as i32);
        let d = s.derive(Strategy::Treading, 5.5, 0.05, &a);
        assert!((d.temperature - 1.5).abs() < 1e-6);
        let d = s.derive(Strategy::Adaptive, 2.0, 1.0, &a);
        assert!((d.temperature as f64 - (1.0 + 0.3 * 3.0 + 0.2 * 2.9 - 0.2 * 0.1)).abs() < 1e-6);
        assert!((d.top_p as f64 - 0.9 * 1.09).abs() < 1e-6);
        assert_eq!(d.top_k, (27.0f64 * (1.0 + 0.24 - 0.02)).round() as i32);
        assert!((d.min_p - 0.01).abs() < 1e-7);
    }

    #[test]
    fn max_temp_bounds_every_sampling_strategy() {
        let src: Arc<dyn AttentionSource> = Arc::new(FixedAttention(Some(attn(2.0, 0.9, 0.3, 0.1, Some(0.8)))));
        let a = AttnTerms::read(Some(&src), true, AttnVarentropyKind::HeadEntropyVariance);
        let bounded = sampler(EntropixParams { temp: 1.0, max_temp: 0.7, ..EntropixParams::reference() });
        // Unbounded, each of these is above 1.2 (treading 1.5, exploring
        // 1.44, resampling 2.45, adaptive 1 + 0.3 (6 + 12) + ...).
        for st in [Strategy::Treading, Strategy::Exploring, Strategy::Resampling, Strategy::Adaptive] {
            assert_eq!(bounded.derive(st, 6.0, 12.0, &a).temperature, 0.7, "{st:?}");
        }
        assert_eq!(bounded.derive(Strategy::Flowing, 0.0, 0.0, &a).temperature, 0.0);
        // The reference has no bound.
        let reference = sampler(EntropixParams { temp: 1.0, ..EntropixParams::reference() });
        assert_eq!(EntropixParams::reference().max_temp, f32::MAX);
        assert!((reference.derive(Strategy::Resampling, 5.5, 5.2, &a).temperature - 2.45).abs() < 1e-6);
        assert!(EntropixParams { max_temp: 0.0, ..EntropixParams::reference() }.validate().is_err());
        assert!(EntropixParams { max_temp: f32::NAN, ..EntropixParams::reference() }.validate().is_err());
    }

    #[test]
    fn disabled_top_k_and_min_p_stay_disabled() {
        let s = sampler(EntropixParams { top_k: 0, min_p: 0.0, ..Default::default() });
        let a = AttnTerms::default();
        for st in [Strategy::Treading, Strategy::Exploring, Strategy::Resampling, Strategy::Adaptive] {
            let d = s.derive(st, 2.0, 1.0, &a);
            assert_eq!(d.top_k, 0, "{st:?}");
            assert_eq!(d.min_p, 0.0, "{st:?}");
        }
    }

    #[test]
    fn per_candidate_confidence_depends_on_the_token() {
        let s = sampler(EntropixParams { score_mode: 1, ..Default::default() });
        let a = AttnTerms::default();
        let c1 = s.confidence((0.5f64).ln(), 1.0, 0.5, &a);
        let c2 = s.confidence((0.25f64).ln(), 1.0, 0.5, &a);
        assert_ne!(c1, c2);
        let seed = sampler(EntropixParams::default());
        assert_eq!(seed.confidence((0.5f64).ln(), 1.0, 0.5, &a), seed.confidence((0.25f64).ln(), 1.0, 0.5, &a));
    }

    #[test]
    fn logits_only_variant_ignores_attention() {
        let mut s = sampler(EntropixParams { variant: 2, ..Default::default() });
        assert!(!s.needs_attention());
        assert!(!s.set_attention_source(Some(Arc::new(FixedAttention(Some(attn(1.0, 1.0, 1.0, 0.0, None)))))));
        let mut a = tokens(&[1.0, 0.5, 0.2, 0.0]);
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        assert!(!s.last_step().unwrap().attention_available());
        let mut s = sampler(EntropixParams::default());
        assert!(s.needs_attention());
        assert!(s.set_attention_source(None));
    }

    #[test]
    fn apply_is_pure_and_reset_clears() {
        let mut s = sampler(EntropixParams::default());
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.4).collect();
        let run = |s: &mut Entropix| {
            let mut a = tokens(&logits);
            let mut c = Candidates::new(&mut a);
            s.apply(&mut c).unwrap();
            c.selected_token().unwrap()
        };
        let t = run(&mut s);
        assert_eq!(t, run(&mut s));
        s.accept(t);
        assert_eq!(s.last_accepted(), Some(t));
        s.reset();
        assert!(s.last_step().is_none() && s.last_accepted().is_none());
        assert_eq!(t, run(&mut s));
    }
}
