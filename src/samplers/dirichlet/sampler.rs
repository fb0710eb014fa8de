//! The adaptive Dirichlet sampler's state machine (seed 003). All
//! entropies, cross-entropies and log-probabilities in nats.

use serde_json::json;

use super::fit::{fit_dirichlet_into, fit_dirichlet_lumped_into, FitConfig, FitScratch, LumpModel, ALPHA_MAX, ALPHA_MIN};
use super::gamma::{ln_dirichlet_density, sample_dirichlet};
use super::params::DirichletParams;
use super::inv_digamma_table::inv_digamma_fast;
use super::special::digamma;
use super::support::{remap, TailModel};
use super::kernels;
use super::temp_tune::{start_from_unit_temperature, temp_tune, temp_tune_f32_keep, TempTuneConfig, MAX_TEMP, MIN_TEMP};
use crate::core::math::max_logit;
use crate::core::sampler::require_candidates;
use crate::core::{Candidates, ParamError, SampleError, Sampler, SeededRng, TokenData, TokenId};

/// The reference's EPS: floor of probabilities in the Dirichlet statistics
/// (log-probabilities below the noise floor become ln EPS), the guard in
/// `1 / (KL + EPS)`, and the cap of surprises at `-ln EPS` = 18.42 nats.
pub const EPS: f64 = 1e-8;
/// ln EPS = -18.42 nats: the cap of surprises is `-LN_EPS`.
pub const LN_EPS: f64 = -18.420_680_743_952_367;
/// The value floored log-probabilities take in the statistics: ln EPS
/// rounded to f32 (emwa_logp is stored in f32), so that a token at the
/// floor stays exactly there under the moving average.
pub const FILL: f64 = LN_EPS as f32 as f64;
/// emwa_logp entries that come within this many nats of [`FILL`] become
/// FILL. Stored in f32, an entry decaying toward FILL otherwise stops a few
/// ulps above it once `c (b - FILL)` is below half an ulp (up to 4e-3
/// nats above for small coefficients), and every such entry stays in the
/// per-step work over the entries not at FILL (support, tail histogram)
/// for the rest of the generation: on the default model, 200 tokens in,
/// 10-50% of those entries were within 1e-3 nats of FILL. The probability
/// such an entry stands for changes by at most 0.1% of 1e-8.
pub(super) const SNAP_NATS: f64 = 1e-3;
/// Token ids at or above this (and negative ids) are not tracked in the
/// per-token statistics (they count as remainder, never as support).
pub const MAX_TRACKED_ID: usize = 1 << 24;
/// Lane of the step's RNG that draws the Dirichlet sample (lane 0, the
/// plain stream, draws the token).
const DIRICHLET_LANE: u64 = 1;
const NO_SLOT: u32 = u32::MAX;

/// Which distribution the token of a step was drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirichletPath {
    /// Outlier step, Dirichlet test passed: the Dirichlet sample
    /// interpolated with `pre_probs` (seed 003's main path).
    Dirichlet,
    /// Outlier step, Dirichlet test failed: `pre_probs` =
    /// softmax(logits / pre_temp).
    PreTemp,
    /// Inlier with a concentrated top-k: the most likely token.
    Argmax,
    /// Inlier with a dispersed top-k: the top-k at a temperature tuned to
    /// `emwa_topk_ent`.
    TopK,
}

impl DirichletPath {
    /// Lower-case name used in `state_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dirichlet => "dirichlet",
            Self::PreTemp => "pre_temp",
            Self::Argmax => "argmax",
            Self::TopK => "topk",
        }
    }
}

/// The scalar moving averages (nats; variances in nats²).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Emas {
    temp: f64,
    dir_ent_nats: f64,
    ent_scaffold_nats: f64,
    varent_scaffold_nats2: f64,
    ent_naked_nats: f64,
    varent_naked_nats2: f64,
    topk_ent_naked_nats: f64,
    cross_ent_nats: f64,
    cross_ent_scaffold_nats: f64,
    cross_ent_naked_nats: f64,
    cross_var_scaffold_nats2: f64,
    cross_var_naked_nats2: f64,
}

impl Emas {
    fn state_ent(&self) -> [f64; 4] {
        [self.cross_ent_scaffold_nats, self.cross_ent_naked_nats, self.ent_scaffold_nats, self.ent_naked_nats]
    }

    fn state_std(&self) -> [f64; 4] {
        [self.cross_var_scaffold_nats2, self.cross_var_naked_nats2, self.varent_scaffold_nats2, self.varent_naked_nats2].map(|v| v.max(0.0).sqrt())
    }
}

/// The Dirichlet part of the state: `emwa_logp` over the vocabulary and
/// `emwa_dir` (and the last raw fit, the warm start) over the support.
#[derive(Debug, Clone, Default)]
struct DirState {
    /// emwa_logp by token id: moving average of floored ln p (nats). Its
    /// length is the vocabulary known so far; unseen ids count as ln EPS.
    logp: Vec<f32>,
    /// ln sum exp(logp) over the vocabulary (normaliser of
    /// softmax(emwa_logp)).
    lse: f64,
    /// Support token ids, ascending.
    support: Vec<TokenId>,
    /// Whether a lumped remainder follows the support components.
    has_lump: bool,
    /// The last raw fit (support components, then the lump).
    fit: Vec<f64>,
    /// emwa_dir, same layout.
    alpha: Vec<f64>,
}

/// What one step did, for `state_json` (nats throughout).
#[derive(Debug, Clone, Default)]
struct StepInfo {
    path: Option<DirichletPath>,
    initialised_here: bool,
    outlier_score: f64,
    naked_entropy_nats: f64,
    naked_varentropy_nats2: f64,
    topk_entropy_nats: f64,
    kl_logp_nats: f64,
    emwa_logp_coeff: f64,
    target_entropy_nats: f64,
    pre_temp: f64,
    pre_entropy_nats: f64,
    pre_temp_converged: bool,
    /// temp_tune's Halley steps (each costs a pass over the candidates;
    /// the start is free).
    pre_temp_iterations: u32,
    /// dH/dT at `pre_temp` (nats per unit temperature), for the next
    /// step's start.
    pre_temp_grad: f64,
    topk_temp: f64,
    fit_iterations: u32,
    lump_evals: u32,
    fit_converged: bool,
    fit_residual_nats: f64,
    lump_target_nats: f64,
    dir_nll_nats: f64,
    dir_nll_threshold_nats: f64,
    use_dirichlet: bool,
    perturb_kl_nats: f64,
    perturb_factor: f64,
    scaffold_entropy_nats: f64,
    selected: Option<TokenId>,
    surprise_naked_nats: f64,
    surprise_scaffold_nats: f64,
    surprise_at_emwa_temp_nats: f64,
}

/// The persistent state.
#[derive(Debug, Clone, Default)]
struct State {
    initialised: bool,
    emas: Emas,
    dir: DirState,
    steps: u64,
    last: StepInfo,
}

/// Everything `apply` computed that `accept` commits. Scratch: overwritten
/// by every `apply`.
#[derive(Debug, Clone, Default)]
struct Pending {
    valid: bool,
    emas: Emas,
    dir: DirState,
    info: StepInfo,
    /// Per candidate: the logit as f32 (-inf for -inf and NaN; the +inf
    /// limit mapped to 0 / -inf), and the id unless the ids are 0..n
    /// (then `ids` is empty).
    xs: Vec<f32>,
    ids: Vec<TokenId>,
    /// ln sum exp(logit): the model's ln p is `x - lse_naked`.
    lse_naked: f64,
    /// Whether the scaffold is pre_probs (then `scaffold` is empty and
    /// pre_probs is `exp((x - pre_max) / pre_temp) / pre_norm`).
    scaffold_is_pre: bool,
    pre_max: f32,
    pre_temp: f64,
    pre_norm: f64,
    /// The scaffold per candidate when it is not pre_probs.
    scaffold: Vec<f64>,
    /// ln sum exp(ln p / emwa_temp_new) for the seed's cross-entropy.
    lse_at_temp: f64,
}

/// Reusable buffers (not state).
#[derive(Debug, Clone, Default)]
struct Work {
    rows: Vec<TokenData>,
    topk: Vec<usize>,
    topk_logp: Vec<f64>,
    /// emwa_logp of each candidate's id (when not a slice of the state).
    olds: Vec<f32>,
    /// pre_probs per candidate.
    pre: Vec<f32>,
    /// The distribution the token is drawn from, per candidate, times
    /// `out_scale` (1 / its sum after the tail cut, else 1).
    out: Vec<f32>,
    out_scale: f32,
    slot_of_id: Vec<u32>,
    x_sup: Vec<f64>,
    ln_x: Vec<f64>,
    targets: Vec<f64>,
    remapped: Vec<f64>,
    sample: Vec<f64>,
    select: Vec<(f32, u32)>,
    sums: Vec<f64>,
    tail: TailModel,
    fit: FitScratch,
    tail_memo: Vec<(TokenId, f64)>,
}

