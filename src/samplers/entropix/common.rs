//! Shared machinery of the Entropix and four-mode samplers: per-step
//! metrics, the attention fallback, the truncate-and-draw pipeline, the
//! step report and its C mirror.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::core::logit_scan::{scan_logits, LogitScan};
use crate::core::math::{logit_moments, max_logit};
use crate::core::{Candidates, TokenData, TokenId};
use crate::metrics::{AttentionMetrics, AttentionSource};
use crate::samplers::dist::pick_by_probability;
use crate::samplers::filters::min_p::apply_min_p;
use crate::samplers::filters::top_p::apply_top_p;
use crate::samplers::temperature::apply_temperature;
use crate::samplers::top_k::apply_top_k;

/// The strategy ("mode") a step took, in the order the branches are
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Low entropy, low varentropy: "flowing with unspoken intent".
    Flowing,
    /// High entropy, low varentropy: "treading carefully, asking
    /// clarifying questions" (token insertion or a boosted temperature).
    Treading,
    /// Low entropy, high varentropy: "exploring forks in the path".
    Exploring,
    /// High entropy, high varentropy: "resampling in the mist".
    Resampling,
    /// Everything else: adaptive parameters.
    Adaptive,
}

impl Strategy {
    /// The name used in `state_json` (`"flowing"`, `"treading"`,
    /// `"exploring"`, `"resampling"`, `"adaptive"`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Flowing => "flowing",
            Strategy::Treading => "treading",
            Strategy::Exploring => "exploring",
            Strategy::Resampling => "resampling",
            Strategy::Adaptive => "adaptive",
        }
    }

    /// The code used by the C step struct: 1 flowing, 2 treading,
    /// 3 exploring, 4 resampling, 5 adaptive (0 = no step yet).
    pub fn code(self) -> u32 {
        match self {
            Strategy::Flowing => 1,
            Strategy::Treading => 2,
            Strategy::Exploring => 3,
            Strategy::Resampling => 4,
            Strategy::Adaptive => 5,
        }
    }
}

/// Which token a treading step inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// The pause token (four-mode sampler only).
    Pause,
    /// The clarifying(-question) token.
    Clarify,
}

impl Insertion {
    /// `"pause"` or `"clarify"`.
    pub fn name(self) -> &'static str {
        match self {
            Insertion::Pause => "pause",
            Insertion::Clarify => "clarify",
        }
    }
}

/// Which attention statistic plays "attention varentropy".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnVarentropyKind {
    /// Population variance across heads of the per-head attention
    /// entropies, bits² (what the original Entropix computes and calls
    /// "attn_varentropy"). Parameter value 0.
    HeadEntropyVariance,
    /// Mean over heads of the true per-head varentropy
    /// sum a (log2 a + H_h)², bits² (the entropix-local fix). Parameter
    /// value 1.
    PerHeadVarentropy,
}

impl AttnVarentropyKind {
    /// From the parameter value (0 or 1).
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::HeadEntropyVariance),
            1 => Some(Self::PerHeadVarentropy),
            _ => None,
        }
    }

    /// The name used in `state_json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::HeadEntropyVariance => "head_entropy_variance",
            Self::PerHeadVarentropy => "per_head_varentropy",
        }
    }
}

/// Entropy, varentropy and the log-normaliser of one step's logits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogitStats {
    pub entropy_bits: f64,
    pub varentropy_bits2: f64,
    /// ln sum exp(logit) over the finite logits (nats); +inf when `max` is.
    pub lse: f64,
    /// Number of +inf logits (0 when `max` is finite).
    pub n_inf: usize,
}

