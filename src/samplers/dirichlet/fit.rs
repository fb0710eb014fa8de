//! Fitting Dirichlet parameters to expected log-probabilities (nats).
//!
//! Given targets `t_i = E[ln p_i]` (the sufficient statistic of a sample of
//! probability vectors; here an exponential moving average of log-probs),
//! the maximum-likelihood Dirichlet `alpha` solves
//! `F_i(alpha) = psi(alpha_i) - psi(sum alpha) - t_i = 0` for every i.
//!
//! [`fit_dirichlet`] is seed 003's damped Halley iteration, step for step:
//! the Jacobian `J = diag(psi'(alpha)) - psi'(S) 1 1^T` is a diagonal plus
//! a rank-one term, so `J^-1 v` is applied in O(N) by Sherman-Morrison and
//! an iteration costs O(N) (one `psi, psi', psi''` per component).
//!
//! [`fit_dirichlet_exact`] solves the same equations another way (the
//! one-dimensional equation in S of Minka's fixed point), to convergence;
//! it is the reference the tests and the support-error measurement compare
//! against, not used while sampling.

use serde::{Deserialize, Serialize};

use super::special::{digamma, inv_digamma, polygamma012, polygamma012_batch, trigamma};

/// Smallest and largest alpha the fit returns. The special functions are
/// accurate over (1e-8, 1e12); targets that no finite Dirichlet matches
/// (e.g. `sum exp(t) >= 1`) would otherwise push alpha without bound over
/// successive warm-started fits.
pub const ALPHA_MIN: f64 = 1e-8;
/// See [`ALPHA_MIN`].
pub const ALPHA_MAX: f64 = 1e12;

/// The second-order term of the fit's update direction.
///
/// With `v = J^-1 e` (e the residual), Newton's step is `-v`. Expanding
/// `F(alpha + delta) = 0` to second order gives Halley's (Chebyshev's)
/// correction `delta = -v - 0.5 J^-1 F''[v, v]`, where
/// `F''[v, v]_i = psi''(alpha_i) v_i^2 - psi''(S) (sum v)^2`.
/// Seed 003 (and the reference) write `-v + 0.5 J^-1 (psi''(alpha) * v - psi''(S) * sum v)`:
/// opposite sign and v instead of v^2, so the term does not scale with the
/// step. Near the solution it dominates and pushes alpha away (residual
/// 0.05 -> 15 in one step from 5% off, see the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitCorrection {
    /// `-v - 0.5 J^-1 (psi''(alpha) v^2 - psi''(S) (sum v)^2)` (Halley /
    /// Chebyshev, the seed's intent), safeguarded: when the correction's
    /// norm exceeds half the Newton step's (far from the solution, where
    /// the expansion does not hold and the term would blow alpha up), the
    /// iteration takes the Newton step alone. The default.
    SecondOrder,
    /// The seed's expression as written.
    Seed,
    /// None: damped Newton, `-v`.
    Newton,
}

impl FitCorrection {
    /// From the C/params code: 0 second-order, 1 seed, 2 Newton.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::SecondOrder),
            1 => Some(Self::Seed),
            2 => Some(Self::Newton),
            _ => None,
        }
    }
}

/// Settings of [`fit_dirichlet`]; the defaults are seed 003's, except the
/// correction term (see [`FitCorrection`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitConfig {
    /// The second-order term. Default [`FitCorrection::SecondOrder`].
    pub correction: FitCorrection,
    /// `initial_lr` of the learning-rate schedule. Default 1.2.
    pub initial_lr: f64,
    /// `decay_alpha`. Default 0.1.
    pub decay_alpha: f64,
    /// `decay_beta`. Default 2.0.
    pub decay_beta: f64,
    /// `decay_gamma`. Default 0.25.
    pub decay_gamma: f64,
    /// `decay_nu`. Default 0.75.
    pub decay_nu: f64,
    /// Most iterations. Default 140.
    pub max_iters: u32,
    /// Convergence: Euclidean norm of `psi(alpha) - psi(S) - t`, in nats.
    /// Default 1e-4.
    pub tol: f64,
    /// Polish of the warm start: at most this many undamped steps
    /// (learning rate 1, the same direction, clip and floor) before the
    /// seed's schedule, each kept only if it shrinks the residual norm by
    /// at least 10%; the schedule then runs from the last kept point and stops at
    /// once when that already meets `tol`. The seed's learning rate stays
    /// within 0.04-0.45, so from the previous step's fit (residual norms
    /// of 5-25 nats on the default model) the schedule alone takes 47
    /// iterations (median; p90 68); polished, 7 (p90 10), ending at a
    /// median residual of 2e-8 instead of 9e-5 nats. Not in the seed,
    /// which runs its schedule from `init_alpha`; the result meets the
    /// same tolerance (on 128 real steps: emwa_dir within 7e-5 relative,
    /// every path, Dirichlet test and token the same). 0 disables it (the
    /// seed's schedule alone). Default 30.
    pub polish_steps: u32,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self { correction: FitCorrection::SecondOrder, initial_lr: 1.2, decay_alpha: 0.1, decay_beta: 2.0, decay_gamma: 0.25, decay_nu: 0.75, max_iters: 140, tol: 1e-4, polish_steps: 30 }
    }
}

