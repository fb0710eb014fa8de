//! The Dirichlet's support: the top-N tokens by `emwa_logp` plus one lumped
//! remainder category. All log-probabilities in nats.
//!
//! Fitting a Dirichlet over the whole vocabulary every token is too slow
//! (N = 49k components, up to 140 iterations). The sampler fits the
//! aggregated Dirichlet instead: if `p ~ Dir(alpha)` over the vocabulary,
//! then `(p_1, ..., p_N, sum_{j in R} p_j) ~ Dir(alpha_1, ..., alpha_N, A_R)`
//! with `A_R = sum_{j in R} alpha_j` (the aggregation property). So the
//! support components of the full fit, plus `A_R`, are exactly the
//! parameters of the lumped Dirichlet; only the lump's target
//! `E[ln sum_R p_j]` is not among the statistics the sampler keeps (it keeps
//! the per-token `E[ln p_j]`).
//!
//! The lump's target comes from the full fit's own equations: for a given
//! total S, every remainder token has `alpha_j = psi^-1(t_j + psi(S))`, so
//! the lump's parameter is `A(S) = sum_R psi^-1(t_j + psi(S))` and its
//! target `psi(A(S)) - psi(S)`. The fit treats that target as a function of
//! S ([`super::fit::fit_dirichlet_lumped_into`]), so its solution is exactly
//! the full fit's, aggregated. A target frozen at the previous step's S
//! does not work: with the noise floor, the ~49k remainder tokens carry
//! ~97% of the Dirichlet's mass, and the small shift of S between steps
//! leaves support and lump targets that no Dirichlet has (the fit then
//! runs away). The remainder's targets are grouped in bins of 1/64 nat, so
//! an evaluation of `A(S)` costs one inverse digamma (a table lookup) per
//! occupied bin, not per token (most remainder tokens sit at the floor's
//! fill value, one bin).
//!
//! The naive alternative, `ln sum_R exp(t_j)`, underestimates the lump's
//! target badly (remainder alphas are small, and `exp(psi(a)) << a` for
//! small a); the tests and the error measurement show it.

use super::fit::LumpModel;
use super::inv_digamma_table::{inv_digamma_fast, inv_digamma_interp};
use super::special::{digamma, inv_digamma, polygamma012};
use crate::core::TokenId;

/// Width of the bins grouping remainder targets, in nats.
pub const BIN_WIDTH_NATS: f64 = 1.0 / 64.0;

/// The `n` token ids with the largest `emwa[id]` (ties: smaller id first),
/// returned sorted by id. `n >= emwa.len()` returns every id.
pub fn select_support(emwa: &[f32], n: usize, scratch: &mut Vec<u32>, out: &mut Vec<TokenId>) {
    out.clear();
    let v = emwa.len();
    if n >= v {
        out.extend(0..v as TokenId);
        return;
    }
    if n == 0 {
        return;
    }
    scratch.clear();
    scratch.extend(0..v as u32);
    let cmp = |a: &u32, b: &u32| {
        let (x, y) = (emwa[*a as usize], emwa[*b as usize]);
        y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(b))
    };
    scratch.select_nth_unstable_by(n - 1, cmp);
    out.extend(scratch[..n].iter().map(|&i| i as TokenId));
    out.sort_unstable();
}

/// The remainder's targets grouped in bins: enough to evaluate
/// `A_R(S) = sum_{j in R} psi^-1(t_j + psi(S))` in O(bins).
#[derive(Debug, Clone, Default)]
pub struct TailModel {
    lo: f64,
    width: f64,
    /// Per bin: number of tokens and sum of their targets.
    count: Vec<u32>,
    sum: Vec<f64>,
    /// Occupied bins: (count, mean target).
    occupied: Vec<(f64, f64)>,
    /// The last exact evaluation: (S, A, A', A''), for the Taylor model.
    exact: Option<(f64, f64, f64, f64)>,
    /// Exact evaluations since the last build.
    n_exact: usize,
    /// Number of remainder tokens.
    n_tokens: usize,
    /// Interleaved partial histograms of `build_with_support` (bin-major,
    /// [`SUB`] per bin), so that consecutive tokens in the same bin do not
    /// wait on each other's store.
    sub_count: Vec<u32>,
    sub_sum: Vec<f64>,
    /// Ids of the entries not at the fill value (`build_with_support`).
    nonfill: Vec<u32>,
}