impl LogitStats {
    /// Entropy (bits) and varentropy (bits²) of softmax(logits), with the
    /// limit of softmax for +inf logits (uniform over them: H = log2 k,
    /// V = 0). NaN logits count as -inf. `None` when nothing is finite or
    /// +inf.
    pub fn of(data: &[TokenData]) -> Option<Self> {
        let max = max_logit(data);
        if max == f32::NEG_INFINITY {
            return None;
        }
        if max == f32::INFINITY {
            let n_inf = data.iter().filter(|t| t.logit == f32::INFINITY).count();
            return Some(Self { entropy_bits: (n_inf as f64).log2(), varentropy_bits2: 0.0, lse: f64::INFINITY, n_inf });
        }
        let m = logit_moments(data)?;
        // p_max = exp(max) / sum exp(logit), so ln sum exp = max - ln p_max.
        let lse = max as f64 - m.p_max.ln();
        Some(Self { entropy_bits: m.entropy_bits(), varentropy_bits2: m.varentropy_bits2(), lse, n_inf: 0 })
    }

    /// From a finished scan of `data` (the same array): its moments, or
    /// [`LogitStats::of`] when the scan stopped at a +inf logit.
    pub fn from_scan(scan: &LogitScan, data: &[TokenData]) -> Option<Self> {
        if scan.max == f32::INFINITY {
            return Self::of(data);
        }
        let m = scan.moments?;
        Some(Self {
            entropy_bits: m.entropy_nats() / std::f64::consts::LN_2,
            varentropy_bits2: m.varentropy_nats2() / (std::f64::consts::LN_2 * std::f64::consts::LN_2),
            lse: m.log_sum_exp(),
            n_inf: 0,
        })
    }

    /// ln p of a token with logit `raw` under softmax(logits) at T = 1,
    /// in nats (-inf for -inf and NaN logits).
    pub fn log_prob(&self, raw: f32) -> f64 {
        if self.n_inf > 0 {
            return if raw == f32::INFINITY { -(self.n_inf as f64).ln() } else { f64::NEG_INFINITY };
        }
        if raw > f32::NEG_INFINITY {
            raw as f64 - self.lse
        } else {
            f64::NEG_INFINITY
        }
    }
}

/// The attention values a step uses in its formulas.
///
/// Fallback when no fresh attention arrived this step (no source, the
/// source returned `None`, or a non-finite value): every attention term is
/// the neutral constant 0 — attention entropy 0 bits, attention
/// varentropy 0 bits², agreement 0, interaction strength 0 — so each
/// formula reduces to its logits-only part (e.g. HEHV temperature
/// `max(2.0, temp * 2.0)`), and the attention conditions of the
/// all-metrics variant are skipped. Interaction strength needs the
/// pre-softmax scores: when the capture has none it is 0 on its own
/// (`interaction_available == false`), and its conditions are skipped.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttnTerms {
    pub metrics: Option<AttentionMetrics>,
    pub interaction_available: bool,
    pub entropy_bits: f64,
    pub varentropy_bits2: f64,
    pub agreement: f64,
    pub interaction: f64,
}

impl AttnTerms {
    /// Reads the current step's attention from `source` (only when `use_it`)
    /// and picks the varentropy statistic `kind`. Never cached.
    pub fn read(source: Option<&Arc<dyn AttentionSource>>, use_it: bool, kind: AttnVarentropyKind) -> Self {
        let metrics = if use_it { source.and_then(|s| s.metrics()) } else { None };
        let metrics = metrics
            .filter(|m| m.entropy_bits.is_finite() && m.head_entropy_variance_bits2.is_finite() && m.varentropy_bits2.is_finite() && m.agreement.is_finite());
        match metrics {
            None => Self::default(),
            Some(m) => {
                let interaction = m.interaction_strength.filter(|x| x.is_finite());
                Self {
                    metrics: Some(m),
                    interaction_available: interaction.is_some(),
                    entropy_bits: m.entropy_bits,
                    varentropy_bits2: match kind {
                        AttnVarentropyKind::HeadEntropyVariance => m.head_entropy_variance_bits2,
                        AttnVarentropyKind::PerHeadVarentropy => m.varentropy_bits2,
                    },
                    agreement: m.agreement,
                    interaction: interaction.unwrap_or(0.0),
                }
            }
        }
    }

