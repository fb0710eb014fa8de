//! The hyperparameters of the adaptive Dirichlet sampler. Every entropy,
//! cross-entropy, log-probability and threshold is in nats.

use serde::{Deserialize, Serialize};

use super::fit::{FitConfig, FitCorrection};
use super::temp_tune::TempTuneConfig;
use crate::core::error::check_range;
use crate::core::{ParamError, RANDOM_SEED};

/// Largest `support_size` accepted.
pub const MAX_SUPPORT_SIZE: u32 = 65_536;

/// Parameters of [`super::DirichletSampler`] (C: `entropix_dirichlet_params`).
///
/// Names follow the reference (xjdr-alt/entropix `DSConfig`) where it has
/// the quantity, and seed 003 otherwise. Defaults: the reference's DSConfig
/// (the version with `noise_floor`), except the target-entropy weights (see
/// `target_*`) and the Dirichlet test's seed-only term. All values in nats
/// (entropies, cross-entropies, log-probabilities, thresholds); "std" terms
/// in nats, "varent"/"var" terms in nats².
///
/// The state vector the outlier score and the target entropy read,
/// `state_ent`, is `[cross_ent_scaffold, cross_ent_naked, ent_scaffold,
/// ent_naked]` (EMAs, nats) and `state_std` the square roots of the
/// matching variances `[cross_var_scaffold, cross_var_naked,
/// varent_scaffold, varent_naked]`. "Naked" is the model's distribution,
/// "scaffold" the seed's Dirichlet-interpolated one.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirichletParams {
    /// RNG seed. `0xFFFFFFFF` (llama.cpp's `LLAMA_DEFAULT_SEED`) draws a
    /// random seed at construction. Default `0xFFFFFFFF`.
    pub seed: u32,
    /// Whether each step runs seed 003's Dirichlet machinery: `emwa_logp`
    /// over the vocabulary, the fit of `emwa_dir` over the support, the
    /// likelihood test and, when it passes, the perturbed draw (steps 3, 4,
    /// 6 and 7 of [`super::DirichletSampler`]). false skips all of it and
    /// never takes the Dirichlet path; every other path and EMA is computed
    /// as before, so a run in which the test never passes draws the same
    /// tokens either way. Default false: with these thresholds the test
    /// passed on none of 800 traced steps on SmolLM2-135M and Gemma 3 270M
    /// (`-ln Dir(pre_probs)` about 2e4 nats against a threshold about 2e3),
    /// and forced on it degrades the text (see `dirichlet_ent_weight`);
    /// skipping it makes the step several times cheaper. The reference:
    /// true.
    pub dirichlet_test: bool,
    /// N: the Dirichlet is fitted over the N tokens with the highest
    /// `emwa_logp` plus one lumped remainder. 1..=65536. Default 128.
    pub support_size: u32,
    /// Log-probabilities below this (nats) enter the Dirichlet statistics
    /// as ln(1e-8) (the reference's `noise_floor`). <= 0. Default -12.
    pub noise_floor_nats: f32,

    /// `emwa_logp` coefficient `base^(-exp_factor / KL)`: base, >= 1.
    /// Default 4.0.
    pub emwa_logp_base: f32,
    /// `emwa_logp` coefficient: exp_factor (nats, since KL is), >= 0.
    /// Default 3.0.
    pub emwa_logp_exp_factor: f32,
    /// EMA coefficient of `emwa_dir` (weight of the new fit), in [0, 1].
    /// Default 0.70.
    pub emwa_dir_coeff: f32,
    /// EMA coefficient of `emwa_temp`, in [0, 1]. Default 0.70.
    pub emwa_temp_coeff: f32,
    /// EMA coefficient of `emwa_dir_ent` (negative Dirichlet
    /// log-likelihood, nats), in [0, 1]. Default 0.70.
    pub emwa_dir_ent_coeff: f32,
    /// EMA coefficient of the scaffold entropy (seed: `emwa_entropy`), in
    /// [0, 1]. Default 0.70.
    pub emwa_ent_scaffold_coeff: f32,
    /// EMA coefficient of the scaffold varentropy, in [0, 1]. Default 0.70.
    pub emwa_varent_scaffold_coeff: f32,
    /// EMA coefficient of the model's entropy, in [0, 1]. Default 0.70.
    pub emwa_ent_naked_coeff: f32,
    /// EMA coefficient of the model's varentropy, in [0, 1]. Default 0.70.
    pub emwa_varent_naked_coeff: f32,
    /// EMA coefficient of the entropy of the model's renormalised top
    /// `outlier_topk`, in [0, 1]. Default 0.70.
    pub emwa_topk_ent_naked_coeff: f32,
    /// EMA coefficient of seed 003's `emwa_cross_ent`,
    /// `-ln softmax(logits / emwa_temp)[token]`, in [0, 1]. Default 0.65
    /// (the reference's cross-entropy coefficient).
    pub emwa_cross_ent_coeff: f32,
    /// EMA coefficient of `-ln p_scaffold[token]`, in [0, 1]. Default 0.65.
    pub token_cross_ent_scaffold_coeff: f32,
    /// EMA coefficient of `-ln p_model[token]`, in [0, 1]. Default 0.65.
    pub token_cross_ent_naked_coeff: f32,
    /// EMA coefficient of the scaffold surprise's variance, in [0, 1].
    /// Default 0.75.
    pub token_cross_var_scaffold_coeff: f32,
    /// EMA coefficient of the model surprise's variance, in [0, 1].
    /// Default 0.65.
    pub token_cross_var_naked_coeff: f32,

    /// Perturbation `1 - base^(-exp_coeff / KL(sample || pre_probs))`:
    /// base, >= 1. Default 10.0.
    pub perturb_base_coeff: f32,
    /// Perturbation exponent coefficient (nats), >= 0. Default 1.0.
    pub perturb_exp_coeff: f32,

    /// The Dirichlet test: the sample is used when `-ln Dir(pre_probs)` <
    /// `dirichlet_mean_weight * (-ln Dir(softmax(emwa_logp)))` +
    /// `dirichlet_ent_weight * emwa_dir_ent + dirichlet_bias_nats`.
    /// Seed 003's `d`; the reference has no such term. Default 0.
    pub dirichlet_mean_weight: f32,
    /// Seed 003's `e`, the reference's `dirichlet_threshold.weight`.
    /// Default 0.1.
    ///
    /// With the reference's 0.1 / 1.2 and the correct sign of the Dirichlet
    /// normaliser, `-ln Dir(pre_probs)` on the default model is ~1e4 nats
    /// and about its own average, so the test does not pass and the
    /// sampler draws from `pre_probs` (temperature-tuned sampling). With
    /// the test enabled (e.g. weight 1, bias 0: about half the steps), the
    /// fitted Dirichlet, which puts ~97% of its mass on the lumped
    /// remainder (emwa_logp is dominated by the noise floor), moves most
    /// of the probability to tokens outside the recent support and the
    /// text degrades (`measure_text_with_defaults` in tests/dirichlet.rs).
    pub dirichlet_ent_weight: f32,
    /// Seed 003's `dir_ent_offset`, the reference's
    /// `dirichlet_threshold.bias` (nats). Default 1.2.
    pub dirichlet_bias_nats: f32,

    /// Outlier score: `state_ent^T B state_std` with B row-major 4x4.
    /// Default all 1.3.
    pub outlier_bilinear: [f32; 16],
    /// Outlier score: weights of `state_ent`. Default all 0.8.
    pub outlier_state_ent: [f32; 4],
    /// Outlier score: weights of `state_std`. Default all 0.8.
    pub outlier_state_std: [f32; 4],
    /// Outlier score: weight of this step's model entropy. Default 1.2.
    pub outlier_naked_ent: f32,
    /// Outlier score: weight of the square root of this step's model
    /// varentropy (defined but unused in the reference). Default 1.2.
    pub outlier_naked_std: f32,
    /// Outlier score: weight of this step's model varentropy. Default 1.2.
    pub outlier_naked_varent: f32,
    /// Outlier score: bias (nats). The step is an outlier (seed 003's
    /// Dirichlet path) when the score is > 0. Default 0.
    pub outlier_bias: f32,
    /// Top-k of the inlier paths (argmax and tempered top-k), >= 1.
    /// Default 6.
    pub outlier_topk: u32,
    /// Inliers take the argmax when the top-k entropy is below
    /// `argmax_weight * emwa_topk_ent + argmax_bias_nats`. Default 0.1.
    pub argmax_weight: f32,
    /// See `argmax_weight` (nats). Default 1.2.
    pub argmax_bias_nats: f32,

    /// Target entropy of `pre_temp` (nats): `target_linear . state_ent +
    /// target_cross_ent_weight * emwa_cross_ent + target_inv_temp /
    /// emwa_temp + target_bias_nats`. Seed 003's form is
    /// `a * emwa_cross_ent + b * emwa_entropy + offset` (linear
    /// `[0, 0, b, 0]`); the reference's is `linear . state_ent +
    /// inv_temp / emwa_temp + bias`. Default `[0, 0, 0.35, 0]`: the seed's
    /// form with a = 0.2, b = 0.35, offset = 1.5 nats, whose fixed point
    /// (when `emwa_cross_ent` and `emwa_entropy` settle on the target) is
    /// `offset / (1 - a - b)` = 3.33 nats; best of a 27-point grid of the
    /// objective (`cross_entropy_rate`) on an English text with the default
    /// model (3.505 nats/token, vs 3.39 for the model at T = 1). The
    /// reference's defaults (`[1, 1, 1, 1]`, 8, 0) weigh the state by 4 in
    /// total, a target with no fixed point: on the default model the
    /// temperature runs to its 10-iteration limit (~57) and the text to
    /// noise (objective 10.4 nats/token). Stable settings need
    /// `sum(target_linear) + target_cross_ent_weight < 1`.
    pub target_linear: [f32; 4],
    /// Seed 003's `a`. Default 0.2.
    pub target_cross_ent_weight: f32,
    /// The reference's `linear_inv_temp` (nats times temperature).
    /// Default 0.
    pub target_inv_temp: f32,
    /// Seed 003's `probs_ent_offset`, the reference's bias (nats).
    /// Default 0.1 (reference 1.5; see `Default`).
    pub target_bias_nats: f32,

    /// temp_tune: starting temperature, > 0. Default 1.0. The sampler's
    /// per-step temp_tune starts from a Halley step off T = 1 computed
    /// from the model's moments instead, and uses this only when those
    /// are unusable; the top-k temperature (inlier path) starts here.
    pub temp_tune_t_init: f32,
    /// temp_tune: relative step when the gradient vanishes, > 0. Default 0.1.
    pub temp_tune_lr: f32,
    /// temp_tune: most iterations, 1..=1000. Default 10 (seed 003).
    pub temp_tune_max_iters: u32,
    /// temp_tune: tolerance on the entropy (nats), > 0. Default 1e-6.
    pub temp_tune_tol: f32,
    /// temp_tune: take the Newton step when the Halley denominator is
    /// negative (false: the seed's step as written, which can cycle far
    /// from the root). Default true.
    pub temp_tune_safeguard: bool,

    /// fit_dirichlet: the second-order term of the update, 0 = Halley's
    /// (second-order) correction, 1 = seed 003's expression as written,
    /// 2 = none (damped Newton). See [`super::fit::FitCorrection`]; the
    /// seed's expression does not scale with the step and throws a
    /// near-converged fit off, so the default is 0.
    pub fit_correction: u32,
    /// fit_dirichlet: `initial_lr`, > 0. Default 1.2.
    pub fit_initial_lr: f32,
    /// fit_dirichlet: `decay_alpha`. Default 0.1.
    pub fit_decay_alpha: f32,
    /// fit_dirichlet: `decay_beta`. Default 2.0.
    pub fit_decay_beta: f32,
    /// fit_dirichlet: `decay_gamma`. Default 0.25.
    pub fit_decay_gamma: f32,
    /// fit_dirichlet: `decay_nu`. Default 0.75.
    pub fit_decay_nu: f32,
    /// fit_dirichlet: most iterations, 1..=10000. Default 140.
    pub fit_max_iters: u32,
    /// fit_dirichlet: tolerance on the residual norm (nats), > 0.
    /// Default 1e-4.
    pub fit_tol: f32,
    /// fit_dirichlet: undamped polish steps of the warm start before the
    /// seed's schedule, 0..=100 (see [`FitConfig::polish_steps`]). 0 = the
    /// seed's schedule alone. Default 30.
    pub fit_polish_steps: u32,

    /// The tail cut of the draw, in [0, 1]: before the token is drawn
    /// (step 8), every token whose probability is below `draw_min_p` times
    /// the largest is dropped, as min-p does; the argmax path is left
    /// alone. It changes only the draw: the EMAs and the Dirichlet test
    /// read the distributions before the cut. 0 disables (seed 003 and the
    /// reference draw from the whole vocabulary). Default 0.1 (see
    /// `Default`).
    pub draw_min_p: f32,
}

