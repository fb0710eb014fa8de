//! The entropy-based four-mode sampler of seed 001 (reference
//! Maximilian-Winter/entropy_sampler).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{
    insertable, sample_one, scan_argmax, scan_depth, scan_step, trunc_i32, AttnTerms, AttnVarentropyKind, Derived, Insertion, StepReport, Strategy,
};
use crate::core::error::check_range;
use crate::core::logit_scan::LogitScan;
use crate::core::sampler::require_candidates;
use crate::core::{Attachments, Candidates, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId, RANDOM_SEED};
use crate::metrics::AttentionSource;

/// Parameters of [`FourMode`]. Same thresholds and coefficients as
/// [`super::EntropixParams`] (reference defaults); entropies in bits,
/// varentropies in bits², the rest dimensionless.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FourModeParams {
    /// Base temperature, > 0. Default 0.666.
    pub temp: f32,
    /// Base top-p in [0, 1]; 1 disables. Default 0.90.
    pub top_p: f32,
    /// Base top-k; <= 0 disables. Default 27.
    pub top_k: i32,
    /// Min-p relative to the top probability at the step's temperature
    /// (p_i >= min_p * p_max; the reference used an absolute p_i >= min_p),
    /// in [0, 1]; 0 disables. Default 0.2 (reference 0.03; see `Default`).
    pub min_p: f32,
    /// Upper bound of every strategy's temperature (dimensionless, > 0),
    /// applied after each strategy's own formula and bounds. The
    /// reference has none (`reference()`: 3.4e38, the largest f32): its
    /// adaptive and resampling temperatures reach 2-3.5 on small models
    /// and write noise. Default 0.6, chosen with `eval` (see `Default`).
    pub max_temp: f32,
    /// LELV needs entropy below this, bits. Default 0.1.
    pub low_ent: f32,
    /// LELV and HELV need varentropy below this, bits². Default 0.1.
    pub low_vent: f32,
    /// HEHV needs entropy above this, bits. Default 3.0.
    pub med_ent: f32,
    /// HELV needs entropy above this, LEHV below it, bits. Default 5.0.
    pub high_ent: f32,
    /// LEHV and HEHV need varentropy above this, bits². Default 5.0.
    pub high_vent: f32,
    /// LELV: true = argmax; false = sample with T = temp and top-k
    /// `lelv_top_k` (the reference). Default false.
    pub lelv_argmax: bool,
    /// LELV top-k when sampling. >= 1. Default 5.
    pub lelv_top_k: i32,
    /// HELV temperature: min(helv_max_temp, temp * (offset + coef *
    /// attn_ent)), dimensionless multiplier of temp. Default 1.3.
    pub helv_attn_ent_offset: f32,
    /// Per bit of attention entropy. Default 0.2; 0 removes the term.
    pub helv_attn_ent_coef: f32,
    /// Upper bound of the HELV temperature. Default 1.5.
    pub helv_max_temp: f32,
    /// LEHV temperature: min(lehv_max_temp, temp * (offset + coef *
    /// interaction)). Default 1.2.
    pub lehv_interaction_strength_offset: f32,
    /// Per unit of interaction strength. Default 0.3; 0 removes the term.
    pub lehv_interaction_strength_coef: f32,
    /// Upper bound of the LEHV temperature. Default 1.5.
    pub lehv_max_temp: f32,
    /// LEHV top-k: max(lehv_min_top_k, int(top_k * (1 + lehv_agree_coef *
    /// (1 - agreement)))). Default 0.5.
    pub lehv_agree_coef: f32,
    /// Lower bound of the LEHV top-k. Default 5.
    pub lehv_min_top_k: i32,
    /// HEHV top-p: max(hehv_min_top_p, top_p - coef * attn_ent), per bit.
    /// Default 0.2.
    pub hehv_attn_ent_coef: f32,
    /// Lower bound of the HEHV top-p. Default 0.5.
    pub hehv_min_top_p: f32,
    /// HEHV temperature: max(hehv_min_temp, temp * (offset + coef *
    /// attn_vent)). Default 2.0.
    pub hehv_attn_vent_offset: f32,
    /// Per bit² of attention varentropy. Default 0.5; 0 removes the term.
    pub hehv_attn_vent_coef: f32,
    /// Lower bound of the HEHV temperature. Default 1.5 (the reference
    /// four-mode sampler; Entropix uses 2.0).
    pub hehv_min_temp: f32,
    /// Adaptive temperature: clip(temp * (1 + ada_temp_logits (H + V) +
    /// ada_temp_attn (attn_ent + attn_vent) - ada_temp_agree agreement),
    /// 0.1, 2.0), per unit of H + V (bits plus bits²). Default 0.3. Every
    /// `ada_*` coefficient: 0 removes its term.
    pub ada_temp_logits: f32,
    /// Per unit of attn_ent + attn_vent (bits plus bits²). Default 0.2.
    pub ada_temp_attn: f32,
    /// Per unit of agreement (dimensionless). Default 0.2.
    pub ada_temp_agree: f32,
    /// Adaptive top-p: clip(top_p (1 + ada_top_p attn_vent), 0.1, 1).
    /// Default 0.1.
    pub ada_top_p: f32,
    /// Adaptive top-k: clip(round(top_k (1 + ada_top_k_int interaction -
    /// ada_top_k_agree agreement)), 1, 100), per unit of interaction
    /// strength. Default 0.3.
    pub ada_top_k_int: f32,
    /// Per unit of agreement. Default 0.2.
    pub ada_top_k_agree: f32,
    /// Adaptive min-p: clip(min_p (1 - ada_min_p (H + V)), 0.01, 0.5).
    /// Default 0 (reference 0.5, see `Default`).
    pub ada_min_p: f32,
    /// Pause token ("..." in the reference), -1 = none. Default -1.
    pub pause_token_id: i32,
    /// Clarifying-question token ("?" in the reference), -1 = none.
    /// Default -1.
    pub clarifying_token_id: i32,
    /// Attention "varentropy": 0 = variance of per-head entropies, 1 =
    /// per-head varentropy; bits². Default 0.
    pub attn_varentropy_kind: u32,
    /// Read attention (true) or run on the logits alone with neutral
    /// attention terms (false; `needs_attention()` is then false).
    /// Default true.
    pub use_attention: bool,
    /// RNG seed; 0xFFFFFFFF draws a random seed. Default 0xFFFFFFFF.
    pub seed: u32,
}