    /// Whether attention arrived this step.
    pub fn available(&self) -> bool {
        self.metrics.is_some()
    }
}

/// The sampling parameters a strategy derived for this step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Derived {
    /// Temperature (dimensionless); 0 = greedy; NaN when not used (token
    /// insertion).
    pub temperature: f32,
    /// Top-k; 0 = disabled; -1 when not used (insertion).
    pub top_k: i32,
    /// Top-p in [0, 1]; 1 = disabled; NaN when not used.
    pub top_p: f32,
    /// Min-p relative to the top probability; 0 = disabled; NaN when not
    /// used.
    pub min_p: f32,
}

impl Derived {
    /// What a greedy (argmax) step reports.
    pub const GREEDY: Derived = Derived { temperature: 0.0, top_k: 1, top_p: 1.0, min_p: 0.0 };
    /// What an insertion step reports: nothing was sampled.
    pub const UNUSED: Derived = Derived { temperature: f32::NAN, top_k: -1, top_p: f32::NAN, min_p: f32::NAN };

    /// The same with the temperature at most `max_temp` (a NaN
    /// temperature, an insertion, stays NaN).
    pub fn with_max_temp(self, max_temp: f32) -> Derived {
        Derived { temperature: if self.temperature > max_temp { max_temp } else { self.temperature }, ..self }
    }
}

/// One of the adaptive strategy's draws with its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredSample {
    /// The token drawn.
    pub token: TokenId,
    /// ln p of the token under softmax(original logits) at T = 1, nats.
    pub log_prob: f64,
    /// The confidence term added to the log-probability.
    pub confidence: f64,
    /// `log_prob + confidence`; the best draw wins (first on ties).
    pub score: f64,
}

/// What the last `apply` did, for traces and the C accessor. Scratch:
/// written by `apply`, cleared by `reset`, not part of the sampler's
/// persistent state.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The strategy taken.
    pub strategy: Strategy,
    /// Entropy of softmax(logits) at T = 1, bits.
    pub entropy_bits: f64,
    /// Varentropy of softmax(logits) at T = 1, bits².
    pub varentropy_bits2: f64,
    /// The attention metrics read this step; `None` when attention was
    /// unavailable (the neutral fallback was used).
    pub attention: Option<AttentionMetrics>,
    /// Whether interaction strength (pre-softmax scores) was available.
    pub interaction_available: bool,
    /// Attention entropy used in the formulas, bits (0 when unavailable).
    pub attn_entropy_bits: f64,
    /// Attention varentropy used in the formulas, bits² (which statistic:
    /// see [`StepReport::attn_varentropy_kind`]; 0 when unavailable).
    pub attn_varentropy_bits2: f64,
    /// Which statistic `attn_varentropy_bits2` is.
    pub attn_varentropy_kind: AttnVarentropyKind,
    /// Head agreement used (mean |a_h - mean_h a|, dimensionless).
    pub agreement: f64,
    /// Interaction strength used (dimensionless, logit units).
    pub interaction_strength: f64,
    /// The sampling parameters derived for this step.
    pub derived: Derived,
    /// The token inserted (clarifying or pause token), if any.
    pub inserted_token: Option<TokenId>,
    /// Which token was inserted.
    pub insertion: Option<Insertion>,
    /// The token selected.
    pub selected_token: Option<TokenId>,
    /// The adaptive strategy's draws and scores (empty otherwise).
    pub samples: Vec<ScoredSample>,
}