impl Default for DirichletParams {
    /// [`DirichletParams::reference`] with a lower target entropy, chosen
    /// with `eval` on two models. SmolLM2-135M-Instruct (100 arithmetic
    /// questions, 12 open prompts): `target_bias_nats` 1.5 (fixed point
    /// 3.33 nats) writes 0/100 correct at NLL 3.59 nats/token; 0.6 gave
    /// 3/100 at NLL 1.68; 0.3 (fixed point 0.67 nats) 9/100 at NLL 1.07
    /// (the llama.cpp-like default chain: 11/100, NLL 1.07). With the CLI's
    /// loop guard (DRY, allowed length 2) in front, on SmolLM2 and on Gemma
    /// 3 270M's 12 open prompts (greedy there: seq-rep-4 0.783, NLL 0.17;
    /// T 1 + min-p 0.1: NLL 0.69):
    ///
    /// | `target_bias_nats` | SmolLM2 correct | SmolLM2 NLL | Gemma seq-rep-4 | Gemma NLL |
    /// |---|---|---|---|---|
    /// | 0.3 | 4/100 | not kept | 0.192 | 1.124 |
    /// | 0.2 | 8/100 | 0.97 | 0.380 | 0.871 |
    /// | 0.1 | 7/100 | 0.84 | 0.391 | 0.721 |
    /// | 0.05 | 7/100 | 0.78 | 0.479 | 0.556 |
    ///
    /// 0.1 is the one setting under both of Gemma's bounds (seq-rep-4 at
    /// most half of greedy's, NLL at most min-p's + 10%). 0.3 without the
    /// cross-entropy term (`target_cross_ent_weight` 0) gave 5/100.
    ///
    /// `dirichlet_test` is off: the test never passed on either model, so
    /// the tokens are the same and the step costs 475 instead of 885 µs
    /// at a 49152-token vocabulary (`cargo bench --bench samplers --
    /// default-chain`). Tried on the same dev items and not taken, as they
    /// trade repetition for NLL along the `target_bias_nats` curve above:
    /// the inlier paths (argmax below a model entropy of 0.1-3 nats:
    /// SmolLM2 7-9/100; Gemma seq-rep-4 0.396-0.577, NLL 0.691-0.454) and
    /// a cap of 1 on `pre_temp` (SmolLM2 8/100; Gemma 0.460 / 0.678).
    ///
    /// `draw_min_p` 0.1: the pre_temp path drew from the whole vocabulary,
    /// and a small model's tail is where its wrong digits and its noise
    /// come from. On the same dev items (SmolLM2 correct / NLL; Gemma
    /// seq-rep-4 / NLL), with the CLI's guard (DRY, allowed length 2):
    ///
    /// | guard | `draw_min_p` | SmolLM2 | Gemma |
    /// |---|---|---|---|
    /// | 0.8, prompt and reply | 0 | 7/100, 0.840 | 0.391, 0.721 |
    /// | 0.8, prompt and reply | 0.05 | 10/100, 0.735 | 0.515, 0.448 |
    /// | 0.8, prompt and reply | 0.1 | 10/100, 0.708 | 0.470, 0.495 |
    /// | 1.5, prompt and reply | 0.1 | 4/100, 0.778 | 0.344, 0.666 |
    /// | 1.5, reply only | 0 | 7/100, 0.833 | 0.330, 0.820 |
    /// | 1.5, reply only | 0.1 | 8/100, 0.734 | 0.355, 0.669 |
    ///
    /// The cut lowers the NLL on both models and leaves a base model
    /// looping more; the CLI's guard for dirichlet (multiplier 1.5, on the
    /// reply only) takes that back (see `loop_guard` in the CLI's
    /// `chain_builder.rs`). `target_bias_nats` 0.2 and 0.3 with the cut
    /// gave 9-11/100 on SmolLM2 and no better Gemma numbers.
    fn default() -> Self {
        Self { dirichlet_test: false, target_bias_nats: 0.1, draw_min_p: 0.1, ..Self::reference() }
    }
}