impl Default for FourModeParams {
    /// [`FourModeParams::reference`] with the temperature bounded and a
    /// plain min-p, chosen with `eval` on SmolLM2-135M-Instruct (its
    /// calibrated profile; 100 arithmetic questions, 12 open prompts):
    /// the reference writes 1/100 correct at NLL 3.09 nats/token (its HEHV
    /// temperature is floored at 1.5 and its adaptive one reaches 2);
    /// `max_temp` 0.8, `min_p` 0.05 and `ada_min_p` 0 (see
    /// [`super::EntropixParams`]'s `Default`) give 9/100, seq-rep-4 0.048,
    /// NLL 0.97 (the llama.cpp-like default chain: 11/100, 0.022, 1.07).
    /// `max_temp` 1.0 gave 6/100 and NLL 1.08.
    ///
    /// `min_p` 0.2: on Gemma 3 270M's 12 dev prompts (a base model; greedy
    /// seq-rep-4 0.783, T 1 + min-p 0.1 NLL 0.69) four-mode either looped
    /// or, with the CLI's guard made to stop the loops (DRY on the reply
    /// only: allowed length 2 at 0.8, 3 at 1.2 or 4 at 1.5), sampled too
    /// wide (seq-rep-4 0.31-0.37 at NLL 0.81-0.86). With `min_p` 0.2 and
    /// the guard at allowed length 2 it gives 0.379 at NLL 0.677, and on
    /// SmolLM2's dev items 9/100, seq-rep-4 0.022, NLL 0.837 (0.1 gave
    /// Gemma 0.212 at NLL 0.851 with allowed length 3 at 1.2).
    ///
    /// `max_temp` 0.6 (was 0.8): four-mode answered fewer questions than
    /// greedy in a fourth evaluation set (15/200 against 26, p 0.019). On
    /// the dev items with three seeds each (300 answers, 36 open texts),
    /// SmolLM2: 0.8 gave 30/300 (greedy 45, p 0.024), seq-rep-4 0.021, NLL
    /// 0.846; 0.6 gave 38/300 (p 0.36), 0.025, 0.791. Gemma: 0.8 gave
    /// seq-rep-4 0.375 at NLL 0.676, 0.6 gave 0.356 at 0.665 (min-p 0.490
    /// at 0.681). Answering from the argmax in the low-entropy mode
    /// (`lelv_argmax`) or a base temperature of 0.5 changed no answer.
    fn default() -> Self {
        Self { max_temp: 0.6, min_p: 0.2, ada_min_p: 0.0, ..Self::reference() }
    }
}