impl StepReport {
    /// One debug line per step (`RUST_LOG=entropix_sampler=debug`): what a
    /// user debugging a chain needs to see the strategy and its inputs.
    pub fn log(&self, sampler: &str) {
        if !log::log_enabled!(target: "entropix_sampler", log::Level::Debug) {
            return;
        }
        let attn = if self.attention_available() {
            format!("attention H {:.3} bits V {:.3} bits² agreement {:.3}", self.attn_entropy_bits, self.attn_varentropy_bits2, self.agreement)
        } else {
            "no attention".to_string()
        };
        let d = &self.derived;
        log::debug!(
            target: "entropix_sampler",
            "{sampler}: {} (H {:.3} bits, V {:.3} bits², {attn}) -> T {} top-k {} top-p {} min-p {}; token {:?}{}",
            self.strategy.name(),
            self.entropy_bits,
            self.varentropy_bits2,
            d.temperature,
            d.top_k,
            d.top_p,
            d.min_p,
            self.selected_token,
            self.inserted_token.map_or(String::new(), |t| format!(", inserted {t}")),
        );
    }

    pub(crate) fn new(strategy: Strategy, stats: &LogitStats, attn: &AttnTerms, kind: AttnVarentropyKind) -> Self {
        Self {
            strategy,
            entropy_bits: stats.entropy_bits,
            varentropy_bits2: stats.varentropy_bits2,
            attention: attn.metrics,
            interaction_available: attn.interaction_available,
            attn_entropy_bits: attn.entropy_bits,
            attn_varentropy_bits2: attn.varentropy_bits2,
            attn_varentropy_kind: kind,
            agreement: attn.agreement,
            interaction_strength: attn.interaction,
            derived: Derived::GREEDY,
            inserted_token: None,
            insertion: None,
            selected_token: None,
            samples: Vec::new(),
        }
    }

    /// Whether attention was available this step.
    pub fn attention_available(&self) -> bool {
        self.attention.is_some()
    }

    /// The report as JSON (units in the key names; non-finite numbers as
    /// null).
    pub fn to_json(&self) -> Value {
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| json!({"token": s.token, "log_prob_nats": num(s.log_prob), "confidence": num(s.confidence), "score": num(s.score)}))
            .collect();
        let a = self.attention.as_ref();
        json!({
            "strategy": self.strategy.name(),
            "entropy_bits": num(self.entropy_bits),
            "varentropy_bits2": num(self.varentropy_bits2),
            "attention_available": self.attention_available(),
            "interaction_available": self.interaction_available,
            "attn_entropy_bits": num(self.attn_entropy_bits),
            "attn_varentropy_bits2": num(self.attn_varentropy_bits2),
            "attn_varentropy_kind": self.attn_varentropy_kind.name(),
            "agreement": num(self.agreement),
            "interaction_strength": num(self.interaction_strength),
            "attention": a.map(|m| json!({
                "entropy_bits": num(m.entropy_bits),
                "head_entropy_variance_bits2": num(m.head_entropy_variance_bits2),
                "varentropy_bits2": num(m.varentropy_bits2),
                "agreement": num(m.agreement),
                "interaction_strength": m.interaction_strength.map(num),
                "n_head": m.n_head,
                "n_valid": m.n_valid,
            })),
            "temperature": num(self.derived.temperature as f64),
            "top_k": self.derived.top_k,
            "top_p": num(self.derived.top_p as f64),
            "min_p": num(self.derived.min_p as f64),
            "inserted_token": self.inserted_token,
            "insertion": self.insertion.map(Insertion::name),
            "selected_token": self.selected_token,
            "samples": samples,
        })
    }
}