/// Number of interleaved partial histograms (token id mod SUB).
const SUB: usize = 4;

impl TailModel {
    /// Groups the targets `emwa[j]` of every token not in `support` (sorted
    /// ids). Bins of [`BIN_WIDTH_NATS`] cover the targets' range (wider
    /// when the range would need more than 65536 bins); `floor_fill` is the
    /// smallest target expected (the sampler's ln EPS).
    pub fn build(&mut self, emwa: &[f32], support: &[TokenId], floor_fill: f64) {
        let (mut min, mut max) = (floor_fill, 0.0f64);
        for &t in emwa {
            let t = t as f64;
            if t.is_finite() {
                min = min.min(t);
                max = max.max(t);
            }
        }
        let width = BIN_WIDTH_NATS.max((max - min) / 65_536.0);
        self.width = width;
        self.lo = min - width;
        let n_bins = ((max - self.lo) / width).ceil() as usize + 2;
        self.count.clear();
        self.count.resize(n_bins, 0);
        self.sum.clear();
        self.sum.resize(n_bins, 0.0);
        let inv_w = 1.0 / width;
        let lo = self.lo;
        let bin = |t: f64| (((t - lo) * inv_w) as usize).min(n_bins - 1);
        let mut next_support = support.iter().peekable();
        for (id, &t) in emwa.iter().enumerate() {
            if next_support.peek().is_some_and(|&&s| s as usize == id) {
                next_support.next();
                continue;
            }
            let t = if (t as f64).is_finite() { t as f64 } else { floor_fill };
            let b = bin(t);
            self.count[b] += 1;
            self.sum[b] += t;
        }
        self.collect_occupied();
    }