impl FourModeParams {
    /// The settings of seed 001 and its reference (Maximilian-Winter/entropy_sampler): the `reference`
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
            lelv_argmax: false,
            lelv_top_k: 5,
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
            hehv_min_temp: 1.5,
            ada_temp_logits: 0.3,
            ada_temp_attn: 0.2,
            ada_temp_agree: 0.2,
            ada_top_p: 0.1,
            ada_top_k_int: 0.3,
            ada_top_k_agree: 0.2,
            ada_min_p: 0.5,
            pause_token_id: -1,
            clarifying_token_id: -1,
            attn_varentropy_kind: 0,
            use_attention: true,
            seed: RANDOM_SEED,
        }
    }
}

impl FourModeParams {
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
        ] {
            check_range(name, v, f32::MIN, f32::MAX, "must be a finite number")?;
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
        if self.lelv_top_k < 1 {
            return Err(ParamError::new("lelv_top_k", self.lelv_top_k, "must be >= 1"));
        }
        if self.pause_token_id < -1 {
            return Err(ParamError::new("pause_token_id", self.pause_token_id, "must be a token id or -1 (none)"));
        }
        if self.clarifying_token_id < -1 {
            return Err(ParamError::new("clarifying_token_id", self.clarifying_token_id, "must be a token id or -1 (none)"));
        }
        if self.pause_token_id >= 0 && self.pause_token_id == self.clarifying_token_id {
            return Err(ParamError::new("pause_token_id", self.pause_token_id, "must differ from clarifying_token_id"));
        }
        if AttnVarentropyKind::from_code(self.attn_varentropy_kind).is_none() {
            return Err(ParamError::new("attn_varentropy_kind", self.attn_varentropy_kind, "must be 0 (head-entropy variance) or 1 (per-head varentropy)"));
        }
        Ok(())
    }

    fn kind(&self) -> AttnVarentropyKind {
        AttnVarentropyKind::from_code(self.attn_varentropy_kind).unwrap_or(AttnVarentropyKind::HeadEntropyVariance)
    }
}

/// Bounds of the adaptive temperature (the reference clamps it).
const ADA_TEMP_MIN: f64 = 0.1;
const ADA_TEMP_MAX: f64 = 2.0;