/// A finite float as a JSON number, anything else as null.
pub(crate) fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The last step of an Entropix or four-mode sampler, as a C struct
/// (`entropix_entropix_step`), filled by `entropix_entropix_last_step`.
/// Floats that do not apply are NaN.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropixStep {
    /// False before the sampler's first successful apply (or after a
    /// reset); every other field is then meaningless.
    pub valid: bool,
    /// The strategy: 1 flowing, 2 treading, 3 exploring, 4 resampling,
    /// 5 adaptive (`ENTROPIX_STRATEGY_*`); 0 when `valid` is false.
    pub strategy: u32,
    /// Entropy of softmax(logits), bits.
    pub entropy_bits: f64,
    /// Varentropy of softmax(logits), bits².
    pub varentropy_bits2: f64,
    /// Whether fresh attention arrived this step. When false the
    /// attention terms below are the neutral fallback 0.
    pub attention_available: bool,
    /// Whether the interaction strength (pre-softmax scores) was captured.
    pub interaction_available: bool,
    /// Attention entropy used, bits.
    pub attn_entropy_bits: f64,
    /// Attention varentropy used, bits² (the statistic chosen by the
    /// params' `attn_varentropy_kind`).
    pub attn_varentropy_bits2: f64,
    /// Head agreement used (dimensionless).
    pub agreement: f64,
    /// Interaction strength used (dimensionless).
    pub interaction_strength: f64,
    /// Derived temperature (0 = greedy; NaN on insertion).
    pub temperature: f32,
    /// Derived top-k (0 = off; -1 on insertion).
    pub top_k: i32,
    /// Derived top-p (1 = off; NaN on insertion).
    pub top_p: f32,
    /// Derived min-p, relative to the top probability (0 = off; NaN on
    /// insertion).
    pub min_p: f32,
    /// The inserted token, or -1.
    pub inserted_token: i32,
    /// The selected token, or -1.
    pub selected_token: i32,
    /// Number of adaptive draws scored (0 outside the adaptive strategy).
    pub n_samples: i32,
    /// Score of the winning adaptive draw (NaN outside it).
    pub best_score: f64,
}

impl Default for EntropixStep {
    fn default() -> Self {
        Self {
            valid: false,
            strategy: 0,
            entropy_bits: f64::NAN,
            varentropy_bits2: f64::NAN,
            attention_available: false,
            interaction_available: false,
            attn_entropy_bits: f64::NAN,
            attn_varentropy_bits2: f64::NAN,
            agreement: f64::NAN,
            interaction_strength: f64::NAN,
            temperature: f32::NAN,
            top_k: -1,
            top_p: f32::NAN,
            min_p: f32::NAN,
            inserted_token: -1,
            selected_token: -1,
            n_samples: 0,
            best_score: f64::NAN,
        }
    }
}

impl EntropixStep {
    /// The C view of a sampler's last step (`None`: before the first apply,
    /// giving `valid == false`).
    pub fn from_report(report: Option<&StepReport>) -> Self {
        let Some(r) = report else {
            return Self::default();
        };
        let best_score = r.samples.iter().map(|s| s.score).fold(f64::NAN, |m, s| if m.is_nan() || s > m { s } else { m });
        Self {
            valid: true,
            strategy: r.strategy.code(),
            entropy_bits: r.entropy_bits,
            varentropy_bits2: r.varentropy_bits2,
            attention_available: r.attention_available(),
            interaction_available: r.interaction_available,
            attn_entropy_bits: r.attn_entropy_bits,
            attn_varentropy_bits2: r.attn_varentropy_bits2,
            agreement: r.agreement,
            interaction_strength: r.interaction_strength,
            temperature: r.derived.temperature,
            top_k: r.derived.top_k,
            top_p: r.derived.top_p,
            min_p: r.derived.min_p,
            inserted_token: r.inserted_token.unwrap_or(-1),
            selected_token: r.selected_token.unwrap_or(-1),
            n_samples: r.samples.len() as i32,
            best_score,
        }
    }
}

/// The index of token `id` in the candidates if it may be inserted: present
/// with a logit above -inf (a token an earlier stage banned or a grammar
/// masked is never inserted). `None` for `id < 0`. O(1) when the array is
/// in vocabulary order (llama.cpp's fresh array), a scan otherwise.
pub(crate) fn insertable(candidates: &Candidates<'_>, id: TokenId) -> Option<usize> {
    if id < 0 {
        return None;
    }
    let data = candidates.as_slice();
    let at = data.get(id as usize).filter(|t| t.id == id).map(|_| id as usize);
    at.or_else(|| data.iter().position(|t| t.id == id)).filter(|&i| data[i].logit > f32::NEG_INFINITY)
}