impl DirichletParams {
    /// The settings of seed 003 as implemented before `eval` (see each field): the `reference`
    /// preset (`--preset reference` in the CLI). [`Default`] departs from
    /// it where `eval` showed better text; the fields say where and why.
    pub fn reference() -> Self {
        Self {
            seed: RANDOM_SEED,
            dirichlet_test: true,
            support_size: 128,
            noise_floor_nats: -12.0,
            emwa_logp_base: 4.0,
            emwa_logp_exp_factor: 3.0,
            emwa_dir_coeff: 0.70,
            emwa_temp_coeff: 0.70,
            emwa_dir_ent_coeff: 0.70,
            emwa_ent_scaffold_coeff: 0.70,
            emwa_varent_scaffold_coeff: 0.70,
            emwa_ent_naked_coeff: 0.70,
            emwa_varent_naked_coeff: 0.70,
            emwa_topk_ent_naked_coeff: 0.70,
            emwa_cross_ent_coeff: 0.65,
            token_cross_ent_scaffold_coeff: 0.65,
            token_cross_ent_naked_coeff: 0.65,
            token_cross_var_scaffold_coeff: 0.75,
            token_cross_var_naked_coeff: 0.65,
            perturb_base_coeff: 10.0,
            perturb_exp_coeff: 1.0,
            dirichlet_mean_weight: 0.0,
            dirichlet_ent_weight: 0.1,
            dirichlet_bias_nats: 1.2,
            outlier_bilinear: [1.3; 16],
            outlier_state_ent: [0.8; 4],
            outlier_state_std: [0.8; 4],
            outlier_naked_ent: 1.2,
            outlier_naked_std: 1.2,
            outlier_naked_varent: 1.2,
            outlier_bias: 0.0,
            outlier_topk: 6,
            argmax_weight: 0.1,
            argmax_bias_nats: 1.2,
            target_linear: [0.0, 0.0, 0.35, 0.0],
            target_cross_ent_weight: 0.2,
            target_inv_temp: 0.0,
            target_bias_nats: 1.5,
            temp_tune_t_init: 1.0,
            temp_tune_lr: 0.1,
            temp_tune_max_iters: 10,
            temp_tune_tol: 1e-6,
            temp_tune_safeguard: true,
            fit_correction: 0,
            fit_initial_lr: 1.2,
            fit_decay_alpha: 0.1,
            fit_decay_beta: 2.0,
            fit_decay_gamma: 0.25,
            fit_decay_nu: 0.75,
            fit_max_iters: 140,
            fit_tol: 1e-4,
            fit_polish_steps: 30,
            draw_min_p: 0.0,
        }
    }
}