/// The entropy-based four-mode sampler (seed 001). Selects a token: put it
/// last in a chain.
///
/// Metrics as in [`super::Entropix`] (H bits, V bits², attention from the
/// source, neutral zeros without it). Modes, checked in this order:
///
/// 1. **LELV** ("flowing"), H < low_ent and V < low_vent: sample with
///    T = temp and top-k `lelv_top_k` (5), no top-p/min-p, as the
///    reference; `lelv_argmax` makes it argmax.
/// 2. **HELV** ("treading carefully, asking clarifying questions"),
///    H > high_ent and V < low_vent. With `prev` the last accepted token:
///    - `prev` is neither the pause nor the clarifying token: insert the
///      **pause** token (the model gets a beat to settle);
///    - `prev` is the pause token (HELV persisted right after the pause):
///      insert the **clarifying-question** token;
///    - `prev` is the clarifying token: sample with the boosted
///      temperature T = min(1.5, temp * (1.3 + 0.2 attn_ent)) and the base
///      top-p/top-k/min-p.
///
///    A token that is not configured (-1) or not among the candidates with
///    a logit above -inf is skipped: no pause token means HELV goes
///    straight to the clarifying token, no clarifying token means HELV
///    after a pause samples. So each token is inserted at most once in a
///    row, the pair at most once per HELV stretch, and a HELV stretch
///    continues by sampling.
/// 3. **LEHV** ("exploring forks"), H < high_ent and V > high_vent: as
///    Entropix (T = min(1.5, temp (1.2 + 0.3 interaction)), top_k =
///    max(5, int(top_k (1 + 0.5 (1 - agreement))))).
/// 4. **HEHV** ("resampling in the mist"), H > med_ent and V > high_vent:
///    T = max(1.5, temp (2.0 + 0.5 attn_vent)) (the reference's bound 1.5),
///    top_p = max(0.5, top_p - 0.2 attn_ent).
/// 5. **adaptive** otherwise: the Entropix formulas with the temperature
///    clipped to [0.1, 2.0] (the reference does), and a single draw (no
///    multi-sample scoring).
///
/// Min-p is relative to the top probability everywhere (the reference
/// used an absolute threshold). Sampling as in Entropix: min-p, top-k,
/// temperature, top-p, softmax, one inverse-CDF draw from the seeded RNG.
#[derive(Clone)]
pub struct FourMode {
    params: FourModeParams,
    rng: SeededRng,
    source: Option<Arc<dyn AttentionSource>>,
    last_token: Option<TokenId>,
    last: Option<StepReport>,
    scratch: Vec<TokenData>,
    /// The last apply's scan (scratch).
    scan: LogitScan,
}

impl std::fmt::Debug for FourMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FourMode")
            .field("params", &self.params)
            .field("rng", &self.rng)
            .field("has_source", &self.source.is_some())
            .field("last_token", &self.last_token)
            .field("last", &self.last)
            .finish()
    }
}

impl FourMode {
    /// A validated four-mode sampler with no attention source.
    pub fn new(params: FourModeParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params, rng: SeededRng::new(params.seed), source: None, last_token: None, last: None, scratch: Vec::new(), scan: LogitScan::default() })
    }

    /// The parameters.
    pub fn params(&self) -> &FourModeParams {
        &self.params
    }

    /// What the last `apply` did; `None` before the first successful one.
    pub fn last_step(&self) -> Option<&StepReport> {
        self.last.as_ref()
    }

    fn choose(&self, h: f64, v: f64) -> Strategy {
        let p = &self.params;
        if h < p.low_ent as f64 && v < p.low_vent as f64 {
            Strategy::Flowing
        } else if h > p.high_ent as f64 && v < p.low_vent as f64 {
            Strategy::Treading
        } else if h < p.high_ent as f64 && v > p.high_vent as f64 {
            Strategy::Exploring
        } else if h > p.med_ent as f64 && v > p.high_vent as f64 {
            Strategy::Resampling
        } else {
            Strategy::Adaptive
        }
    }

    /// The parameters a mode derives (LELV: the sampling variant).
    pub(crate) fn derive(&self, strategy: Strategy, h: f64, v: f64, a: &AttnTerms) -> Derived {
        let p = &self.params;
        let temp = p.temp as f64;
        let base = Derived { temperature: p.temp, top_k: p.top_k.max(0), top_p: p.top_p, min_p: p.min_p };
        let derived = match strategy {
            Strategy::Flowing => {
                if p.lelv_argmax {
                    Derived::GREEDY
                } else {
                    Derived { temperature: p.temp, top_k: p.lelv_top_k, top_p: 1.0, min_p: 0.0 }
                }
            }
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
                let t = (temp * (1.0 + p.ada_temp_logits as f64 * u_logits + p.ada_temp_attn as f64 * u_attn - p.ada_temp_agree as f64 * a.agreement))
                    .clamp(ADA_TEMP_MIN, ADA_TEMP_MAX);
                let top_p = (p.top_p as f64 * (1.0 + p.ada_top_p as f64 * a.varentropy_bits2)).clamp(0.1, 1.0);
                let top_k = if p.top_k > 0 {
                    super::common::round_i32(p.top_k as f64 * (1.0 + p.ada_top_k_int as f64 * a.interaction - p.ada_top_k_agree as f64 * a.agreement))
                        .clamp(1, 100)
                } else {
                    0
                };
                let min_p = if p.min_p > 0.0 { (p.min_p as f64 * (1.0 - p.ada_min_p as f64 * u_logits)).clamp(0.01, 0.5) } else { 0.0 };
                Derived { temperature: t as f32, top_k, top_p: top_p as f32, min_p: min_p as f32 }
            }
        };
        derived.with_max_temp(p.max_temp)
    }

    /// Which token HELV inserts after `prev` (before checking presence).
    fn helv_insertion(&self, candidates: &Candidates<'_>) -> Option<(usize, Insertion, TokenId)> {
        let (pause, clarify) = (self.params.pause_token_id, self.params.clarifying_token_id);
        let is = |id: TokenId| id >= 0 && self.last_token == Some(id);
        if is(clarify) {
            return None;
        }
        if !is(pause) {
            if let Some(i) = insertable(candidates, pause) {
                return Some((i, Insertion::Pause, pause));
            }
        }
        insertable(candidates, clarify).map(|i| (i, Insertion::Clarify, clarify))
    }
}