impl FitConfig {
    /// The seed's learning rate at iteration `step` (1-based):
    /// `initial_lr * exp(-decay_alpha * step^decay_nu) * |cos(decay_beta / step^decay_gamma)|`,
    /// at least 1e-8.
    pub fn learning_rate(&self, step: u32) -> f64 {
        let s = step as f64;
        let lr = self.initial_lr * (-self.decay_alpha * s.powf(self.decay_nu)).exp() * (self.decay_beta / s.powf(self.decay_gamma)).cos().abs();
        lr.max(1e-8)
    }
}

/// What [`fit_dirichlet`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct FitResult {
    /// The fitted parameters, each in `[ALPHA_MIN, ALPHA_MAX]`.
    pub alpha: Vec<f64>,
    /// Iterations that changed alpha, kept polish steps included (0 when
    /// the start already met the tolerance). The seed's JAX scan always
    /// reports `max_iters`; this stops at convergence, which leaves alpha
    /// exactly where the scan would have frozen it.
    pub iterations: u32,
    /// Whether the residual norm fell below `tol` (checked before every
    /// iteration, as the seed does, and once more after the last one).
    pub converged: bool,
    /// Euclidean norm of the final residual `psi(alpha) - psi(S) - t`, nats.
    pub residual_norm: f64,
}

/// Reusable buffers of [`fit_dirichlet_into`].
#[derive(Debug, Clone, Default)]
pub struct FitScratch {
    p0: Vec<f64>,
    p1_inv: Vec<f64>,
    p2: Vec<f64>,
    v: Vec<f64>,
    u: Vec<f64>,
    w: Vec<f64>,
    /// alpha before the last polish step.
    saved: Vec<f64>,
}

/// Seed 003's `fit_dirichlet`: damped Halley iterations from `init_alpha`
/// (all ones when `None`): the update direction `-J^-1 e` plus the
/// second-order term chosen by `config.correction` (see [`FitCorrection`];
/// `e = psi(alpha) - psi(S) - t`), scaled by the seed's learning-rate
/// schedule, clipped to `+-0.5 alpha` and floored at `alpha / 2`; stop when
/// the residual norm is below `tol`.
///
/// `target_logp` are the targets E[ln p_i] in nats. Non-finite targets are
/// not allowed (the caller floors them); with fewer than 2 components there
/// is nothing to fit and alpha is returned unchanged.
pub fn fit_dirichlet(target_logp: &[f64], init_alpha: Option<&[f64]>, config: &FitConfig) -> FitResult {
    let mut alpha = match init_alpha {
        Some(a) => a.to_vec(),
        None => vec![1.0; target_logp.len()],
    };
    let (iterations, converged, residual_norm) = fit_dirichlet_into(target_logp, &mut alpha, config, &mut FitScratch::default());
    FitResult { alpha, iterations, converged, residual_norm }
}

/// [`fit_dirichlet`] in place on `alpha` (the warm start), with reusable
/// buffers. Returns `(iterations, converged, residual_norm)`.
///
/// # Panics
/// If `alpha` and `target_logp` differ in length.
pub fn fit_dirichlet_into(target_logp: &[f64], alpha: &mut [f64], config: &FitConfig, scratch: &mut FitScratch) -> (u32, bool, f64) {
    assert_eq!(alpha.len(), target_logp.len(), "alpha and targets differ in length");
    fit_core(target_logp, alpha, None, config, scratch)
}