/// One pass over the candidates (see [`crate::core::logit_scan`]) that
/// keeps the best `k` in `scan` and returns the step's logit statistics;
/// `None` when no logit is finite or +inf.
pub(crate) fn scan_step(candidates: &Candidates<'_>, k: usize, scan: &mut LogitScan) -> Option<LogitStats> {
    scan_logits(candidates.as_slice(), k, scan);
    LogitStats::from_scan(scan, candidates.as_slice())
}

/// How many best candidates a step must keep so that whatever strategy it
/// takes can truncate from them: the largest top-k any strategy derives
/// from this step's attention (top-k never depends on the logits' entropy),
/// at least 1 for the argmax. A strategy that derives top-k 0 (off) falls
/// back to the whole array.
pub(crate) fn scan_depth(derive: impl Fn(Strategy) -> Derived) -> usize {
    [Strategy::Flowing, Strategy::Treading, Strategy::Exploring, Strategy::Resampling, Strategy::Adaptive]
        .into_iter()
        .map(|s| derive(s).top_k.max(1) as usize)
        .max()
        .unwrap_or(1)
}

/// The first largest logit's index, from the scan when it has one.
pub(crate) fn scan_argmax(candidates: &Candidates<'_>, scan: &LogitScan) -> Option<usize> {
    match scan.best.first() {
        Some(&(i, _)) if scan.max.is_finite() => Some(i as usize),
        _ => candidates.argmax(),
    }
}

/// Truncates and renormalises the candidates for `d`:
/// 1. min-p relative to the top probability at temperature T: keeps
///    p_i >= min_p * p_max of softmax(logit / T), i.e.
///    logit_i >= max + T ln(min_p) (done on the raw logits as
///    min-p(min_p^T));
/// 2. top-k (k <= 0: off);
/// 3. `raw` (when given) receives (id, raw logit) of the survivors so far,
///    sorted by id, for scoring;
/// 4. temperature (T <= 0: only the best token survives with p = 1);
/// 5. top-p over the survivors (the nucleus of the renormalised set, as in
///    a llama.cpp chain; the token that crosses p is kept);
/// 6. softmax into `p`.
///
/// With the step's `scan` holding the best top-k (the usual case), steps 1
/// and 2 run on those k candidates, moved to the front, instead of the
/// whole array: min-p keeps a top set of the logits, so top-k then min-p
/// keeps the same set as min-p then top-k.
///
/// At least one candidate survives when some logit is finite or +inf.
pub(crate) fn truncate(
    candidates: &mut Candidates<'_>,
    d: &Derived,
    scratch: &mut Vec<TokenData>,
    raw: Option<&mut Vec<(TokenId, f32)>>,
    scan: Option<&LogitScan>,
) {
    let t = d.temperature;
    if let Some(scan) = scan.filter(|s| d.top_k > 0 && s.covers(d.top_k as usize)) {
        let n = scan.best.len().min(d.top_k as usize);
        candidates.keep_indices(scan.best[..n].iter().map(|&(i, _)| i as usize), scratch);
    }
    if d.min_p > 0.0 {
        let p = if t > 0.0 { d.min_p.powf(t) } else { 1.0 };
        if p > 0.0 {
            apply_min_p(candidates, p.min(1.0), 1, scratch);
        }
    }
    if d.top_k > 0 {
        apply_top_k(candidates, d.top_k, scratch);
    }
    if let Some(raw) = raw {
        raw.clear();
        raw.extend(candidates.as_slice().iter().map(|t| (t.id, t.logit)));
        raw.sort_unstable_by_key(|&(id, _)| id);
    }
    apply_temperature(candidates, t);
    if d.top_p < 1.0 {
        apply_top_p(candidates, d.top_p.max(0.0), 1);
    }
    candidates.softmax();
}