impl Sampler for FourMode {
    fn name(&self) -> &'static str {
        "four-mode"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        self.last = None;
        require_candidates(candidates)?;
        let kind = self.params.kind();
        let attn = AttnTerms::read(self.source.as_ref(), self.params.use_attention, kind);
        let depth = scan_depth(|s| self.derive(s, 0.0, 0.0, &attn));
        let stats = scan_step(candidates, depth, &mut self.scan).ok_or(SampleError::NoFiniteLogits)?;
        let (h, v) = (stats.entropy_bits, stats.varentropy_bits2);
        let strategy = self.choose(h, v);
        let mut report = StepReport::new(strategy, &stats, &attn, kind);
        let u = self.rng.stream().next_f64();
        let insertion = if strategy == Strategy::Treading { self.helv_insertion(candidates) } else { None };
        if let Some((i, what, id)) = insertion {
            candidates.select(i);
            report.derived = Derived::UNUSED;
            report.inserted_token = Some(id);
            report.insertion = Some(what);
        } else if strategy == Strategy::Flowing && self.params.lelv_argmax {
            let best = scan_argmax(candidates, &self.scan).ok_or(SampleError::NoFiniteLogits)?;
            candidates.select(best);
            report.derived = Derived::GREEDY;
        } else {
            let d = self.derive(strategy, h, v, &attn);
            sample_one(candidates, &d, &mut self.scratch, Some(&self.scan), u);
            report.derived = d;
        }
        report.selected_token = candidates.selected_token();
        report.log("four-mode");
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

    /// True unless `use_attention` is false.
    fn needs_attention(&self) -> bool {
        self.params.use_attention
    }

