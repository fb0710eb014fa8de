//! Gamma and Dirichlet variates from a [`DrawStream`], and the Dirichlet
//! log-density (nats).

use super::special::ln_gamma;
use crate::core::DrawStream;

/// ln of a Gamma(shape, 1) variate, by Marsaglia and Tsang (2000), "A
/// simple method for generating gamma variables", ACM TOMS 26(3): for
/// shape >= 1, `d = shape - 1/3`, `c = 1 / sqrt(9 d)`; draw a standard
/// normal x and a uniform u until `v = (1 + c x)^3 > 0` and
/// `ln u < x^2/2 + d - d v + d ln v` (with the cheap squeeze
/// `u < 1 - 0.0331 x^4` first); the variate is `d v`. For shape < 1 the
/// boost `G(a) = G(a + 1) U^(1/a)` is applied in log space, so tiny shapes
/// give very negative logs instead of underflowing to 0.
///
/// `shape` must be positive and finite (the caller clamps alphas).
pub fn ln_gamma_variate(shape: f64, draws: &mut DrawStream) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - draws.next_f64(); // (0, 1]
        return ln_gamma_variate(shape + 1.0, draws) + u.ln() / shape;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = draws.next_normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = 1.0 - draws.next_f64(); // (0, 1]
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d.ln() + v.ln();
        }
    }
}

/// One draw from Dir(alpha) into `out` (probabilities summing to 1): Gamma
/// variates normalised, computed from their logs so that no component
/// underflows the sum.
pub fn sample_dirichlet(alpha: &[f64], draws: &mut DrawStream, out: &mut Vec<f64>) {
    out.clear();
    out.extend(alpha.iter().map(|&a| ln_gamma_variate(a, draws)));
    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for x in out.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in out.iter_mut() {
        *x /= sum;
    }
}

/// ln B(alpha) = sum ln Gamma(alpha_i) - ln Gamma(sum alpha_i), the log of
/// the Dirichlet normaliser (nats).
pub fn ln_beta(alpha: &[f64]) -> f64 {
    alpha.iter().map(|&a| ln_gamma(a)).sum::<f64>() - ln_gamma(alpha.iter().sum())
}

/// ln Dir(x | alpha) = sum (alpha_i - 1) ln x_i - ln B(alpha), in nats,
/// from `ln_x` (the logs of the point, already floored by the caller).
pub fn ln_dirichlet_density(ln_x: &[f64], alpha: &[f64]) -> f64 {
    ln_x.iter().zip(alpha).map(|(lx, a)| (a - 1.0) * lx).sum::<f64>() - ln_beta(alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_moments() {
        let mut d = DrawStream::from_state(99);
        for &shape in &[0.05, 0.5, 1.0, 3.7, 40.0] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n).map(|_| ln_gamma_variate(shape, &mut d).exp()).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            assert!((mean - shape).abs() < 0.02 * shape.max(0.2), "shape {shape}: mean {mean}");
            assert!((var - shape).abs() < 0.05 * shape.max(0.2), "shape {shape}: var {var}");
        }
    }

    #[test]
    fn density_of_uniform_dirichlet() {
        // Dir(1,1,1) is uniform on the simplex: density Gamma(3) = 2.
        let ln_x = [0.2f64.ln(), 0.3f64.ln(), 0.5f64.ln()];
        assert!((ln_dirichlet_density(&ln_x, &[1.0, 1.0, 1.0]) - 2f64.ln()).abs() < 1e-13);
        // Beta(2, 3) at 0.4: 12 * 0.4 * 0.6^2.
        let ln_x = [0.4f64.ln(), 0.6f64.ln()];
        let want = (12.0f64 * 0.4 * 0.36).ln();
        assert!((ln_dirichlet_density(&ln_x, &[2.0, 3.0]) - want).abs() < 1e-13);
    }
}