/// A lumped category whose parameter is a function of the total S: the
/// summed full-fit alphas `A(S)` of the tokens it stands for, with its
/// first and second derivatives (see [`super::support::TailModel`]).
pub trait LumpModel {
    /// `(A(S), A'(S), A''(S))`.
    fn eval(&mut self, s: f64) -> (f64, f64, f64);
}

/// The fit over a support plus one lumped remainder (`alpha` holds the N
/// support components, then the lump; `target_logp` the N support
/// targets). The support rows are the seed's, `psi(alpha_i) - psi(S) - t_i`;
/// the lump's row is `psi(alpha_R) - psi(A(S))`, i.e. the lump's target
/// `psi(A(S)) - psi(S)` moves with S as the full fit's would (so the
/// solution is the full-vocabulary fit's, aggregated). The Jacobian is
/// still a diagonal minus a rank-one term `u 1^T` (`u_i = psi'(S)` on the
/// support rows, `u_R = psi'(A) A'(S)`), inverted by Sherman-Morrison in
/// O(N); the iteration (schedule, clip, floor, tolerance, correction) is
/// [`fit_dirichlet`]'s. Each iteration evaluates `lump` once.
///
/// # Panics
/// If `alpha.len() != target_logp.len() + 1`.
pub fn fit_dirichlet_lumped_into(
    target_logp: &[f64],
    alpha: &mut [f64],
    lump: &mut dyn LumpModel,
    config: &FitConfig,
    scratch: &mut FitScratch,
) -> (u32, bool, f64) {
    assert_eq!(alpha.len(), target_logp.len() + 1, "alpha must hold the support and the lump");
    fit_core(target_logp, alpha, Some(lump), config, scratch)
}

/// The factor by which an undamped polish step must at least shrink the
/// residual norm to be kept (see [`FitConfig::polish_steps`]). Far from
/// the solution the clip at `+-alpha/2` binds and steps shrink the norm by
/// 25-50% each on the default model's fits (then much faster near it); a
/// step that gains less than 10% leaves the rest to the seed's damped
/// schedule.
const POLISH_SHRINK: f64 = 0.9;

fn fit_core(target_logp: &[f64], alpha: &mut [f64], mut lump: Option<&mut dyn LumpModel>, config: &FitConfig, scratch: &mut FitScratch) -> (u32, bool, f64) {
    let n = alpha.len();
    for a in alpha.iter_mut() {
        *a = if a.is_finite() { a.clamp(ALPHA_MIN, ALPHA_MAX) } else { 1.0 };
    }
    if n < 2 {
        return (0, true, 0.0);
    }
    let FitScratch { p0, p1_inv, p2, v, u, w, saved } = scratch;
    for buf in [&mut *p0, &mut *p1_inv, &mut *p2, &mut *v, &mut *u, &mut *w] {
        buf.clear();
        buf.resize(n, 0.0);
    }
    let mut bufs = Buffers { e: p0, p1_inv, p2, v, u, w };

    let mut iterations = 0;
    // Polish: undamped steps while each shrinks the residual by at least
    // the factor POLISH_SHRINK; the point before a step that does not is
    // restored and the seed's schedule runs from it.
    let mut polish_left = config.polish_steps;
    let mut polish_norm = f64::INFINITY;
    saved.clear();
    while polish_left > 0 {
        let norm = bufs.evaluate(target_logp, alpha, lump.as_deref_mut());
        if norm < config.tol {
            return (iterations, true, norm);
        }
        if !(norm <= POLISH_SHRINK * polish_norm) {
            // The last step did not pay (or the residual is not finite):
            // back to the point before it, unless this is the start.
            if !saved.is_empty() {
                alpha.copy_from_slice(saved);
                iterations -= 1;
            }
            break;
        }
        saved.clear();
        saved.extend_from_slice(alpha);
        polish_norm = norm;
        bufs.step(alpha, config.correction, 1.0);
        iterations += 1;
        polish_left -= 1;
    }

    // The seed's damped schedule.
    let mut norm = f64::INFINITY;
    for step in 1..=config.max_iters + 1 {
        norm = bufs.evaluate(target_logp, alpha, lump.as_deref_mut());
        if norm < config.tol {
            return (iterations, true, norm);
        }
        if step > config.max_iters {
            break;
        }
        bufs.step(alpha, config.correction, config.learning_rate(step));
        iterations += 1;
    }
    (iterations, norm < config.tol, norm)
}