    fn set_attention_source(&mut self, source: Option<Arc<dyn AttentionSource>>) -> bool {
        if !self.params.use_attention {
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

    /// `pause_token_id`, `clarifying_token_id`, `last_accepted_token`,
    /// `has_attention_source` and `last_step` (as Entropix's; `insertion`
    /// says `"pause"` or `"clarify"`).
    fn state_json(&self) -> serde_json::Value {
        json!({
            "pause_token_id": self.params.pause_token_id,
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

    fn flat(n: usize) -> Vec<TokenData> {
        (0..n).map(|i| TokenData::new(i as i32, 0.0)).collect()
    }

    fn step(s: &mut FourMode, input: &[TokenData]) -> (TokenId, Option<Insertion>) {
        let mut a = input.to_vec();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        let t = c.selected_token().unwrap();
        let ins = s.last_step().unwrap().insertion;
        s.accept(t);
        (t, ins)
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let p = FourModeParams::default();
        assert!(p.validate().is_ok());
        assert_eq!(serde_json::from_str::<FourModeParams>("{}").unwrap(), p);
        assert!(FourModeParams { pause_token_id: 3, clarifying_token_id: 3, ..p }.validate().is_err());
        assert!(FourModeParams { lelv_top_k: 0, ..p }.validate().is_err());
    }

    #[test]
    fn helv_pause_then_clarify_then_sample() {
        // 64 equal logits: H = 6 bits > 5, V = 0: HELV.
        let input = flat(64);
        let mut s = FourMode::new(FourModeParams { pause_token_id: 10, clarifying_token_id: 20, seed: 1, ..FourModeParams::reference() }).unwrap();
        assert_eq!(step(&mut s, &input), (10, Some(Insertion::Pause)));
        assert_eq!(step(&mut s, &input), (20, Some(Insertion::Clarify)));
        let (t, ins) = step(&mut s, &input);
        assert_eq!(ins, None);
        let d = s.last_step().unwrap().derived;
        assert!((d.temperature - (0.666f32 * 1.3)).abs() < 1e-6);
        // A new HELV stretch starts with a pause again (unless the draw was the pause).
        if t != 10 && t != 20 {
            assert_eq!(step(&mut s, &input).1, Some(Insertion::Pause));
        }
    }

    #[test]
    fn helv_without_pause_token_asks_once() {
        let input = flat(64);
        let mut s = FourMode::new(FourModeParams { clarifying_token_id: 20, seed: 1, ..Default::default() }).unwrap();
        assert_eq!(step(&mut s, &input), (20, Some(Insertion::Clarify)));
        assert_eq!(step(&mut s, &input).1, None);
    }

    #[test]
    fn lelv_samples_top_5_or_argmax() {
        // A peaked distribution: H < 0.1, V < 0.1.
        let mut input: Vec<TokenData> = (0..100).map(|i| TokenData::new(i, -20.0 + (i % 7) as f32 * 0.1)).collect();
        input[42].logit = 10.0;
        let mut s = FourMode::new(FourModeParams { seed: 3, ..Default::default() }).unwrap();
        let mut a = input.clone();
        let mut c = Candidates::new(&mut a);
        s.apply(&mut c).unwrap();
        assert_eq!(s.last_step().unwrap().strategy, Strategy::Flowing);
        assert_eq!(c.len(), 5);
        assert_eq!(s.last_step().unwrap().derived.top_k, 5);
        let mut g = FourMode::new(FourModeParams { lelv_argmax: true, seed: 3, ..Default::default() }).unwrap();
        let mut a = input.clone();
        let mut c = Candidates::new(&mut a);
        g.apply(&mut c).unwrap();
        assert_eq!(c.selected_token(), Some(42));
        assert_eq!(c.len(), 100);
    }

    #[test]
    fn hehv_floor_is_1_5_and_adaptive_is_clipped() {
        let s = FourMode::new(FourModeParams { temp: 0.5, ..FourModeParams::reference() }).unwrap();
        let a = AttnTerms::default();
        assert_eq!(s.derive(Strategy::Resampling, 5.5, 5.5, &a).temperature, 1.5);
        assert!((s.derive(Strategy::Adaptive, 4.0, 4.9, &a).temperature - 1.835).abs() < 1e-6);
        let hot = FourMode::new(FourModeParams { temp: 1.0, ..FourModeParams::reference() }).unwrap();
        assert_eq!(hot.derive(Strategy::Adaptive, 4.0, 4.9, &a).temperature, 2.0);
        // The default bounds every strategy at max_temp 0.6.
        let bounded = FourMode::new(FourModeParams { temp: 1.0, ..FourModeParams::default() }).unwrap();
        assert_eq!(bounded.derive(Strategy::Adaptive, 4.0, 4.9, &a).temperature, 0.6);
        assert_eq!(bounded.derive(Strategy::Resampling, 5.5, 5.5, &a).temperature, 0.6);
    }
}