fn finite(name: &'static str, v: f32) -> Result<(), ParamError> {
    check_range(name, v, f32::MIN, f32::MAX, "must be finite")
}

fn coeff(name: &'static str, v: f32) -> Result<(), ParamError> {
    check_range(name, v, 0.0, 1.0, "must be in [0, 1]")
}

fn count(name: &'static str, v: u32, lo: u32, hi: u32, reason: &'static str) -> Result<(), ParamError> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(ParamError::new(name, v, reason))
    }
}

impl DirichletParams {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ParamError> {
        count("support_size", self.support_size, 1, MAX_SUPPORT_SIZE, "must be in 1..=65536")?;
        check_range("noise_floor_nats", self.noise_floor_nats, f32::MIN, 0.0, "must be finite and <= 0 (nats)")?;
        check_range("emwa_logp_base", self.emwa_logp_base, 1.0, f32::MAX, "must be finite and >= 1")?;
        check_range("emwa_logp_exp_factor", self.emwa_logp_exp_factor, 0.0, f32::MAX, "must be finite and >= 0 (nats)")?;
        for (name, v) in [
            ("emwa_dir_coeff", self.emwa_dir_coeff),
            ("emwa_temp_coeff", self.emwa_temp_coeff),
            ("emwa_dir_ent_coeff", self.emwa_dir_ent_coeff),
            ("emwa_ent_scaffold_coeff", self.emwa_ent_scaffold_coeff),
            ("emwa_varent_scaffold_coeff", self.emwa_varent_scaffold_coeff),
            ("emwa_ent_naked_coeff", self.emwa_ent_naked_coeff),
            ("emwa_varent_naked_coeff", self.emwa_varent_naked_coeff),
            ("emwa_topk_ent_naked_coeff", self.emwa_topk_ent_naked_coeff),
            ("emwa_cross_ent_coeff", self.emwa_cross_ent_coeff),
            ("token_cross_ent_scaffold_coeff", self.token_cross_ent_scaffold_coeff),
            ("token_cross_ent_naked_coeff", self.token_cross_ent_naked_coeff),
            ("token_cross_var_scaffold_coeff", self.token_cross_var_scaffold_coeff),
            ("token_cross_var_naked_coeff", self.token_cross_var_naked_coeff),
        ] {
            coeff(name, v)?;
        }
        check_range("perturb_base_coeff", self.perturb_base_coeff, 1.0, f32::MAX, "must be finite and >= 1")?;
        check_range("perturb_exp_coeff", self.perturb_exp_coeff, 0.0, f32::MAX, "must be finite and >= 0 (nats)")?;
        finite("dirichlet_mean_weight", self.dirichlet_mean_weight)?;
        finite("dirichlet_ent_weight", self.dirichlet_ent_weight)?;
        finite("dirichlet_bias_nats", self.dirichlet_bias_nats)?;
        for &v in &self.outlier_bilinear {
            finite("outlier_bilinear", v)?;
        }
        for &v in &self.outlier_state_ent {
            finite("outlier_state_ent", v)?;
        }
        for &v in &self.outlier_state_std {
            finite("outlier_state_std", v)?;
        }
        finite("outlier_naked_ent", self.outlier_naked_ent)?;
        finite("outlier_naked_std", self.outlier_naked_std)?;
        finite("outlier_naked_varent", self.outlier_naked_varent)?;
        finite("outlier_bias", self.outlier_bias)?;
        count("outlier_topk", self.outlier_topk, 1, MAX_SUPPORT_SIZE, "must be in 1..=65536")?;
        finite("argmax_weight", self.argmax_weight)?;
        finite("argmax_bias_nats", self.argmax_bias_nats)?;
        for &v in &self.target_linear {
            finite("target_linear", v)?;
        }
        finite("target_cross_ent_weight", self.target_cross_ent_weight)?;
        finite("target_inv_temp", self.target_inv_temp)?;
        finite("target_bias_nats", self.target_bias_nats)?;
        check_range("temp_tune_t_init", self.temp_tune_t_init, 1e-4, 1e4, "must be in [1e-4, 1e4]")?;
        check_range("temp_tune_lr", self.temp_tune_lr, f32::MIN_POSITIVE, 1.0, "must be in (0, 1]")?;
        count("temp_tune_max_iters", self.temp_tune_max_iters, 1, 1000, "must be in 1..=1000")?;
        check_range("temp_tune_tol", self.temp_tune_tol, f32::MIN_POSITIVE, f32::MAX, "must be finite and > 0 (nats)")?;
        count("fit_correction", self.fit_correction, 0, 2, "must be 0 (second-order), 1 (seed) or 2 (Newton)")?;
        check_range("fit_initial_lr", self.fit_initial_lr, f32::MIN_POSITIVE, f32::MAX, "must be finite and > 0")?;
        finite("fit_decay_alpha", self.fit_decay_alpha)?;
        finite("fit_decay_beta", self.fit_decay_beta)?;
        finite("fit_decay_gamma", self.fit_decay_gamma)?;
        finite("fit_decay_nu", self.fit_decay_nu)?;
        count("fit_max_iters", self.fit_max_iters, 1, 10_000, "must be in 1..=10000")?;
        check_range("fit_tol", self.fit_tol, f32::MIN_POSITIVE, f32::MAX, "must be finite and > 0 (nats)")?;
        count("fit_polish_steps", self.fit_polish_steps, 0, 100, "must be in 0..=100")?;
        check_range("draw_min_p", self.draw_min_p, 0.0, 1.0, "must be in [0, 1]")?;
        Ok(())
    }

    /// The fit settings as [`FitConfig`].
    pub fn fit_config(&self) -> FitConfig {
        FitConfig {
            correction: FitCorrection::from_code(self.fit_correction).unwrap_or(FitCorrection::SecondOrder),
            initial_lr: self.fit_initial_lr as f64,
            decay_alpha: self.fit_decay_alpha as f64,
            decay_beta: self.fit_decay_beta as f64,
            decay_gamma: self.fit_decay_gamma as f64,
            decay_nu: self.fit_decay_nu as f64,
            max_iters: self.fit_max_iters,
            tol: self.fit_tol as f64,
            polish_steps: self.fit_polish_steps,
        }
    }

    /// The temp_tune settings as [`TempTuneConfig`].
    pub fn temp_tune_config(&self) -> TempTuneConfig {
        TempTuneConfig {
            t_init: self.temp_tune_t_init as f64,
            lr: self.temp_tune_lr as f64,
            max_iters: self.temp_tune_max_iters,
            tol: self.temp_tune_tol as f64,
            safeguard: self.temp_tune_safeguard,
        }
    }
}