/// Settings derived once from the params.
#[derive(Debug, Clone)]
struct Config {
    p: DirichletParams,
    fit: FitConfig,
    tt: TempTuneConfig,
}

/// The adaptive Dirichlet sampler (seed 003; reference: xjdr-alt/entropix
/// `dslider`), a terminal sampler: it selects the token. Everything in
/// nats.
///
/// # A step
/// With `ln p` the model's log-probabilities over the current candidates
/// ("naked"), `floor(.)` replacing log-probabilities below
/// `noise_floor_nats` by ln 1e-8, and the state as left by the last
/// `accept`:
/// 1. model entropy H, varentropy V, and the entropy of the renormalised
///    top `outlier_topk`;
/// 2. outlier score (the reference's bilinear/linear form over the state's
///    entropies and standard deviations and this step's H, sqrt V, V);
/// 3. (steps 3, 4, 6 and 7 only with [`DirichletParams::dirichlet_test`];
///    without it the scaffold is pre_probs)
///    `emwa_logp <- c floor(ln p) + (1 - c) emwa_logp`, with
///    `c = emwa_logp_base^(-emwa_logp_exp_factor / (KL(p || softmax(emwa_logp)) + EPS))`;
/// 4. `emwa_dir <- emwa_dir_coeff fit + (1 - emwa_dir_coeff) emwa_dir`,
///    `fit = fit_dirichlet(emwa_logp)` on the support (top `support_size`
///    tokens by emwa_logp plus a lumped remainder, see
///    [`super::support`]), warm-started from the previous fit (polished
///    by undamped steps first, see [`super::fit::FitConfig::polish_steps`]);
/// 5. target entropy (see [`DirichletParams::target_linear`]) and
///    `pre_temp = temp_tune(logits, target)`; `pre_probs =
///    softmax(logits / pre_temp)`; `emwa_temp` EMA;
/// 6. `nll = -ln Dir(pre_probs | emwa_dir)` on the lumped support (log of
///    pre_probs floored as above), with the correct normaliser
///    `ln B(alpha) = sum ln Gamma(alpha_i) - ln Gamma(sum alpha)`;
///    `emwa_dir_ent` EMA;
/// 7. Dirichlet test: `nll` below
///    `dirichlet_mean_weight * (-ln Dir(softmax(emwa_logp))) + dirichlet_ent_weight * emwa_dir_ent + dirichlet_bias_nats`
///    (with the updated `emwa_dir_ent`, as in the seed's order); when it
///    passes, draw `s ~ Dir(emwa_dir)` (Gamma variates, Marsaglia-Tsang,
///    from their own RNG lane), `f = 1 - perturb_base^(-perturb_exp / (KL(s || pre_probs) + EPS))`
///    and the scaffold `f s + (1 - f) pre_probs` (the lump's sampled mass
///    spread over the remainder tokens in proportion to pre_probs);
///    otherwise the scaffold is pre_probs. Tokens the model gives
///    probability 0 (-inf/NaN logits) stay at 0;
/// 8. the token: outliers draw from the scaffold; inliers take the argmax
///    when the top-k entropy is below `argmax_weight * emwa_topk_ent +
///    argmax_bias_nats`, else draw from the top-k at the temperature that
///    gives it entropy `emwa_topk_ent`; off the argmax path, tokens below
///    `draw_min_p` times the largest probability are dropped first (see
///    [`DirichletParams::draw_min_p`]). The candidates' `p` hold the
///    distribution the token was drawn from.
///
/// `accept(token)` then updates the surprise EMAs with the accepted token:
/// seed 003's `emwa_cross_ent` (`-ln softmax(logits / emwa_temp)[token]`),
/// `-ln p_scaffold[token]` and `-ln p_model[token]` (each capped at
/// `-ln EPS` = 18.42 nats) and their variances, and commits steps 1-7.
/// The scaffold entropy EMA (seed: `emwa_entropy`) moves every step, on
/// both branches of the Dirichlet test (the seed's state-variable
/// definition; its step list shows it on one branch only).
///
/// # Contract
/// - `apply` computes the whole step from the state without changing it;
///   it keeps what `accept` needs in a scratch area that every `apply`
///   overwrites. Calling it twice gives the same result.
/// - `accept(token)` commits the step computed by the most recent `apply`
///   and advances the RNG. An `accept` with no `apply` since the previous
///   one (e.g. prompt tokens a host feeds to the chain) only advances the
///   RNG: there are no logits to learn from.
/// - State is initialised from the logits of every prompt position by
///   [`Sampler::observe_prompt_logits`]. Without it, the first `apply`
///   initialises from its own logits (a one-position prompt).
/// - `reset` returns to the fresh, uninitialised state (the prompt's
///   initialisation is discarded; observe the next prompt again) and
///   rewinds the RNG.
///
/// # Differences from the reference (its bugs, not copied)
/// No log of a log-probability (cross-entropies use ln p once); the
/// Dirichlet normaliser has the correct sign; the Dirichlet sample and the
/// token draw use independent RNG streams; f64 throughout (no bf16); the
/// surprise variances use the deviation from the mean, for the matching
/// (naked/scaffold) quantity. The noise floor applies to the Dirichlet
/// statistics only, never to the distribution a token is drawn from, so
/// masked (-inf) tokens are never chosen.
///
/// # Speed and numeric error
/// The full-vocabulary passes (the model's moments, the emwa_logp
/// normaliser, every temp_tune evaluation, pre_probs with the normaliser
/// at emwa_temp) run on the logits as f32 with a vectorised f32
/// exponential (relative error < 2e-7) and f64 sums
/// ([`super::kernels`]); per-token values (the support, the accepted
/// token's surprises) stay in f64 libm. Measured against the f64 version:
/// moments within 1e-6 relative, the true entropy at the tuned
/// temperature within 9.6e-7 nats of the target (the f64 tolerance is
/// 1e-6), probabilities written to the candidates within about 3e-7
/// relative. temp_tune starts from one Halley step off T = 1 taken with
/// the model's moments (its evaluation at T = 1, already computed for the
/// entropy; see [`super::temp_tune::start_from_unit_temperature`]), from
/// the previous root when the distribution is the previous step's again,
/// and from `temp_tune_t_init` when neither is usable: the same root to
/// the same tolerance, in fewer passes (2.1 Halley steps per token on the
/// default model, 4.1 from the previous root). The token is drawn from the f32
/// probabilities (block sums, then a scan of one block).
///
/// The Dirichlet side: psi, psi', psi'' in vector lanes (bit for bit the
/// scalar functions); the support selection and the remainder's histogram
/// visit only the emwa_logp entries not at the fill value (one vectorised
/// pass lists them; same support, same bins); remap's `A(s_ref)` is the
/// tail model's own evaluation, which the fit's first iteration then
/// reuses. The tail model's per-bin inverse digammas, and the remap's for
/// tokens entering or leaving the support, come from a table (cubic
/// Hermite, alpha within 1.6e-10 relative, see the module
/// `inv_digamma_table`) instead of Newton's method; the fit's
/// undamped polish (see [`super::fit::FitConfig::polish_steps`]) takes 7
/// iterations per step instead of the schedule's 47 (medians on the
/// default model).
#[derive(Debug, Clone)]
pub struct DirichletSampler {
    cfg: Config,
    rng: SeededRng,
    state: State,
    pending: Pending,
    work: Work,
}