/// [`truncate`], then one inverse-CDF draw with `u` (uniform in [0, 1));
/// selects and returns the index.
pub(crate) fn sample_one(candidates: &mut Candidates<'_>, d: &Derived, scratch: &mut Vec<TokenData>, scan: Option<&LogitScan>, u: f64) -> usize {
    truncate(candidates, d, scratch, None, scan);
    let index = pick_by_probability(candidates, u);
    candidates.select(index);
    index
}

/// The raw logit of `id` in a list sorted by id.
pub(crate) fn raw_logit(raw: &[(TokenId, f32)], id: TokenId) -> f32 {
    raw.binary_search_by_key(&id, |&(i, _)| i).map_or(f32::NEG_INFINITY, |k| raw[k].1)
}

/// Index of the best score (first on ties; NaN never wins unless all are).
pub(crate) fn best_index(samples: &[ScoredSample]) -> usize {
    let mut best = 0;
    for (i, s) in samples.iter().enumerate().skip(1) {
        let b = samples[best].score;
        if s.score > b || (b.is_nan() && !s.score.is_nan()) {
            best = i;
        }
    }
    best
}

/// Python's `int(x)` for the top-k formulas: truncation toward zero,
/// saturating, NaN -> 0.
pub(crate) fn trunc_i32(x: f64) -> i32 {
    if x.is_nan() {
        0
    } else {
        x.trunc().clamp(i32::MIN as f64, i32::MAX as f64) as i32
    }
}