/// The per-component buffers of one fit iteration.
struct Buffers<'a> {
    /// The residual `e`; then the second-order term `h`.
    e: &'a mut Vec<f64>,
    p1_inv: &'a mut Vec<f64>,
    p2: &'a mut Vec<f64>,
    v: &'a mut Vec<f64>,
    /// The rank-one column of the Jacobian.
    u: &'a mut Vec<f64>,
    /// The coefficient of `(sum v)^2` in each row's second derivative.
    w: &'a mut Vec<f64>,
}

impl Buffers<'_> {
    /// The residual `e`, `1 / psi'`, `psi''`, `u` and `w` at `alpha`;
    /// returns the residual norm (nats).
    #[allow(clippy::needless_range_loop)]
    fn evaluate<'l>(&mut self, target_logp: &[f64], alpha: &[f64], lump: Option<&mut (dyn LumpModel + 'l)>) -> f64 {
        let n = alpha.len();
        let n_sup = target_logp.len();
        let Self { e: p0, p1_inv, p2, u, w, .. } = self;
        let s: f64 = alpha.iter().sum();
        let (ps0, ps1, ps2) = polygamma012(s);
        let lump_terms = lump.map(|l| {
            let (a, a1, a2) = l.eval(s);
            let (pa0, pa1, pa2) = polygamma012(a);
            (pa0, pa1 * a1, pa2 * a1 * a1 + pa1 * a2)
        });
        let mut norm2 = 0.0;
        // psi, psi', psi'' of every component, in vector lanes (bit for
        // bit the scalar function), into the buffers the loop overwrites.
        polygamma012_batch(alpha, p0, p1_inv, p2);
        for i in 0..n {
            let (d0, d1, d2) = (p0[i], p1_inv[i], p2[i]);
            let e = if i < n_sup {
                u[i] = ps1;
                w[i] = ps2;
                d0 - ps0 - target_logp[i]
            } else {
                let (pa0, ui, wi) = lump_terms.unwrap_or((ps0, ps1, ps2));
                u[i] = ui;
                w[i] = wi;
                d0 - pa0
            };
            norm2 += e * e;
            p0[i] = e;
            p1_inv[i] = 1.0 / d1;
            p2[i] = d2;
        }
        norm2.sqrt()
    }

    /// One update of `alpha` from the last [`Self::evaluate`]: the
    /// direction (Newton plus `correction`'s term) times `lr`, clipped to
    /// `+-0.5 alpha` and floored at `alpha / 2`.
    #[allow(clippy::needless_range_loop)]
    fn step(&mut self, alpha: &mut [f64], correction: FitCorrection, lr: f64) {
        let n = alpha.len();
        let Self { e: p0, p1_inv, p2, v, u, w } = self;
        let (sign, squared) = match correction {
            FitCorrection::SecondOrder => (-1.0, true),
            FitCorrection::Seed => (1.0, false),
            FitCorrection::Newton => (0.0, false),
        };
        // Sherman-Morrison for J = D - u 1^T:
        // J^-1 x = D^-1 x + D^-1 u * sum(D^-1 x) / (1 - sum(D^-1 u)).
        let sum_dinv_u: f64 = (0..n).map(|i| p1_inv[i] * u[i]).sum();
        let mut denom = 1.0 - sum_dinv_u;
        if denom.abs() < 1e-12 {
            denom = 1e-12;
        }
        // J^-1 x at row i from D^-1 x's row and sum (the closure is
        // inlined: the same expression as before, so the same bits).
        let j_inv = |xi: f64, i: usize, sum_dinv_x: f64| p1_inv[i] * xi + p1_inv[i] * u[i] * sum_dinv_x / denom;
        // v = J^-1 e
        let sum_dinv_e: f64 = (0..n).map(|i| p1_inv[i] * p0[i]).sum();
        let mut sum_v = 0.0;
        for i in 0..n {
            v[i] = j_inv(p0[i], i, sum_dinv_e);
            sum_v += v[i];
        }
        // The second-order term h (into p0: e is no longer needed), then
        // J^-1 h.
        let mut sign = sign;
        if sign != 0.0 {
            for i in 0..n {
                p0[i] = if squared { p2[i] * v[i] * v[i] - w[i] * sum_v * sum_v } else { p2[i] * v[i] - w[i] * sum_v };
            }
        }
        let h = &**p0;
        let sum_dinv_h: f64 = if sign == 0.0 { 0.0 } else { (0..n).map(|i| p1_inv[i] * h[i]).sum() };
        if squared && sign != 0.0 {
            // Safeguard: far from the solution the quadratic term outgrows
            // the Newton step and the expansion is meaningless; then take
            // the Newton step alone.
            let (mut c2, mut v2) = (0.0, 0.0);
            for i in 0..n {
                let c = 0.5 * j_inv(h[i], i, sum_dinv_h);
                c2 += c * c;
                v2 += v[i] * v[i];
            }
            if c2.is_nan() || c2 > 0.25 * v2 {
                sign = 0.0;
            }
        }
        for i in 0..n {
            let delta = if sign == 0.0 { -v[i] } else { -v[i] + sign * 0.5 * j_inv(h[i], i, sum_dinv_h) };
            let max_delta = 0.5 * alpha[i];
            let mut scaled = lr * delta;
            if !scaled.is_finite() {
                scaled = 0.0;
            }
            let scaled = scaled.clamp(-max_delta, max_delta);
            alpha[i] = (alpha[i] + scaled).max(alpha[i] / 2.0).clamp(ALPHA_MIN, ALPHA_MAX);
        }
    }
}