impl DirichletSampler {
    /// A validated sampler in the fresh state.
    pub fn new(params: DirichletParams) -> Result<Self, ParamError> {
        params.validate()?;
        // The tail model's inverse-digamma table (about 2 ms, once per
        // process) now rather than inside the first step.
        super::inv_digamma_table::warm_up();
        Ok(Self {
            cfg: Config { p: params, fit: params.fit_config(), tt: params.temp_tune_config() },
            rng: SeededRng::new(params.seed),
            state: State::default(),
            pending: Pending::default(),
            work: Work::default(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &DirichletParams {
        &self.cfg.p
    }

    /// Whether the state has been initialised (from prompt logits or a
    /// first committed step).
    pub fn is_initialised(&self) -> bool {
        self.state.initialised
    }

    /// Seed 003's `emwa_cross_ent` (nats): the moving average of
    /// `-ln softmax(logits / emwa_temp)[token]` over accepted tokens.
    pub fn emwa_cross_ent_nats(&self) -> f64 {
        self.state.emas.cross_ent_nats
    }

    /// The moving average of `-ln p_scaffold[token]` (nats).
    pub fn cross_ent_scaffold_nats(&self) -> f64 {
        self.state.emas.cross_ent_scaffold_nats
    }

    /// The moving average of `-ln p_model[token]` (nats).
    pub fn cross_ent_naked_nats(&self) -> f64 {
        self.state.emas.cross_ent_naked_nats
    }

    /// The path of the last committed step.
    pub fn last_path(&self) -> Option<DirichletPath> {
        self.state.last.path
    }

    /// Surprises (nats, capped at 18.42) of the last accepted token: under
    /// the model, under the scaffold, and seed 003's under
    /// softmax(logits / emwa_temp).
    pub fn last_surprises_nats(&self) -> (f64, f64, f64) {
        let l = &self.state.last;
        (l.surprise_naked_nats, l.surprise_scaffold_nats, l.surprise_at_emwa_temp_nats)
    }

    /// `emwa_temp`.
    pub fn emwa_temp(&self) -> f64 {
        self.state.emas.temp
    }

    /// The support (ascending ids) and emwa_dir over it (the lump last when
    /// there is a remainder).
    pub fn dirichlet(&self) -> (&[TokenId], &[f64]) {
        (&self.state.dir.support, &self.state.dir.alpha)
    }

    /// The support (ascending ids) and the raw fit of the last committed
    /// step (before the EMA into emwa_dir; the lump last).
    pub fn last_fit(&self) -> (&[TokenId], &[f64]) {
        (&self.state.dir.support, &self.state.dir.fit)
    }

    /// emwa_logp by token id (nats).
    pub fn emwa_logp(&self) -> &[f32] {
        &self.state.dir.logp
    }

    /// Initialises the state from `n_rows` rows of candidates (as
    /// `observe_prompt_logits` does with the prompt's logits).
    fn init_state(cfg: &Config, work: &mut Work, n_rows: usize, row: &mut dyn FnMut(usize, &mut Vec<TokenData>)) -> Option<State> {
        let p = &cfg.p;
        let floor = p.noise_floor_nats as f64;
        let mut rows = std::mem::take(&mut work.rows);
        let mut sums = std::mem::take(&mut work.sums);
        sums.clear();
        let (mut logp, mut probs) = (Vec::new(), Vec::new());
        let (mut n_ok, mut ent, mut varent, mut topk_ent) = (0usize, 0.0, 0.0, 0.0);
        let (mut tk_sum, mut tk_sq, mut tk_n) = (0.0, 0.0, 0usize);
        let mut vocab = 0usize;
        // Per row: ln of its normaliser (None: skipped, nothing finite).
        let mut row_lse: Vec<Option<f64>> = Vec::with_capacity(n_rows);
        for r in 0..n_rows {
            row(r, &mut rows);
            let Some((h, v, lse)) = naked_dist_norm(&rows, &mut logp, &mut probs) else {
                row_lse.push(None);
                continue;
            };
            row_lse.push(Some(lse));
            n_ok += 1;
            ent += h;
            varent += v;
            top_k_indices(&logp, p.outlier_topk as usize, &mut work.topk);
            work.topk_logp.clear();
            work.topk_logp.extend(work.topk.iter().map(|&i| logp[i]));
            topk_ent += topk_entropy(&mut work.topk_logp);
            for &i in &work.topk {
                tk_sum += -logp[i];
                tk_sq += logp[i] * logp[i];
                tk_n += 1;
            }
            // emwa_logp's start: only with the Dirichlet test.
            if p.dirichlet_test {
                for (t, &lp) in rows.iter().zip(&logp) {
                    let Some(id) = tracked(t.id) else { continue };
                    if id >= sums.len() {
                        sums.resize(id + 1, 0.0);
                    }
                    vocab = vocab.max(id + 1);
                    sums[id] += floored(lp, floor) - FILL;
                }
            }
        }
        if n_ok == 0 {
            work.rows = rows;
            work.sums = sums;
            return None;
        }
        let inv = 1.0 / n_ok as f64;
        // emwa_logp, emwa_dir and their mean likelihood only with the
        // Dirichlet test (see `DirichletParams::dirichlet_test`).
        let mut dir = DirState::default();
        let mut nll = 0.0;
        if p.dirichlet_test {
            dir = DirState { logp: (0..vocab).map(|i| (FILL + sums[i] * inv) as f32).collect(), ..Default::default() };
            dir.lse = log_sum_exp_f32(&dir.logp);
            work.tail.build_with_support(&dir.logp, p.support_size as usize, FILL, &mut work.select, &mut dir.support);
            dir.has_lump = dir.logp.len() > dir.support.len();
            work.targets.clear();
            work.targets.extend(dir.support.iter().map(|&id| dir.logp[id as usize] as f64));
            // Cold start: the exact lumped solution when it exists, polished by
            // the seed's Halley fit.
            let mut alpha = work.tail.solve_exact(&work.targets).unwrap_or_else(|| vec![1.0; dir.support.len() + usize::from(dir.has_lump)]);
            if !dir.has_lump {
                alpha.truncate(dir.support.len());
            }
            fit_support(&cfg.fit, &mut work.tail, &work.targets, dir.has_lump, &mut alpha, &mut work.fit);
            dir.fit = alpha.clone();
            dir.alpha = alpha;

            // Second pass: mean negative Dirichlet log-likelihood of the rows.
            // Only the support's probabilities need an exponential; the
            // remainder's mass is what they leave.
            fill_slots(&mut work.slot_of_id, &dir.support, dir.logp.len());
            let n_sup = dir.support.len();
            for (r, lse) in row_lse.iter().enumerate() {
                let Some(lse) = *lse else { continue };
                row(r, &mut rows);
                if lse == f64::INFINITY {
                    naked_dist(&rows, &mut logp, &mut probs);
                    lump(&rows, &probs, &work.slot_of_id, n_sup, &mut work.x_sup);
                } else {
                    work.x_sup.clear();
                    work.x_sup.resize(n_sup + 1, 0.0);
                    for t in rows.iter() {
                        if let Some(slot) = tracked(t.id).and_then(|id| work.slot_of_id.get(id)).copied().filter(|&s| s != NO_SLOT) {
                            if t.logit > f32::NEG_INFINITY {
                                work.x_sup[slot as usize] += (t.logit as f64 - lse).exp();
                            }
                        }
                    }
                    let sup: f64 = work.x_sup[..n_sup].iter().sum();
                    work.x_sup[n_sup] = (1.0 - sup).max(0.0);
                }
                floored_logs(&work.x_sup, dir.has_lump, floor, &mut work.ln_x);
                nll += neg_ln_density(&work.ln_x, &dir.alpha);
            }
            clear_slots(&mut work.slot_of_id, &dir.support);
        }
        work.rows = rows;
        work.sums = sums;

        let tk_mean = tk_sum / tk_n.max(1) as f64;
        let tk_var = (tk_sq / tk_n.max(1) as f64 - tk_mean * tk_mean).max(0.0);
        let (ent, varent) = (ent * inv, varent * inv);
        let emas = Emas {
            temp: 1.0,
            dir_ent_nats: nll * inv,
            ent_scaffold_nats: ent,
            varent_scaffold_nats2: 0.0,
            ent_naked_nats: ent,
            varent_naked_nats2: varent,
            topk_ent_naked_nats: topk_ent * inv,
            cross_ent_nats: ent,
            cross_ent_scaffold_nats: ent,
            cross_ent_naked_nats: tk_mean,
            cross_var_scaffold_nats2: 0.0,
            cross_var_naked_nats2: tk_var,
        };
        Some(State { initialised: true, emas, dir, steps: 0, last: StepInfo::default() })
    }

    /// Computes one step from `base` into `pending`; returns the index of
    /// the selected candidate and the distribution drawn from (in
    /// `work.out`, f32).
    ///
    /// The passes over the candidates run on their logits as f32 through
    /// [`super::kernels`] (vectorised f32 exponentials, f64 sums); only
    /// per-token values (a few hundred) use f64 libm functions. See the
    /// type's documentation for the numeric error this introduces.
    fn compute_step(cfg: &Config, base: &State, rng: &SeededRng, work: &mut Work, pending: &mut Pending, cands: &[TokenData]) -> Result<usize, SampleError> {
        let p = &cfg.p;
        let floor = p.noise_floor_nats as f64;
        pending.valid = false;
        let mut info = StepInfo::default();
        // 1. The model's distribution: the logits as f32, their moments at
        // T = 1 and, in the same pass, sum e * emwa_logp_old (for the KL).
        let Some(max) = scan_logits(cands, &mut pending.xs, &mut pending.ids) else {
            return Err(SampleError::NoFiniteLogits);
        };
        let xs = &pending.xs;
        let ident = pending.ids.is_empty();
        let n = xs.len();
        let old = &base.dir.logp;
        let aux: Option<&[f32]> = if !p.dirichlet_test {
            None
        } else if ident && n <= old.len() {
            Some(&old[..n])
        } else {
            let olds = &mut work.olds;
            olds.clear();
            if ident {
                olds.extend((0..n).map(|i| old.get(i).copied().unwrap_or(FILL as f32)));
            } else {
                olds.extend(pending.ids.iter().map(|&id| tracked(id).and_then(|i| old.get(i)).copied().unwrap_or(FILL as f32)));
            }
            Some(olds)
        };
        let [s0, s1, s2, s3, s_old] = kernels::moments(xs, aux, max, 1.0);
        let ln_s0 = s0.ln();
        let (m1, m2) = (s1 / s0, s2 / s0);
        let h_naked = (ln_s0 - m1).max(0.0);
        let v_naked = (m2 - m1 * m1).max(0.0);
        // ln sum exp(logit): the model's log-probabilities are x - lse_naked.
        let lse_naked = max as f64 + ln_s0;
        pending.lse_naked = lse_naked;
        top_k_f32(xs, p.outlier_topk as usize, &mut work.topk);
        work.topk_logp.clear();
        work.topk_logp.extend(work.topk.iter().map(|&i| xs[i] as f64 - lse_naked));
        let h_topk = topk_entropy(&mut work.topk_logp);
        info.naked_entropy_nats = h_naked;
        info.naked_varentropy_nats2 = v_naked;
        info.topk_entropy_nats = h_topk;

        // 2. Outlier score.
        let (se, ss) = (base.emas.state_ent(), base.emas.state_std());
        let mut score = p.outlier_bias as f64 + p.outlier_naked_ent as f64 * h_naked + p.outlier_naked_std as f64 * v_naked.sqrt() + p.outlier_naked_varent as f64 * v_naked;
        for i in 0..4 {
            score += p.outlier_state_ent[i] as f64 * se[i] + p.outlier_state_std[i] as f64 * ss[i];
            for (j, &ssj) in ss.iter().enumerate() {
                score += se[i] * p.outlier_bilinear[4 * i + j] as f64 * ssj;
            }
        }
        info.outlier_score = score;
        let outlier = score > 0.0;

        // 3 and 4 only with the Dirichlet test (see `DirichletParams::dirichlet_test`).
        if p.dirichlet_test {
            // 3. emwa_logp.
            let mut vocab = old.len();
            if ident {
                vocab = vocab.max(n.min(MAX_TRACKED_ID));
            } else {
                for &id in &pending.ids {
                    if let Some(id) = tracked(id) {
                        vocab = vocab.max(id + 1);
                    }
                }
            }
            // softmax(emwa_logp) over the grown vocabulary (new ids at ln EPS).
            let lse_old = if vocab > old.len() { log_add_exp(base.dir.lse, FILL + ((vocab - old.len()) as f64).ln()) } else { base.dir.lse };
            // KL(p || softmax(emwa_logp)) = sum p (ln p - old + lse_old), with
            // p = e / s0 and ln p = w - ln s0 (w = x - max).
            let kl = (m1 - ln_s0 - s_old / s0 + lse_old).max(0.0);
            let c_logp = (p.emwa_logp_base as f64).powf(-(p.emwa_logp_exp_factor as f64) / (kl + EPS));
            info.kl_logp_nats = kl;
            info.emwa_logp_coeff = c_logp;
            let new = &mut pending.dir.logp;
            let old_at = |id: Option<usize>| id.and_then(|i| old.get(i)).map_or(FILL, |&v| v as f64);
            let mut fused = None;
            let mut k_fused = 0;
            if ident {
                let m = n.min(vocab);
                let k = m.min(old.len());
                k_fused = k;
                // Every entry is written below (vocab = max(m, old.len())): no
                // fill pass over the buffer, which holds an older step's values.
                debug_assert_eq!(m.max(old.len()), vocab);
                new.resize(vocab, FILL as f32);
                new.truncate(vocab);
                // The update of tokens 0..k and its sum_exp in one pass.
                fused = Some(kernels::ema_logp_sum(&xs[..k], &old[..k], &mut new[..k], lse_naked, floor, FILL, c_logp));
                for (out, &x) in new[k..m].iter_mut().zip(&xs[k..m]) {
                    *out = ema_toward(FILL, floored(x as f64 - lse_naked, floor), c_logp) as f32;
                }
                for (out, &b) in new[m..].iter_mut().zip(&old[m.min(old.len())..]) {
                    *out = ema_toward(b as f64, FILL, c_logp) as f32;
                }
            } else {
                new.clear();
                new.extend(old.iter().map(|&b| ema_toward(b as f64, FILL, c_logp) as f32));
                new.resize(vocab, FILL as f32);
                for (&id, &x) in pending.ids.iter().zip(xs) {
                    if let Some(id) = tracked(id) {
                        new[id] = ema_toward(old_at(Some(id)), floored(x as f64 - lse_naked, floor), c_logp) as f32;
                    }
                }
            }
            let (sum_new, max_new) = match fused {
                // k == new.len(): the same bits as a sum_exp over `new`.
                Some((s, m)) if k_fused == new.len() => (s, m),
                Some((s, m)) => {
                    let (s2, m2) = kernels::sum_exp_nonpositive(&new[k_fused..]);
                    (s + s2, if m.is_nan() || m2.is_nan() { f32::NAN } else { m.max(m2) })
                }
                None => kernels::sum_exp_nonpositive(new),
            };
            pending.dir.lse = if max_new <= 0.0 { sum_new.ln() } else { log_sum_exp_f32(new) };

            // 4. Support, lump and the fit.
            let dir = &mut pending.dir;
            work.tail.build_with_support(&dir.logp, p.support_size as usize, FILL, &mut work.select, &mut dir.support);
            dir.has_lump = dir.logp.len() > dir.support.len();
            work.targets.clear();
            work.targets.extend(dir.support.iter().map(|&id| dir.logp[id as usize] as f64));
            let s_ref: f64 = base.dir.fit.iter().sum();
            let ps_ref = digamma(s_ref);
            let new_logp = &dir.logp;
            let raw_alpha = |id: TokenId| inv_digamma_fast(new_logp.get(id as usize).map_or(FILL, |&v| v as f64) + ps_ref);
            // The tail alphas of the tokens entering or leaving the support
            // (the only ones asked for, up to three times each), computed once.
            sym_diff_values(&base.dir.support, &dir.support, &raw_alpha, &mut work.tail_memo);
            let memo = &work.tail_memo;
            let tail_alpha = |id: TokenId| memo.binary_search_by_key(&id, |e| e.0).map_or_else(|_| raw_alpha(id), |k| memo[k].1);
            // A(s_ref) through the tail model's own evaluation: it also sets
            // the model's Taylor point, and the remap
            // conserves the total, so the fit's first evaluation (at about
            // s_ref) is answered from it instead of a second cold pass.
            let new_rem = if dir.has_lump && s_ref > 0.0 && s_ref.is_finite() {
                work.tail.eval(s_ref).0
            } else if dir.has_lump {
                work.tail.alpha_sum(s_ref)
            } else {
                0.0
            };
            let old_rem = old_remainder_tail(&base.dir.support, &dir.support, &tail_alpha, new_rem);
            remap(&base.dir.support, &base.dir.fit, base.dir.has_lump, &dir.support, dir.has_lump, &tail_alpha, old_rem, &mut dir.fit);
            remap(&base.dir.support, &base.dir.alpha, base.dir.has_lump, &dir.support, dir.has_lump, &tail_alpha, old_rem, &mut work.remapped);
            let (iters, converged, residual, lump_t) = fit_support(&cfg.fit, &mut work.tail, &work.targets, dir.has_lump, &mut dir.fit, &mut work.fit);
            info.fit_iterations = iters;
            info.lump_evals = work.tail.n_exact_evals() as u32;
            info.fit_converged = converged;
            info.fit_residual_nats = residual;
            info.lump_target_nats = lump_t;
            let c_dir = p.emwa_dir_coeff as f64;
            dir.alpha.clear();
            dir.alpha.extend(dir.fit.iter().zip(&work.remapped).map(|(&f, &o)| (c_dir * f + (1.0 - c_dir) * o).clamp(ALPHA_MIN, ALPHA_MAX)));
        }

        // 5. Target entropy, pre_temp (started from the model's moments at
        // T = 1 from part 1, see `temp_tune_start`), emwa_temp.
        let mut emas = base.emas;
        let mut target = p.target_bias_nats as f64 + p.target_cross_ent_weight as f64 * base.emas.cross_ent_nats + p.target_inv_temp as f64 / base.emas.temp;
        for (w, v) in p.target_linear.iter().zip(se) {
            target += *w as f64 * v;
        }
        info.target_entropy_nats = target;
        let t_start = temp_tune_start(&base.last, (h_naked, v_naked), [s0, s1, s2, s3], target, cfg.tt.t_init);
        let (tt, s0_pre) = temp_tune_f32_keep(xs, max, target, &cfg.tt, t_start, &mut work.pre);
        let pre_temp = tt.temperature;
        info.pre_temp = pre_temp;
        info.pre_temp_converged = tt.converged;
        info.pre_temp_iterations = tt.iterations;
        info.pre_temp_grad = tt.varentropy_nats2 / pre_temp;
        emas.temp = ema(p.emwa_temp_coeff, pre_temp, base.emas.temp).clamp(MIN_TEMP, MAX_TEMP);
        let (h_pre, v_pre) = (tt.entropy_nats, tt.varentropy_nats2.max(0.0));
        info.pre_entropy_nats = h_pre;
        // pre_probs = softmax(logits / pre_temp) in `work.pre` (f32, sum
        // `tot`; temp_tune left the weights at pre_temp there), and in the
        // same pass the normaliser at emwa_temp for the seed's
        // cross-entropy.
        let inv_temp = 1.0 / emas.temp;
        let (tot, s_at_temp) = kernels::scale_and_sum(xs, max, (1.0 / s0_pre) as f32, inv_temp as f32, &mut work.pre);
        // ln sum exp(ln p / emwa_temp) over the model's ln p = x - lse_naked.
        pending.lse_at_temp = (max as f64 - lse_naked) * inv_temp + s_at_temp.ln();
        pending.pre_max = max;
        pending.pre_temp = pre_temp;
        pending.pre_norm = s0_pre;

        // 6. Dirichlet likelihood of pre_probs on the lumped support (none
        // without the test: no emwa_dir, k = 0).
        let dir = &pending.dir;
        let k = dir.alpha.len();
        let pre = &work.pre;
        if k >= 2 {
            if ident {
                lump_ident(pre, tot, &dir.support, &mut work.x_sup);
            } else {
                fill_slots(&mut work.slot_of_id, &dir.support, dir.logp.len());
                lump_ids(&pending.ids, pre, tot, &work.slot_of_id, dir.support.len(), &mut work.x_sup);
                clear_slots(&mut work.slot_of_id, &dir.support);
            }
            floored_logs(&work.x_sup, dir.has_lump, floor, &mut work.ln_x);
        }
        let nll = if k >= 2 { neg_ln_density(&work.ln_x, &dir.alpha) } else { 0.0 };
        emas.dir_ent_nats = ema(p.emwa_dir_ent_coeff, nll, base.emas.dir_ent_nats);
        let mut threshold = p.dirichlet_ent_weight as f64 * emas.dir_ent_nats + p.dirichlet_bias_nats as f64;
        if p.dirichlet_mean_weight != 0.0 && k >= 2 {
            mean_on_support(&dir.logp, dir.lse, &dir.support, dir.has_lump, &mut work.sample);
            floored_logs_of_probs(&mut work.sample, floor);
            threshold += p.dirichlet_mean_weight as f64 * neg_ln_density(&work.sample, &dir.alpha);
        }
        let use_dirichlet = k >= 2 && nll < threshold;
        info.dir_nll_nats = nll;
        info.dir_nll_threshold_nats = threshold;
        info.use_dirichlet = use_dirichlet;

        // 7. The scaffold (kept per candidate only when it is not
        // pre_probs; `accept` computes pre_probs of its token itself).
        let scaffold = &mut pending.scaffold;
        scaffold.clear();
        pending.scaffold_is_pre = !use_dirichlet;
        if use_dirichlet {
            let mut draws = rng.lane(DIRICHLET_LANE);
            sample_dirichlet(&dir.alpha, &mut draws, &mut work.sample);
            let s = &work.sample;
            let kl_s: f64 = s.iter().zip(&work.ln_x).filter(|(&si, _)| si > 0.0).map(|(&si, &lx)| si * (si.ln() - lx)).sum();
            let f = (1.0 - (p.perturb_base_coeff as f64).powf(-(p.perturb_exp_coeff as f64) / (kl_s + EPS))).clamp(0.0, 1.0);
            info.perturb_kl_nats = kl_s;
            info.perturb_factor = f;
            let n_sup = dir.support.len();
            let x_rem = if dir.has_lump { work.x_sup[n_sup] } else { 0.0 };
            let s_rem = if dir.has_lump { s[n_sup] } else { 0.0 };
            fill_slots(&mut work.slot_of_id, &dir.support, dir.logp.len());
            let inv_tot = 1.0 / tot;
            let mut total = 0.0;
            scaffold.extend(xs.iter().zip(pre).enumerate().map(|(i, (&x, &q))| {
                if x == f32::NEG_INFINITY {
                    return 0.0;
                }
                let id = if ident { Some(i) } else { tracked(pending.ids[i]) };
                let slot = id.map_or(NO_SLOT, |id| work.slot_of_id.get(id).copied().unwrap_or(NO_SLOT));
                let x = q as f64 * inv_tot;
                let v = if slot != NO_SLOT {
                    f * s[slot as usize] + (1.0 - f) * x
                } else if x_rem > 0.0 {
                    f * s_rem * (x / x_rem) + (1.0 - f) * x
                } else {
                    (1.0 - f) * x
                };
                total += v;
                v
            }));
            clear_slots(&mut work.slot_of_id, &dir.support);
            if total > 0.0 && total.is_finite() {
                scaffold.iter_mut().for_each(|q| *q /= total);
            } else {
                scaffold.clear();
                scaffold.extend(pre.iter().map(|&q| q as f64 * inv_tot));
            }
        }
        let (h_scaf, v_scaf) = if use_dirichlet { entropy_varentropy_of_probs(scaffold) } else { (h_pre, v_pre) };
        info.scaffold_entropy_nats = h_scaf;
        emas.ent_scaffold_nats = ema(p.emwa_ent_scaffold_coeff, h_scaf, base.emas.ent_scaffold_nats);
        emas.varent_scaffold_nats2 = ema(p.emwa_varent_scaffold_coeff, v_scaf, base.emas.varent_scaffold_nats2);
        emas.ent_naked_nats = ema(p.emwa_ent_naked_coeff, h_naked, base.emas.ent_naked_nats);
        emas.varent_naked_nats2 = ema(p.emwa_varent_naked_coeff, v_naked, base.emas.varent_naked_nats2);
        emas.topk_ent_naked_nats = ema(p.emwa_topk_ent_naked_coeff, h_topk, base.emas.topk_ent_naked_nats);

        // 8. The token, drawn from `work.out` (f32; its f64 sum `total`).
        let total;
        let path = if outlier {
            if use_dirichlet {
                work.out.clear();
                work.out.extend(scaffold.iter().map(|&q| q as f32));
                total = work.out.iter().map(|&q| q as f64).sum::<f64>();
                DirichletPath::Dirichlet
            } else {
                // pre_probs: swap the buffers (the next apply rewrites both).
                std::mem::swap(&mut work.out, &mut work.pre);
                total = tot;
                DirichletPath::PreTemp
            }
        } else if h_topk < p.argmax_weight as f64 * base.emas.topk_ent_naked_nats + p.argmax_bias_nats as f64 {
            work.out.clear();
            work.out.resize(n, 0.0);
            work.out[work.topk[0]] = 1.0;
            total = 1.0;
            DirichletPath::Argmax
        } else {
            let r = temp_tune(&work.topk_logp, base.emas.topk_ent_naked_nats, &cfg.tt);
            info.topk_temp = r.temperature;
            softmax_at(&work.topk_logp, r.temperature, &mut work.sample);
            work.out.clear();
            work.out.resize(n, 0.0);
            for (&i, &q) in work.topk.iter().zip(&work.sample) {
                work.out[i] = q as f32;
            }
            total = work.topk.iter().map(|&i| work.out[i] as f64).sum::<f64>();
            DirichletPath::TopK
        };
        info.path = Some(path);
        // The tail cut (draw_min_p): only the draw sees it.
        let cut = p.draw_min_p > 0.0 && path != DirichletPath::Argmax;
        let total = if cut { kernels::cut_below_fraction_of_max(&mut work.out, p.draw_min_p) } else { total };
        let index = kernels::pick_f32(&work.out, rng.stream().next_f64() * total);
        // `apply` scales the candidates' p to sum to 1 as it writes them.
        work.out_scale = if cut { (1.0 / total) as f32 } else { 1.0 };
        info.selected = Some(cands[index].id);

        pending.emas = emas;
        pending.info = info;
        pending.valid = true;
        Ok(index)
    }
}

/// Where temp_tune starts. When this step's distribution has the previous
/// step's entropy and varentropy at T = 1 (`unit_h_v`, to 1e-9 relative:
/// the same distribution again, as when a host applies the sampler to the
/// same logits twice), the previous root moved by one Newton step along
/// the previous curve toward the new target, limited to the factor
/// `[1/2, 3/2]` of a temp_tune step. Otherwise one Halley step off T = 1
/// from this step's moments ([`start_from_unit_temperature`]); `t_init`
/// when neither is usable.
fn temp_tune_start(last: &StepInfo, unit_h_v: (f64, f64), unit_moments: [f64; 4], target: f64, t_init: f64) -> f64 {
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    let (prev, h, g) = (last.pre_temp, last.pre_entropy_nats, last.pre_temp_grad);
    let unchanged = same(unit_h_v.0, last.naked_entropy_nats) && same(unit_h_v.1, last.naked_varentropy_nats2);
    if unchanged && prev.is_finite() && prev > 0.0 && h.is_finite() && g.is_finite() && g > 1e-8 {
        return (prev + (target - h) / g).clamp(0.5 * prev, 1.5 * prev).clamp(MIN_TEMP, MAX_TEMP);
    }
    start_from_unit_temperature(unit_moments, target).unwrap_or(t_init)
}

/// The seed's fit on the support, plus the lump when there is one (its
/// target moving with S through the tail model, see
/// [`super::fit::fit_dirichlet_lumped_into`]). Returns (iterations,
/// converged, residual norm, the lump's final target `psi(A(S)) - psi(S)`).
fn fit_support(cfg: &FitConfig, tail: &mut TailModel, targets: &[f64], has_lump: bool, alpha: &mut [f64], scratch: &mut FitScratch) -> (u32, bool, f64, f64) {
    if has_lump {
        let (it, conv, res) = fit_dirichlet_lumped_into(targets, alpha, tail, cfg, scratch);
        let s: f64 = alpha.iter().sum();
        let (a, _, _) = tail.eval(s);
        (it, conv, res, digamma(a) - digamma(s))
    } else {
        let (it, conv, res) = fit_dirichlet_into(targets, alpha, cfg, scratch);
        (it, conv, res, f64::NAN)
    }
}

/// `(id, f(id))` for the ids in exactly one of two ascending id lists,
/// ascending.
fn sym_diff_values(a: &[TokenId], b: &[TokenId], f: &dyn Fn(TokenId) -> f64, out: &mut Vec<(TokenId, f64)>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&y)) if x < y => {
                out.push((x, f(x)));
                i += 1;
            }
            (Some(&x), None) => {
                out.push((x, f(x)));
                i += 1;
            }
            (_, Some(&y)) => {
                out.push((y, f(y)));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Sum of the tail model's alphas over the old remainder, from the new
/// remainder's: add the tokens that enter the support, remove those that
/// leave it.
fn old_remainder_tail(old: &[TokenId], new: &[TokenId], tail_alpha: &dyn Fn(TokenId) -> f64, new_rem: f64) -> f64 {
    let (mut i, mut j, mut rem) = (0, 0, new_rem);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                rem -= tail_alpha(*a);
                i += 1;
            }
            (Some(a), None) => {
                rem -= tail_alpha(*a);
                i += 1;
            }
            (_, Some(b)) => {
                rem += tail_alpha(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    rem.max(0.0)
}

/// `Some(id)` for ids the per-token statistics track.
#[inline]
fn tracked(id: TokenId) -> Option<usize> {
    usize::try_from(id).ok().filter(|&i| i < MAX_TRACKED_ID)
}

/// A log-probability as the Dirichlet statistics see it: below the noise
/// floor (or -inf) it becomes ln EPS.
#[inline]
fn floored(lp: f64, floor: f64) -> f64 {
    if lp >= floor {
        lp
    } else {
        FILL
    }
}

/// One emwa_logp entry's update toward `x` (see [`kernels::ema_entry`]:
/// the same rule as the vectorised update, [`SNAP_NATS`] included).
#[inline(always)]
fn ema_toward(b: f64, x: f64, c: f64) -> f64 {
    kernels::ema_entry(b, x, c, FILL)
}

#[inline]
fn ema(c: f32, new: f64, old: f64) -> f64 {
    let c = c as f64;
    c * new + (1.0 - c) * old
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

fn log_sum_exp_f32(v: &[f32]) -> f64 {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return max;
    }
    max + v.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln()
}

/// ln sum exp(lp * scale) over the finite entries.
fn log_sum_exp_scaled(lp: &[f64], scale: f64) -> f64 {
    let max = lp.iter().copied().filter(|l| l.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let m = max * scale;
    m + lp.iter().filter(|l| l.is_finite()).map(|&l| (l * scale - m).exp()).sum::<f64>().ln()
}

/// The model's log-probabilities (nats) of the candidates into `lp` and
/// probabilities into `p`: -inf / 0 for -inf and NaN logits; when some
/// logits are +inf they share the mass equally (the softmax limit). One
/// exponential per candidate. Returns the entropy (nats) and varentropy
/// (nats²), or `None` when nothing is finite.
fn naked_dist(cands: &[TokenData], lp: &mut Vec<f64>, p: &mut Vec<f64>) -> Option<(f64, f64)> {
    naked_dist_norm(cands, lp, p).map(|(h, v, _)| (h, v))
}

/// [`naked_dist`], also returning `ln sum exp(logit)` over the finite
/// logits (+inf when some logit is +inf).
fn naked_dist_norm(cands: &[TokenData], lp: &mut Vec<f64>, p: &mut Vec<f64>) -> Option<(f64, f64, f64)> {
    lp.clear();
    p.clear();
    let max = max_logit(cands);
    if max == f32::NEG_INFINITY || cands.is_empty() {
        return None;
    }
    if max == f32::INFINITY {
        let n_inf = cands.iter().filter(|t| t.logit == f32::INFINITY).count() as f64;
        let l = -n_inf.ln();
        lp.extend(cands.iter().map(|t| if t.logit == f32::INFINITY { l } else { f64::NEG_INFINITY }));
        p.extend(cands.iter().map(|t| if t.logit == f32::INFINITY { 1.0 / n_inf } else { 0.0 }));
        return Some((n_inf.ln(), 0.0, f64::INFINITY));
    }
    let m = max as f64;
    let mut sum = 0.0;
    p.extend(cands.iter().map(|t| {
        // (NaN > -inf) is false: NaN maps to 0 like -inf.
        let e = if t.logit > f32::NEG_INFINITY { (t.logit as f64 - m).exp() } else { 0.0 };
        sum += e;
        e
    }));
    let (ln_sum, inv) = (sum.ln(), 1.0 / sum);
    let (mut s1, mut s2) = (0.0, 0.0);
    lp.extend(cands.iter().zip(p.iter_mut()).map(|(t, q)| {
        if *q > 0.0 {
            let l = t.logit as f64 - m - ln_sum;
            *q *= inv;
            s1 += *q * l;
            s2 += *q * l * l;
            l
        } else if t.logit > f32::NEG_INFINITY {
            // Finite but underflowed: keep its log-probability.
            t.logit as f64 - m - ln_sum
        } else {
            f64::NEG_INFINITY
        }
    }));
    Some(((-s1).max(0.0), (s2 - s1 * s1).max(0.0), m + ln_sum))
}

/// Entropy (nats) and varentropy (nats²) from log-probabilities.
fn entropy_varentropy(logp: &[f64]) -> (f64, f64) {
    let h: f64 = -logp.iter().filter(|l| l.is_finite()).map(|&l| l.exp() * l).sum::<f64>();
    let v: f64 = logp.iter().filter(|l| l.is_finite()).map(|&l| l.exp() * (l + h) * (l + h)).sum();
    (h.max(0.0), v.max(0.0))
}

/// Entropy (nats) and varentropy (nats²) from probabilities.
fn entropy_varentropy_of_probs(p: &[f64]) -> (f64, f64) {
    let (mut s1, mut s2) = (0.0, 0.0);
    for &q in p {
        if q > 0.0 {
            let l = q.ln();
            s1 += q * l;
            s2 += q * l * l;
        }
    }
    ((-s1).max(0.0), (s2 - s1 * s1).max(0.0))
}

/// Indices of the `k` largest finite entries (ties: lower index first),
/// in descending order. Fewer when fewer are finite.
#[allow(clippy::needless_range_loop)]
fn top_k_indices(logp: &[f64], k: usize, out: &mut Vec<usize>) {
    out.clear();
    if k == 0 {
        return;
    }
    let better = |a: usize, b: usize| logp[a] > logp[b] || (logp[a] == logp[b] && a < b);
    if k <= 64 {
        for i in 0..logp.len() {
            // `!(x > -inf)`: NaN is skipped with -inf.
            if !(logp[i] > f64::NEG_INFINITY) {
                continue;
            }
            if out.len() == k && !better(i, out[k - 1]) {
                continue;
            }
            let pos = out.iter().position(|&j| better(i, j)).unwrap_or(out.len());
            if out.len() == k {
                out.pop();
            }
            out.insert(pos, i);
        }
    } else {
        out.extend((0..logp.len()).filter(|&i| logp[i] > f64::NEG_INFINITY));
        let cmp = |a: &usize, b: &usize| logp[*b].partial_cmp(&logp[*a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(b));
        if out.len() > k {
            out.select_nth_unstable_by(k - 1, cmp);
            out.truncate(k);
        }
        out.sort_unstable_by(cmp);
    }
}

/// Entropy (nats) of the renormalised top-k, given their
/// log-probabilities (largest first), which are renormalised in place.
fn topk_entropy(vals: &mut [f64]) -> f64 {
    if vals.is_empty() {
        return 0.0;
    }
    let m = vals[0];
    let lse = m + vals.iter().map(|&l| (l - m).exp()).sum::<f64>().ln();
    vals.iter_mut().for_each(|l| *l -= lse);
    entropy_varentropy(vals).0
}

/// The candidates' logits as f32 into `xs` (NaN and -inf as -inf; when
/// some logit is +inf, those become 0 and every other -inf: the softmax
/// limit, mass shared equally) and their ids into `ids`, unless the ids
/// are exactly 0..n (then `ids` is left empty). Returns the largest entry
/// of `xs`, or `None` when nothing is finite.
fn scan_logits(cands: &[TokenData], xs: &mut Vec<f32>, ids: &mut Vec<TokenId>) -> Option<f32> {
    let n = cands.len();
    // Every entry is written below (no clear: no zero fill when the length
    // is unchanged).
    xs.resize(n, 0.0);
    xs.truncate(n);
    ids.clear();
    // The logits (NaN as -inf), their maximum and the OR of id ^ index
    // (0 exactly when the ids are 0..n), in one vectorised pass.
    let (mut max, id_diff) = kernels::scan_candidates(cands, xs);
    if id_diff != 0 || n > MAX_TRACKED_ID {
        ids.extend(cands.iter().map(|t| t.id));
    }
    if max == f32::INFINITY {
        xs.iter_mut().for_each(|x| *x = if *x == f32::INFINITY { 0.0 } else { f32::NEG_INFINITY });
        max = 0.0;
    }
    (max > f32::NEG_INFINITY).then_some(max)
}

/// [`top_k_indices`] on f32 values: blocks whose largest entry cannot enter
/// the top k are skipped after one vectorised max.
fn top_k_f32(xs: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    if k == 0 {
        return;
    }
    if k > 64 {
        let v: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
        top_k_indices(&v, k, out);
        return;
    }
    const BLOCK: usize = kernels::TOPK_BLOCK;
    let n_blocks = xs.len().div_ceil(BLOCK);
    // better(a, b) with a > b (later index): strictly larger value only.
    let mut b = 0;
    while b < n_blocks {
        if out.len() == k {
            // Blocks without an entry above the k-th best are skipped.
            b = kernels::first_block_above(xs, b, xs[out[k - 1]]);
            if b >= n_blocks {
                break;
            }
        }
        let chunk = &xs[b * BLOCK..((b + 1) * BLOCK).min(xs.len())];
        for (j, &x) in chunk.iter().enumerate() {
            // Written so that NaN (which the scan maps to -inf, but an
            // emulator such as valgrind may let through) is skipped: an
            // entry must beat -inf and, once `out` is full, the k-th best.
            if !(x > f32::NEG_INFINITY) || (out.len() == k && !(x > xs[out[k - 1]])) {
                continue;
            }
            let i = b * BLOCK + j;
            let pos = out.iter().position(|&o| x > xs[o]).unwrap_or(out.len());
            if out.len() == k {
                out.pop();
            }
            out.insert(pos, i);
        }
        b += 1;
    }
}

/// softmax(lp / t) over the finite entries (0 elsewhere) into `out`.
fn softmax_at(lp: &[f64], t: f64, out: &mut Vec<f64>) {
    out.clear();
    let scale = 1.0 / t;
    let lse = log_sum_exp_scaled(lp, scale);
    out.extend(lp.iter().map(|&l| if l.is_finite() { (l * scale - lse).exp() } else { 0.0 }));
}

fn fill_slots(slots: &mut Vec<u32>, support: &[TokenId], vocab: usize) {
    if slots.len() < vocab {
        slots.resize(vocab, NO_SLOT);
    }
    for (k, &id) in support.iter().enumerate() {
        slots[id as usize] = k as u32;
    }
}

fn clear_slots(slots: &mut [u32], support: &[TokenId]) {
    for &id in support {
        slots[id as usize] = NO_SLOT;
    }
}

/// Probabilities of the candidates aggregated on the support: one entry
/// per support token, then the remainder's total (always pushed; the
/// caller ignores it when there is no remainder).
fn lump(cands: &[TokenData], probs: &[f64], slots: &[u32], n_sup: usize, out: &mut Vec<f64>) {
    out.clear();
    out.resize(n_sup + 1, 0.0);
    for (t, &q) in cands.iter().zip(probs) {
        match tracked(t.id).and_then(|id| slots.get(id)).copied() {
            Some(slot) if slot != NO_SLOT => out[slot as usize] += q,
            _ => out[n_sup] += q,
        }
    }
}

/// [`lump`] of f32 probabilities (summing to `tot`) of candidates whose
/// ids are 0..n, renormalised by `tot`: the support's entries read
/// directly, the remainder is `tot` minus them (exact in f64: the same f32
/// values).
fn lump_ident(probs: &[f32], tot: f64, support: &[TokenId], out: &mut Vec<f64>) {
    out.clear();
    let inv = 1.0 / tot;
    let mut sup = 0.0;
    out.extend(support.iter().map(|&id| {
        let q = probs.get(id as usize).map_or(0.0, |&q| q as f64);
        sup += q;
        q * inv
    }));
    out.push(((tot - sup) * inv).max(0.0));
}

/// [`lump`] of f32 probabilities (summing to `tot`) with explicit ids,
/// renormalised by `tot`.
fn lump_ids(ids: &[TokenId], probs: &[f32], tot: f64, slots: &[u32], n_sup: usize, out: &mut Vec<f64>) {
    out.clear();
    out.resize(n_sup + 1, 0.0);
    for (&id, &q) in ids.iter().zip(probs) {
        match tracked(id).and_then(|id| slots.get(id)).copied() {
            Some(slot) if slot != NO_SLOT => out[slot as usize] += q as f64,
            _ => out[n_sup] += q as f64,
        }
    }
    let inv = 1.0 / tot;
    out.iter_mut().for_each(|q| *q *= inv);
}

/// Floored logs of lumped probabilities (support, then the lump when
/// `has_lump`).
fn floored_logs(x: &[f64], has_lump: bool, floor: f64, out: &mut Vec<f64>) {
    let n = if has_lump { x.len() } else { x.len() - 1 };
    out.clear();
    out.extend(x[..n].iter().map(|&q| if q > 0.0 { floored(q.ln(), floor) } else { FILL }));
}

fn floored_logs_of_probs(x: &mut [f64], floor: f64) {
    for q in x.iter_mut() {
        *q = if *q > 0.0 { floored(q.ln(), floor) } else { FILL };
    }
}

/// softmax(emwa_logp) aggregated on the support (then the lump).
fn mean_on_support(logp: &[f32], lse: f64, support: &[TokenId], has_lump: bool, out: &mut Vec<f64>) {
    out.clear();
    out.extend(support.iter().map(|&id| (logp[id as usize] as f64 - lse).exp()));
    if has_lump {
        let sup: f64 = out.iter().sum();
        out.push((1.0 - sup).max(0.0));
    }
}

/// -ln Dir(x | alpha) from floored ln x; +inf-free by construction.
fn neg_ln_density(ln_x: &[f64], alpha: &[f64]) -> f64 {
    -ln_dirichlet_density(ln_x, alpha)
}

fn json_f64(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

impl Sampler for DirichletSampler {
    fn name(&self) -> &'static str {
        "dirichlet"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        require_candidates(candidates)?;
        let Self { cfg, rng, state, pending, work } = self;
        let index = if state.initialised {
            Self::compute_step(cfg, state, rng, work, pending, candidates.as_slice())?
        } else {
            // A virtual one-position prompt: this step's own logits.
            let cands = candidates.as_slice();
            if max_logit(cands) == f32::NEG_INFINITY {
                pending.valid = false;
                return Err(SampleError::NoFiniteLogits);
            }
            let init = Self::init_state(cfg, work, 1, &mut |_, buf| {
                buf.clear();
                buf.extend_from_slice(cands);
            })
            .ok_or(SampleError::NoFiniteLogits)?;
            let index = Self::compute_step(cfg, &init, rng, work, pending, cands)?;
            pending.info.initialised_here = true;
            index
        };
        crate::core::softmax_weights::set_p_scaled(candidates.as_mut_slice(), &work.out, work.out_scale);
        candidates.select(index);
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        self.rng.advance();
        let pending = &mut self.pending;
        if !pending.valid {
            return;
        }
        pending.valid = false;
        let p = &self.cfg.p;
        let cap = -LN_EPS; // 18.42 nats
        let (mut s_naked, mut s_scaf, mut s_temp) = (cap, cap, cap);
        let c = if pending.ids.is_empty() {
            usize::try_from(token).ok().filter(|&c| c < pending.xs.len())
        } else {
            pending.ids.iter().position(|&id| id == token)
        };
        if let Some(c) = c {
            let x = pending.xs[c];
            if x > f32::NEG_INFINITY {
                let lp = x as f64 - pending.lse_naked;
                s_naked = (-lp).min(cap);
                s_temp = (-(lp / pending.emas.temp - pending.lse_at_temp)).clamp(0.0, cap);
            }
            let q = if !pending.scaffold_is_pre {
                pending.scaffold[c]
            } else if x > f32::NEG_INFINITY {
                ((x as f64 - pending.pre_max as f64) / pending.pre_temp).exp() / pending.pre_norm
            } else {
                0.0
            };
            if q > 0.0 {
                s_scaf = (-q.ln()).clamp(0.0, cap);
            }
        }
        let e = &mut pending.emas;
        e.cross_ent_nats = ema(p.emwa_cross_ent_coeff, s_temp, e.cross_ent_nats);
        e.cross_ent_naked_nats = ema(p.token_cross_ent_naked_coeff, s_naked, e.cross_ent_naked_nats);
        e.cross_ent_scaffold_nats = ema(p.token_cross_ent_scaffold_coeff, s_scaf, e.cross_ent_scaffold_nats);
        let dn = s_naked - e.cross_ent_naked_nats;
        let ds = s_scaf - e.cross_ent_scaffold_nats;
        e.cross_var_naked_nats2 = ema(p.token_cross_var_naked_coeff, dn * dn, e.cross_var_naked_nats2);
        e.cross_var_scaffold_nats2 = ema(p.token_cross_var_scaffold_coeff, ds * ds, e.cross_var_scaffold_nats2);
        let state = &mut self.state;
        state.emas = pending.emas;
        std::mem::swap(&mut state.dir, &mut pending.dir);
        state.last = std::mem::take(&mut pending.info);
        state.last.surprise_naked_nats = s_naked;
        state.last.surprise_scaffold_nats = s_scaf;
        state.last.surprise_at_emwa_temp_nats = s_temp;
        state.initialised = true;
        state.steps += 1;
    }

    fn reset(&mut self) {
        self.state = State::default();
        self.pending.valid = false;
        self.rng.rewind();
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn selects(&self) -> bool {
        true
    }

    fn observe_prompt_logits(&mut self, logits: &[f32], n_vocab: usize) -> bool {
        if n_vocab == 0 {
            return true;
        }
        let n_rows = logits.len() / n_vocab;
        let Self { cfg, state, pending, work, .. } = self;
        let init = Self::init_state(cfg, work, n_rows, &mut |r, buf| {
            buf.clear();
            buf.extend(logits[r * n_vocab..(r + 1) * n_vocab].iter().enumerate().map(|(id, &l)| TokenData::new(id as TokenId, l)));
        });
        if let Some(init) = init {
            *state = init;
            pending.valid = false;
        }
        true
    }

    fn state_json(&self) -> serde_json::Value {
        let s = &self.state;
        let e = &s.emas;
        let l = &s.last;
        let alpha_sum: f64 = s.dir.alpha.iter().sum();
        let last = json!({
            "path": l.path.map(DirichletPath::as_str),
            "initialised_here": l.initialised_here,
            "selected": l.selected,
            "outlier_score": json_f64(l.outlier_score),
            "entropy_nats": json_f64(l.naked_entropy_nats),
            "varentropy_nats2": json_f64(l.naked_varentropy_nats2),
            "topk_entropy_nats": json_f64(l.topk_entropy_nats),
            "kl_logp_nats": json_f64(l.kl_logp_nats),
            "emwa_logp_coeff": json_f64(l.emwa_logp_coeff),
            "target_entropy_nats": json_f64(l.target_entropy_nats),
            "pre_temp": json_f64(l.pre_temp),
            "pre_entropy_nats": json_f64(l.pre_entropy_nats),
            "pre_temp_converged": l.pre_temp_converged,
            "pre_temp_iterations": l.pre_temp_iterations,
            "topk_temp": json_f64(l.topk_temp),
            "fit_iterations": l.fit_iterations,
            "lump_exact_evals": l.lump_evals,
            "fit_converged": l.fit_converged,
            "fit_residual_nats": json_f64(l.fit_residual_nats),
            "lump_target_nats": json_f64(l.lump_target_nats),
            "dir_nll_nats": json_f64(l.dir_nll_nats),
            "dir_nll_threshold_nats": json_f64(l.dir_nll_threshold_nats),
            "use_dirichlet": l.use_dirichlet,
            "perturb_kl_nats": json_f64(l.perturb_kl_nats),
            "perturb_factor": json_f64(l.perturb_factor),
            "scaffold_entropy_nats": json_f64(l.scaffold_entropy_nats),
            "surprise_naked_nats": json_f64(l.surprise_naked_nats),
            "surprise_scaffold_nats": json_f64(l.surprise_scaffold_nats),
            "surprise_at_emwa_temp_nats": json_f64(l.surprise_at_emwa_temp_nats),
        });
        json!({
            "initialised": s.initialised,
            "steps": s.steps,
            "emwa_temp": json_f64(e.temp),
            "emwa_dir_ent_nats": json_f64(e.dir_ent_nats),
            "emwa_entropy_nats": json_f64(e.ent_scaffold_nats),
            "emwa_varentropy_nats2": json_f64(e.varent_scaffold_nats2),
            "emwa_ent_naked_nats": json_f64(e.ent_naked_nats),
            "emwa_varent_naked_nats2": json_f64(e.varent_naked_nats2),
            "emwa_topk_ent_naked_nats": json_f64(e.topk_ent_naked_nats),
            "emwa_cross_ent_nats": json_f64(e.cross_ent_nats),
            "token_cross_ent_scaffold_nats": json_f64(e.cross_ent_scaffold_nats),
            "token_cross_ent_naked_nats": json_f64(e.cross_ent_naked_nats),
            "token_cross_var_scaffold_nats2": json_f64(e.cross_var_scaffold_nats2),
            "token_cross_var_naked_nats2": json_f64(e.cross_var_naked_nats2),
            "emwa_logp_vocab": s.dir.logp.len(),
            "emwa_dir_support": s.dir.support.len(),
            "emwa_dir_has_lump": s.dir.has_lump,
            "emwa_dir_alpha_sum": json_f64(alpha_sum),
            "emwa_dir_lump_alpha": if s.dir.has_lump { json_f64(*s.dir.alpha.last().unwrap_or(&f64::NAN)) } else { serde_json::Value::Null },
            "last": last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The k largest (ties: smaller index first), -inf never, across block
    /// boundaries and with the blocks below the k-th skipped.
    #[test]
    fn temp_tune_start_reuses_the_root_only_for_the_same_distribution() {
        let last = StepInfo { pre_temp: 0.5, pre_entropy_nats: 3.0, pre_temp_grad: 8.0, naked_entropy_nats: 2.0, naked_varentropy_nats2: 4.0, ..Default::default() };
        // Moments at T = 1 of a distribution whose entropy there is 2.0.
        let unit = |h: f64| [1.0, -h, h * h + 4.0, 0.0];
        // Same H and V at T = 1: one Newton step on the previous curve.
        assert!((temp_tune_start(&last, (2.0, 4.0), unit(2.0), 3.4, 1.0) - 0.55).abs() < 1e-12);
        assert_eq!(temp_tune_start(&last, (2.0, 4.0), unit(2.0), 13.0, 1.0), 0.75);
        // A different distribution: the Halley step off T = 1 instead.
        let other = temp_tune_start(&last, (2.1, 4.0), unit(2.1), 3.4, 1.0);
        assert_eq!(Some(other), start_from_unit_temperature(unit(2.1), 3.4));
        // First step (no previous root) and unusable moments: t_init.
        assert_eq!(temp_tune_start(&StepInfo::default(), (0.0, 0.0), [0.0; 4], 3.0, 0.8), 0.8);
    }

    #[test]
    fn top_k_f32_is_the_sorted_top_k() {
        let mut d = crate::core::DrawStream::from_state(31);
        for n in [0usize, 1, 5, 63, 64, 65, 129, 1000, 5000, 70_001] {
            // Quantised values (ties), a rising trend (late blocks beat the
            // threshold), -inf entries.
            let xs: Vec<f32> = (0..n)
                .map(|i| if i % 13 == 4 { f32::NEG_INFINITY } else { ((d.next_normal() * 3.0 + i as f64 * 1e-4) * 4.0).round() as f32 / 4.0 })
                .collect();
            for k in [1usize, 3, 40, 64] {
                let mut want: Vec<usize> = (0..n).filter(|&i| xs[i] > f32::NEG_INFINITY).collect();
                want.sort_by(|&a, &b| xs[b].partial_cmp(&xs[a]).unwrap().then(a.cmp(&b)));
                want.truncate(k);
                let mut got = Vec::new();
                top_k_f32(&xs, k, &mut got);
                assert_eq!(got, want, "n {n} k {k}");
            }
        }
    }

    /// NaN entries are skipped like -inf, and never make the insertion
    /// run past the buffer (issue 13, defect 2: "insertion index (is 6)
    /// should be <= len (is 5)" under valgrind, whose vector compares let
    /// NaN through the scan).
    #[test]
    fn top_k_skips_nan_entries() {
        let xs: Vec<f32> = (0..100).map(|i| if i % 2 == 0 { f32::NAN } else { i as f32 }).collect();
        let mut got = Vec::new();
        top_k_f32(&xs, 6, &mut got);
        assert_eq!(got, vec![99, 97, 95, 93, 91, 89]);
        let v: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
        top_k_indices(&v, 6, &mut got);
        assert_eq!(got, vec![99, 97, 95, 93, 91, 89]);
        top_k_indices(&v, 70, &mut got);
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|&i| i % 2 == 1));
    }
}