/// `round(x)` with ties to even (numpy/JAX `round`), saturating, NaN -> 0.
pub(crate) fn round_i32(x: f64) -> i32 {
    if x.is_nan() {
        0
    } else {
        x.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    #[test]
    fn stats_handle_inf_and_nan() {
        let s = LogitStats::of(&tokens(&[f32::INFINITY, 0.0, f32::INFINITY, f32::NAN])).unwrap();
        assert_eq!(s.entropy_bits, 1.0);
        assert_eq!(s.varentropy_bits2, 0.0);
        assert!((s.log_prob(f32::INFINITY) + 2f64.ln()).abs() < 1e-12);
        assert_eq!(s.log_prob(0.0), f64::NEG_INFINITY);
        assert!(LogitStats::of(&tokens(&[f32::NAN, f32::NEG_INFINITY])).is_none());
        let s = LogitStats::of(&tokens(&[0.0, 0.0, f32::NAN, f32::NEG_INFINITY])).unwrap();
        assert!((s.entropy_bits - 1.0).abs() < 1e-12);
        assert!((s.log_prob(0.0) + 2f64.ln()).abs() < 1e-12);
        assert_eq!(s.log_prob(f32::NAN), f64::NEG_INFINITY);
    }

    #[test]
    fn log_prob_matches_log_softmax() {
        let l = [1.0f32, -2.0, 0.5, 3.0];
        let s = LogitStats::of(&tokens(&l)).unwrap();
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        for &x in &l {
            assert!((s.log_prob(x) - ((x as f64).exp() / z).ln()).abs() < 1e-9);
        }
    }

    #[test]
    fn truncate_min_p_is_relative_at_the_temperature() {
        // p_i / p_max at T = 2: exp((l_i - 3) / 2). min_p 0.3 keeps
        // exp(-1/2) = 0.61 and exp(-2/2) = 0.37, drops exp(-3/2) = 0.22.
        let mut a = tokens(&[3.0, 2.0, 1.0, 0.0]);
        let mut c = Candidates::new(&mut a);
        let d = Derived { temperature: 2.0, top_k: 0, top_p: 1.0, min_p: 0.3 };
        truncate(&mut c, &d, &mut Vec::new(), None, None);
        let mut ids: Vec<i32> = c.as_slice().iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2]);
        let sum: f32 = c.as_slice().iter().map(|t| t.p).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }

    #[test]
    fn truncate_records_raw_logits_before_temperature() {
        let mut a = tokens(&[3.0, 2.0, 1.0, 0.0]);
        let mut c = Candidates::new(&mut a);
        let d = Derived { temperature: 0.5, top_k: 2, top_p: 1.0, min_p: 0.0 };
        let mut raw = Vec::new();
        truncate(&mut c, &d, &mut Vec::new(), Some(&mut raw), None);
        assert_eq!(raw, vec![(0, 3.0), (1, 2.0)]);
        assert_eq!(c.as_slice()[0].logit, 6.0);
        assert_eq!(raw_logit(&raw, 1), 2.0);
        assert_eq!(raw_logit(&raw, 3), f32::NEG_INFINITY);
    }

    #[test]
    fn truncating_from_the_scan_keeps_the_same_survivors() {
        let mut rng = crate::core::DrawStream::from_state(7);
        for n in [5usize, 300, 4096, 20_000] {
            let logits: Vec<f32> = (0..n).map(|i| if i % 97 == 3 { f32::NEG_INFINITY } else { (rng.next_normal() * 3.0) as f32 }).collect();
            for d in [
                Derived { temperature: 0.7, top_k: 27, top_p: 0.9, min_p: 0.05 },
                Derived { temperature: 1.5, top_k: 40, top_p: 1.0, min_p: 0.0 },
                Derived { temperature: 0.3, top_k: 3, top_p: 0.5, min_p: 0.3 },
                Derived { temperature: 1.0, top_k: 60, top_p: 1.0, min_p: 0.0 },
                Derived { temperature: 1.0, top_k: 0, top_p: 0.95, min_p: 0.1 },
            ] {
                let mut scan = LogitScan::default();
                scan_logits(&tokens(&logits), 40, &mut scan);
                let survivors = |scan: Option<&LogitScan>| {
                    let mut a = tokens(&logits);
                    let mut c = Candidates::new(&mut a);
                    let mut raw = Vec::new();
                    truncate(&mut c, &d, &mut Vec::new(), Some(&mut raw), scan);
                    // -inf candidates (p = 0, never drawn) may or may not stay.
                    let finite = |l: f32| l > f32::NEG_INFINITY;
                    let mut got: Vec<(i32, u32, u32)> =
                        c.as_slice().iter().filter(|t| finite(t.logit)).map(|t| (t.id, t.logit.to_bits(), t.p.to_bits())).collect();
                    got.sort_unstable();
                    raw.retain(|&(_, l)| finite(l));
                    (got, raw)
                };
                assert_eq!(survivors(Some(&scan)), survivors(None), "n {n}, {d:?}");
            }
        }
    }

    #[test]
    fn insertable_finds_the_token_in_any_order() {
        let mut a = tokens(&[0.0, 1.0, f32::NEG_INFINITY, 3.0]);
        assert_eq!(insertable(&Candidates::new(&mut a), 1), Some(1));
        assert_eq!(insertable(&Candidates::new(&mut a), 2), None);
        assert_eq!(insertable(&Candidates::new(&mut a), 9), None);
        assert_eq!(insertable(&Candidates::new(&mut a), -1), None);
        a.reverse();
        assert_eq!(insertable(&Candidates::new(&mut a), 1), Some(2));
        assert_eq!(insertable(&Candidates::new(&mut a), 3), Some(0));
    }

    #[test]
    fn rounding_helpers() {
        assert_eq!(round_i32(2.5), 2);
        assert_eq!(round_i32(3.5), 4);
        assert_eq!(trunc_i32(40.9), 40);
        assert_eq!(trunc_i32(f64::NAN), 0);
        assert_eq!(trunc_i32(1e300), i32::MAX);
    }

    #[test]
    fn best_index_first_on_ties_and_skips_nan() {
        let s = |score| ScoredSample { token: 0, log_prob: 0.0, confidence: 0.0, score };
        assert_eq!(best_index(&[s(1.0), s(2.0), s(2.0)]), 1);
        assert_eq!(best_index(&[s(f64::NAN), s(-5.0)]), 1);
        assert_eq!(best_index(&[s(f64::NEG_INFINITY), s(f64::NEG_INFINITY)]), 0);
    }
}