    /// Selects the support (as [`select_support`]) and builds the model of
    /// the remainder in one pass over `emwa`; the same result as
    /// `select_support` then [`TailModel::build`] when every target is in
    /// `[floor_fill, 0]` (as the sampler's are), else it falls back to them.
    pub fn build_with_support(&mut self, emwa: &[f32], n: usize, floor_fill: f64, scratch: &mut Vec<(f32, u32)>, support: &mut Vec<TokenId>) {
        let v = emwa.len();
        let lo = floor_fill - BIN_WIDTH_NATS;
        let fill32 = floor_fill as f32;
        let fill_exact = fill32 as f64 == floor_fill;
        // One vectorised pass: the ids of the entries not at the fill
        // value, how many are above it, and the range check. When at least
        // `n` are above, the top n are among those ids and the fill entries
        // are only counted (the same top n and the same bins, from a pass
        // over a few thousand entries instead of the vocabulary).
        let (in_range, compact) = if fill_exact && n > 0 && n < v {
            let r = super::kernels::nonfill_scan(emwa, fill32, &mut self.nonfill);
            (!r.has_nan && (r.min as f64) >= floor_fill - 1e-5 && r.max <= 0.0, r.n_above >= n)
        } else {
            self.nonfill.clear();
            (n > 0 && n < v && all_in_range(emwa, floor_fill), false)
        };
        if n == 0 || n >= v || !in_range {
            let mut idx = Vec::new();
            select_support(emwa, n, &mut idx, support);
            self.build(emwa, support, floor_fill);
            return;
        }
        self.width = BIN_WIDTH_NATS;
        self.lo = lo;
        let n_bins = ((0.0 - lo) / BIN_WIDTH_NATS).ceil() as usize + 2;
        self.count.clear();
        self.count.resize(n_bins, 0);
        self.sum.clear();
        self.sum.resize(n_bins, 0.0);
        let (sub_count, sub_sum) = (&mut self.sub_count, &mut self.sub_sum);
        sub_count.clear();
        sub_count.resize(n_bins * SUB, 0);
        sub_sum.clear();
        sub_sum.resize(n_bins * SUB, 0.0);
        let inv_w = 1.0 / BIN_WIDTH_NATS;
        // better(a, b): larger value, or equal value and smaller id.
        let better = |a: &(f32, u32), b: &(f32, u32)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
        let cmp = |a: &(f32, u32), b: &(f32, u32)| {
            if better(a, b) {
                std::cmp::Ordering::Less
            } else if better(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        };
        let cap = 4 * n;
        scratch.clear();
        // The worst kept candidate once `n` are kept; anything not better
        // than it cannot be in the top n.
        let mut threshold: Option<(f32, u32)> = None;
        // Entries exactly at the fill value (most of the vocabulary: every
        // token never seen above the noise floor) are only counted here and
        // added to their bin at the end, once a kept candidate at least as
        // good exists (ids only grow, so an equal value never beats it).
        let mut n_fill = 0usize;
        let nonfill = &self.nonfill;
        let mut visit = |id: usize, t: f32, threshold: &mut Option<(f32, u32)>| {
            let b = (((t as f64 - lo) * inv_w) as usize).min(n_bins - 1);
            let k = b * SUB + id % SUB;
            sub_count[k] += 1;
            sub_sum[k] += t as f64;
            let key = (t, id as u32);
            if threshold.is_none_or(|th| better(&key, &th)) {
                scratch.push(key);
                if scratch.len() == cap {
                    scratch.select_nth_unstable_by(n - 1, cmp);
                    scratch.truncate(n);
                    *threshold = Some(scratch[n - 1]);
                }
            }
        };
        if compact {
            n_fill = v - nonfill.len();
            // In chunks: the values and bins first (plain loops that
            // vectorise; every value is in range, so the bin index fits an
            // i32 and truncates as the usize cast does), then the partial
            // histograms, then the candidates, in id order.
            const CH: usize = 256;
            let (mut vals, mut bins) = ([0.0f32; CH], [0u32; CH]);
            let top = (n_bins - 1) as i32;
            for chunk in nonfill.chunks(CH) {
                let m = chunk.len();
                for (val, &id) in vals.iter_mut().zip(chunk) {
                    *val = emwa[id as usize];
                }
                for (bin, &t) in bins[..m].iter_mut().zip(&vals[..m]) {
                    *bin = (((t as f64 - lo) * inv_w) as i32).clamp(0, top) as u32;
                }
                for j in 0..m {
                    let k = bins[j] as usize * SUB + chunk[j] as usize % SUB;
                    sub_count[k] += 1;
                    sub_sum[k] += vals[j] as f64;
                }
                for j in 0..m {
                    let key = (vals[j], chunk[j]);
                    if threshold.is_none_or(|th| better(&key, &th)) {
                        scratch.push(key);
                        if scratch.len() == cap {
                            scratch.select_nth_unstable_by(n - 1, cmp);
                            scratch.truncate(n);
                            threshold = Some(scratch[n - 1]);
                        }
                    }
                }
            }
        } else {
            for (id, &t) in emwa.iter().enumerate() {
                if fill_exact && t == fill32 && threshold.is_some_and(|th| th.0 >= fill32) {
                    n_fill += 1;
                    continue;
                }
                visit(id, t, &mut threshold);
            }
        }
        for (b, (c, s)) in self.count.iter_mut().zip(self.sum.iter_mut()).enumerate() {
            *c = sub_count[b * SUB..(b + 1) * SUB].iter().sum();
            *s = sub_sum[b * SUB..(b + 1) * SUB].iter().sum();
        }
        if n_fill > 0 {
            let b = (((floor_fill - lo) * inv_w) as usize).min(n_bins - 1);
            self.count[b] += n_fill as u32;
            self.sum[b] += n_fill as f64 * floor_fill;
        }
        if scratch.len() > n {
            scratch.select_nth_unstable_by(n - 1, cmp);
            scratch.truncate(n);
        }
        support.clear();
        support.extend(scratch.iter().map(|&(_, id)| id as TokenId));
        support.sort_unstable();
        for &(t, _) in scratch.iter() {
            let b = (((t as f64 - lo) * inv_w) as usize).min(n_bins - 1);
            self.count[b] -= 1;
            self.sum[b] -= t as f64;
        }
        self.collect_occupied();
    }

    /// The occupied bins of the histogram, and a fresh evaluation state.
    fn collect_occupied(&mut self) {
        self.occupied.clear();
        self.n_tokens = 0;
        for (c, s) in self.count.iter().zip(&self.sum) {
            if *c > 0 {
                self.occupied.push((*c as f64, s / *c as f64));
                self.n_tokens += *c as usize;
            }
        }
        self.exact = None;
        self.n_exact = 0;
    }

    /// Exact evaluations of `A(S)` since the last build (the Taylor model
    /// answers the others).
    pub fn n_exact_evals(&self) -> usize {
        self.n_exact
    }

    /// Number of occupied bins (the cost of one evaluation, in inverse
    /// digammas).
    pub fn n_bins(&self) -> usize {
        self.occupied.len()
    }

    /// Number of remainder tokens.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// `A_R(S)`: the summed full-fit alphas of the remainder for total S
    /// (the value of [`LumpModel::eval`]'s exact evaluation, without its
    /// Taylor shortcut).
    pub fn alpha_sum(&self, s: f64) -> f64 {
        self.eval_exact(s).0
    }

    /// The lump's target `psi(A_R(S)) - psi(S)` (nats) and `A_R(S)`.
    pub fn lump_target(&self, s: f64) -> (f64, f64) {
        let a = self.alpha_sum(s);
        (digamma(a) - digamma(s), a)
    }

    /// The naive lump target `ln sum_R exp(t_j)` (nats), for comparison.
    pub fn naive_lump_target(&self) -> f64 {
        let max = self.occupied.iter().map(|o| o.1).fold(f64::NEG_INFINITY, f64::max);
        max + self.occupied.iter().map(|&(c, t)| c * (t - max).exp()).sum::<f64>().ln()
    }

    /// The full-vocabulary maximum-likelihood fit restricted to the support,
    /// solved to convergence through the one-dimensional equation in S
    /// (see [`super::fit::fit_dirichlet_exact`]): returns the support alphas
    /// followed by `A_R` (when the remainder is not empty), or `None` when
    /// no finite Dirichlet matches. Used for the cold start (no previous
    /// alpha to warm-start from).
    pub fn solve_exact(&self, support_targets: &[f64]) -> Option<Vec<f64>> {
        let k = support_targets.len() + usize::from(self.n_tokens > 0);
        if k < 2 || support_targets.iter().any(|t| !t.is_finite()) {
            return None;
        }
        let total = |s: f64| -> f64 {
            let ps = digamma(s);
            support_targets.iter().map(|t| inv_digamma_fast(t + ps)).sum::<f64>() + self.alpha_sum(s)
        };
        // h(u) = ln total(e^u) - u falls from ln K (u -> -inf) through 0.
        let h = |u: f64| total(u.exp()).ln() - u;
        let u_max = (super::fit::ALPHA_MAX * k as f64).ln();
        let (mut lo, mut hi) = (-20.0f64, 0.0f64);
        while h(hi) > 0.0 {
            lo = hi;
            hi += 4.0;
            if hi > u_max {
                return None;
            }
        }
        while h(lo) < 0.0 {
            hi = lo;
            lo -= 4.0;
            if lo < -60.0 {
                return None;
            }
        }
        // Secant steps inside the bracket, bisection when they leave it.
        let (mut h_lo, mut h_hi) = (h(lo), h(hi));
        for _ in 0..100 {
            let mut u = lo - h_lo * (hi - lo) / (h_hi - h_lo);
            if !(u > lo && u < hi) {
                u = 0.5 * (lo + hi);
            }
            let hu = h(u);
            if hu.abs() < 1e-14 || hi - lo < 1e-13 {
                lo = u;
                break;
            }
            if hu > 0.0 {
                lo = u;
                h_lo = hu;
            } else {
                hi = u;
                h_hi = hu;
            }
        }
        let s = lo.exp();
        let ps = digamma(s);
        let mut alpha: Vec<f64> = support_targets.iter().map(|t| inv_digamma(t + ps)).collect();
        if self.n_tokens > 0 {
            alpha.push(self.alpha_sum(s));
        }
        Some(alpha)
    }
}

impl LumpModel for TailModel {
    /// `A(S) = sum_b c_b psi^-1(t_b + psi(S))` and its derivatives: with
    /// `g = psi^-1` and `y_b = t_b + psi(S)`,
    /// `A' = psi'(S) sum c_b g'(y_b)`,
    /// `A'' = sum c_b (g''(y_b) psi'(S)^2 + g'(y_b) psi''(S))`.
    /// `g` and its derivatives come from the table of the module
    /// `inv_digamma_table` (Newton outside its range). Near the
    /// last exact evaluation a Taylor model answers instead.
    fn eval(&mut self, s: f64) -> (f64, f64, f64) {
        // Within 3e-3 (relative) of the last exact evaluation, its
        // second-order Taylor model: the omitted term, A'''(S) d^3 / 6 with
        // |d| <= 3e-3 S, is about 5e-9 A (A is close to linear in S), far
        // below what the fit's tolerance resolves.
        if let Some((s0, a, a1, a2)) = self.exact {
            let d = s - s0;
            if d.abs() <= 3e-3 * s0 {
                return (a + d * (a1 + 0.5 * d * a2), a1 + d * a2, a2);
            }
        }
        let r = self.eval_exact(s);
        self.exact = Some((s, r.0, r.1, r.2));
        self.n_exact += 1;
        r
    }
}

impl TailModel {
    /// [`LumpModel::eval`] at `s` over every occupied bin.
    fn eval_exact(&self, s: f64) -> (f64, f64, f64) {
        let (ps0, ps1, ps2) = polygamma012(s);
        let (mut a, mut a1, mut a2) = (0.0, 0.0, 0.0);
        for &(c, t) in &self.occupied {
            let (x, g1, g2) = inv_digamma_with_derivatives(t + ps0);
            a += c * x;
            a1 += c * g1 * ps1;
            a2 += c * (g2 * ps1 * ps1 + g1 * ps2);
        }
        (a, a1, a2)
    }
}

/// `(psi^-1(y), d/dy, d^2/dy^2)`: the table inside its range; outside,
/// Newton's inverse with `x' = 1 / psi'(x)` and `x'' = -psi''(x) x'^3`.
fn inv_digamma_with_derivatives(y: f64) -> (f64, f64, f64) {
    inv_digamma_interp(y).unwrap_or_else(|| {
        let x = inv_digamma(y);
        let (_, p1, p2) = polygamma012(x);
        let g1 = 1.0 / p1;
        (x, g1, -p2 * g1 * g1 * g1)
    })
}

/// Whether every entry is in `[floor_fill - 1e-5, 0]` (no NaN): lane
/// minima and maxima without an early exit, so that it vectorises.
fn all_in_range(emwa: &[f32], floor_fill: f64) -> bool {
    let (mut lo, mut hi, mut nan) = ([f32::INFINITY; 8], [f32::NEG_INFINITY; 8], false);
    let n_full = emwa.len() / 8 * 8;
    for c in emwa[..n_full].chunks_exact(8) {
        for j in 0..8 {
            lo[j] = if c[j] < lo[j] { c[j] } else { lo[j] };
            hi[j] = if c[j] > hi[j] { c[j] } else { hi[j] };
            nan |= c[j].is_nan();
        }
    }
    let tail = &emwa[n_full..];
    let lo = lo.iter().chain(tail).copied().fold(f32::INFINITY, f32::min);
    let hi = hi.iter().chain(tail).copied().fold(f32::NEG_INFINITY, f32::max);
    nan |= tail.iter().any(|t| t.is_nan());
    !nan && (lo as f64) >= floor_fill - 1e-5 && hi <= 0.0
}

/// Carries alphas from an old support to a new one (both sorted by id, the
/// lump last when `old_has_lump`), conserving the total: tokens in both
/// keep their alpha; tokens entering the support take a share of the old
/// lump in proportion to `tail_alpha(id)` (their alpha under the full fit's
/// tail model); tokens leaving it add their alpha to the new lump.
/// `old_remainder_tail` is the sum of `tail_alpha` over the old remainder.
#[allow(clippy::too_many_arguments)]
pub fn remap(
    old_ids: &[TokenId],
    old_alpha: &[f64],
    old_has_lump: bool,
    new_ids: &[TokenId],
    new_has_lump: bool,
    tail_alpha: &dyn Fn(TokenId) -> f64,
    old_remainder_tail: f64,
    out: &mut Vec<f64>,
) {
    out.clear();
    let old_lump = if old_has_lump { old_alpha[old_ids.len()] } else { old_remainder_tail };
    let share_base = if old_remainder_tail > 0.0 && old_remainder_tail.is_finite() { old_remainder_tail } else { f64::NAN };
    let (mut i, mut taken, mut leaving) = (0usize, 0.0f64, 0.0f64);
    for &id in new_ids {
        while i < old_ids.len() && old_ids[i] < id {
            leaving += old_alpha[i];
            i += 1;
        }
        if i < old_ids.len() && old_ids[i] == id {
            out.push(old_alpha[i]);
            i += 1;
        } else {
            let share = tail_alpha(id) / share_base;
            let share = if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.0 };
            taken += share;
            out.push(old_lump * share);
        }
    }
    leaving += old_alpha[i..old_ids.len()].iter().sum::<f64>();
    if new_has_lump {
        out.push(old_lump * (1.0 - taken).max(0.0) + leaving);
    }
    for a in out.iter_mut() {
        *a = if a.is_finite() { a.clamp(super::fit::ALPHA_MIN, super::fit::ALPHA_MAX) } else { 1.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::super::fit::fit_dirichlet_exact;
    use super::*;

    #[test]
    fn support_is_top_n_sorted_by_id() {
        let emwa = [-3.0f32, -1.0, -1.0, -5.0, -0.5, -2.0];
        let (mut s, mut out) = (Vec::new(), Vec::new());
        select_support(&emwa, 3, &mut s, &mut out);
        assert_eq!(out, vec![1, 2, 4]);
        select_support(&emwa, 10, &mut s, &mut out);
        assert_eq!(out, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn lumped_exact_fit_equals_full_fit_on_the_support() {
        // Targets of a known full Dirichlet over 3000 tokens with a long
        // tail of small alphas, as a language model's vocabulary has.
        let alpha: Vec<f64> = (0..3000).map(|i| 50.0 * (-(i as f64) / 20.0).exp() + 0.02).collect();
        let ps = digamma(alpha.iter().sum());
        let t: Vec<f64> = alpha.iter().map(|&a| digamma(a) - ps).collect();
        let emwa: Vec<f32> = t.iter().map(|&x| x as f32).collect();
        let t32: Vec<f64> = emwa.iter().map(|&x| x as f64).collect();
        let full = fit_dirichlet_exact(&t32).unwrap();
        let (mut s, mut sup) = (Vec::new(), Vec::new());
        select_support(&emwa, 40, &mut s, &mut sup);
        let mut tail = TailModel::default();
        tail.build(&emwa, &sup, -18.42);
        let st: Vec<f64> = sup.iter().map(|&i| t32[i as usize]).collect();
        let lumped = tail.solve_exact(&st).unwrap();
        for (k, &id) in sup.iter().enumerate() {
            let want = full[id as usize];
            assert!(((lumped[k] - want) / want).abs() < 1e-4, "token {id}: {} vs {want}", lumped[k]);
        }
        let rest: f64 = (0..3000).filter(|i| !sup.contains(&(*i as i32))).map(|i| full[i]).sum();
        assert!(((lumped[40] - rest) / rest).abs() < 1e-4, "{} vs {rest}", lumped[40]);
        // The naive target is far too low.
        let s_full: f64 = full.iter().sum();
        let (good, _) = tail.lump_target(s_full);
        assert!(tail.naive_lump_target() < good - 0.4, "{} vs {good}", tail.naive_lump_target());
    }

    #[test]
    fn one_pass_build_matches_select_then_build() {
        let mut d = crate::core::DrawStream::from_state(3);
        // Many ties at the fill value, as the sampler's emwa_logp has.
        // The second fill is exact in f32 (the sampler's): its entries take
        // the counted fast path.
        for fill in [-18.420680743952367, -18.420_681f32 as f64] {
        let emwa: Vec<f32> = (0..5000).map(|i| if i % 3 == 0 { (-18.42 + d.next_f64() * 17.0) as f32 } else { -18.420_681 }).collect();
        for n in [1usize, 5, 128, 1666, 1667, 1700, 4999] {
            let (mut a, mut b) = (TailModel::default(), TailModel::default());
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            select_support(&emwa, n, &mut Vec::new(), &mut sa);
            a.build(&emwa, &sa, fill);
            b.build_with_support(&emwa, n, fill, &mut Vec::new(), &mut sb);
            assert_eq!(sa, sb, "n = {n}");
            assert_eq!(a.n_tokens(), b.n_tokens());
            for s in [10.0, 1e3, 1e5] {
                let (x, y) = (a.alpha_sum(s), b.alpha_sum(s));
                assert!(((x - y) / x).abs() < 1e-9, "n = {n}: {x} vs {y}");
            }
        }
        }
    }

    #[test]
    fn remap_conserves_the_total() {
        let old_ids = [1, 3, 5];
        let old = [2.0, 3.0, 4.0, 10.0];
        let new_ids = [1, 2, 5];
        let mut out = Vec::new();
        remap(&old_ids, &old, true, &new_ids, true, &|_| 1.0, 5.0, &mut out);
        assert_eq!(out.len(), 4);
        assert!((out.iter().sum::<f64>() - old.iter().sum::<f64>()).abs() < 1e-12);
        assert_eq!(out[0], 2.0);
        assert!((out[1] - 2.0).abs() < 1e-12);
        assert_eq!(out[2], 4.0);
    }
}