/// Euclidean norm of `psi(alpha) - psi(sum alpha) - t`, in nats.
pub fn residual_norm(target_logp: &[f64], alpha: &[f64]) -> f64 {
    let ps = digamma(alpha.iter().sum());
    target_logp.iter().zip(alpha).map(|(t, &a)| (digamma(a) - ps - t).powi(2)).sum::<f64>().sqrt()
}

/// The maximum-likelihood Dirichlet for `target_logp`, solved to
/// convergence through the equation in S = sum alpha alone: for a given S
/// every `alpha_i = psi^-1(t_i + psi(S))`, so the fit is the root of
/// `g(S) = sum_i psi^-1(t_i + psi(S)) - S`. Newton on ln S with bisection
/// safeguards; each evaluation costs N inverse digammas.
///
/// A reference for tests and measurements (O(N) inverse digammas per
/// iteration, tens of iterations), not used while sampling. Returns `None`
/// when no finite Dirichlet matches the targets (S runs past `ALPHA_MAX`
/// times N) or when a target is not finite.
pub fn fit_dirichlet_exact(target_logp: &[f64]) -> Option<Vec<f64>> {
    if target_logp.len() < 2 || target_logp.iter().any(|t| !t.is_finite()) {
        return None;
    }
    // h(u) = ln(sum alpha(e^u)) - u; decreasing through its root.
    let eval = |u: f64| -> (f64, f64) {
        let s = u.exp();
        let ps = digamma(s);
        let (mut sum, mut dsum) = (0.0, 0.0);
        for t in target_logp {
            let a = inv_digamma(t + ps);
            sum += a;
            dsum += 1.0 / trigamma(a);
        }
        // d(sum)/du = psi'(S) S sum(1/psi'(alpha_i)).
        let h = sum.ln() - u;
        let dh = trigamma(s) * s * dsum / sum - 1.0;
        (h, dh)
    };
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut u = 0.0f64;
    let u_max = (ALPHA_MAX * target_logp.len() as f64).ln();
    for _ in 0..200 {
        let (h, dh) = eval(u);
        if h.abs() < 1e-13 {
            break;
        }
        if h > 0.0 {
            lo = u;
        } else {
            hi = u;
        }
        let mut next = u - h / dh;
        if !(next > lo && next < hi && next.is_finite()) {
            next = if lo.is_finite() && hi.is_finite() {
                0.5 * (lo + hi)
            } else if lo.is_finite() {
                lo + 2.0
            } else {
                hi - 2.0
            };
        }
        if next > u_max {
            return None;
        }
        if (next - u).abs() < 1e-15 * u.abs().max(1.0) {
            u = next;
            break;
        }
        u = next;
    }
    let ps = digamma(u.exp());
    Some(target_logp.iter().map(|t| inv_digamma(t + ps)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets_of(alpha: &[f64]) -> Vec<f64> {
        let ps = digamma(alpha.iter().sum());
        alpha.iter().map(|&a| digamma(a) - ps).collect()
    }

    #[test]
    fn schedule_matches_the_seed() {
        let c = FitConfig::default();
        let want = 1.2 * (-0.1f64).exp() * (2.0f64).cos().abs();
        assert!((c.learning_rate(1) - want).abs() < 1e-15);
    }

    #[test]
    fn halley_fit_recovers_exact_targets() {
        let alpha = [0.3, 1.0, 2.5, 7.0, 0.05, 12.0];
        let t = targets_of(&alpha);
        // From all ones the seed's damped schedule ends just short of its
        // 1e-4 tolerance after 140 iterations; alpha is right to 1e-4.
        let r = fit_dirichlet(&t, None, &FitConfig::default());
        assert!(r.residual_norm < 2e-4, "{r:?}");
        for (a, b) in r.alpha.iter().zip(&alpha) {
            assert!(((a - b) / b).abs() < 1e-3, "{a} vs {b}");
        }
        // Warm-started near the answer it converges in a few iterations.
        let near: Vec<f64> = alpha.iter().map(|a| a * 1.05).collect();
        let r = fit_dirichlet(&t, Some(&near), &FitConfig::default());
        assert!(r.converged && r.iterations < 40, "{r:?}");
    }

    #[test]
    fn polish_converges_from_a_warm_start_in_a_few_steps() {
        let alpha = [0.3, 1.0, 2.5, 7.0, 0.05, 12.0, 1e-3, 0.02];
        let t = targets_of(&alpha);
        // 30% off in alternating directions: the seed's schedule alone
        // (learning rate 0.04-0.45) needs tens of iterations; undamped
        // steps converge (quadratically or better) in a few.
        let start: Vec<f64> = alpha.iter().enumerate().map(|(i, a)| if i % 2 == 0 { a * 1.3 } else { a * 0.7 }).collect();
        let seed_only = fit_dirichlet(&t, Some(&start), &FitConfig { polish_steps: 0, ..FitConfig::default() });
        let polished = fit_dirichlet(&t, Some(&start), &FitConfig::default());
        assert!(seed_only.converged && seed_only.iterations > 20, "{seed_only:?}");
        assert!(polished.converged && polished.iterations <= 6, "{polished:?}");
        assert!(polished.residual_norm <= seed_only.residual_norm, "{polished:?} vs {seed_only:?}");
        for (a, b) in polished.alpha.iter().zip(&alpha) {
            assert!(((a - b) / b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn polish_that_does_not_pay_falls_back_to_the_schedule() {
        // From all ones, far from these targets, the first undamped step
        // shrinks the residual by only 3% (21.9 -> 21.3 nats: the clip at
        // +-alpha/2 binds); it is undone and the schedule runs from the
        // start, so the result is the seed's, bit for bit.
        let alpha = [0.3, 1.0, 2.5, 7.0, 0.05, 12.0];
        let t = targets_of(&alpha);
        let seed_only = fit_dirichlet(&t, None, &FitConfig { polish_steps: 0, ..FitConfig::default() });
        let polished = fit_dirichlet(&t, None, &FitConfig::default());
        assert_eq!(polished, seed_only);
        assert!(polished.residual_norm < 2e-4, "{polished:?}");
    }

    #[test]
    fn exact_fit_recovers_targets() {
        let alpha = [0.3, 1.0, 2.5, 7.0, 0.05, 12.0, 1e-3, 300.0];
        let got = fit_dirichlet_exact(&targets_of(&alpha)).unwrap();
        for (a, b) in got.iter().zip(&alpha) {
            assert!(((a - b) / b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn inconsistent_targets_stay_finite() {
        // sum exp(t) > 1: no Dirichlet has these; alpha grows but stays capped.
        let t = [-0.1, -0.2, -0.3];
        let r = fit_dirichlet(&t, None, &FitConfig::default());
        assert!(r.alpha.iter().all(|a| a.is_finite() && *a >= ALPHA_MIN && *a <= ALPHA_MAX));
        assert!(!r.converged);
        assert!(fit_dirichlet_exact(&t).is_none());
    }
}
