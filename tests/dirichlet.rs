//! Tests of the adaptive Dirichlet sampler (seed 003): special functions,
//! the Dirichlet fit, temp_tune, the sampler's contract and robustness,
//! profiles and the tuning objective, the C exports, and one end-to-end
//! run on the real model. Everything in nats.
//!
//! The `#[ignore]`d tests at the end are measurements (support-fit error
//! against the full-vocabulary fit, per-token cost) on the real model; run
//! them one at a time:
//! `cargo test --release --test dirichlet -- --ignored --nocapture --test-threads=1`.

mod common;

use std::f64::consts::{LN_2, PI};
use std::sync::Mutex;

use common::llama::{last_error, LlamaSampler};
use entropix_sampler::core::{Candidates, DrawStream, Sampler, TokenData, TokenId};
use entropix_sampler::ffi::{
    entropix_dirichlet_default_params, entropix_dirichlet_load_profile, entropix_sampler_init_dirichlet,
    entropix_sampler_observe_prompt_logits, into_llama_sampler, state_json_string,
};
use entropix_sampler::llama::{Context, ContextOptions, Model, ModelOptions, SamplerChain};
use entropix_sampler::samplers::dirichlet::fit::{fit_dirichlet, fit_dirichlet_exact, FitConfig, FitCorrection};
use entropix_sampler::samplers::dirichlet::gamma::ln_gamma_variate;
use entropix_sampler::samplers::dirichlet::special::*;
use entropix_sampler::samplers::dirichlet::support::{select_support, TailModel};
use entropix_sampler::samplers::dirichlet::temp_tune::{ent_grad_hess, temp_tune, temp_tune_f32, TempTuneConfig};
use entropix_sampler::samplers::dirichlet::{
    cross_entropy_rate, load_profile, replay, save_profile, DirichletParams, DirichletPath, DirichletSampler, Profile,
};
use entropix_sampler::samplers::Greedy;

const ZETA3: f64 = 1.202_056_903_159_594_3;

/// ggml's threads spin: one model at a time in this process.
static ONE_MODEL_AT_A_TIME: Mutex<()> = Mutex::new(());

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn params(seed: u32) -> DirichletParams {
    DirichletParams { seed, ..Default::default() }
}

/// The defaults with the Dirichlet machinery on (emwa_logp, the support
/// fit, the likelihood test), for the tests of that machinery.
fn with_test(seed: u32) -> DirichletParams {
    DirichletParams { dirichlet_test: true, ..params(seed) }
}

fn tokens(logits: &[f32]) -> Vec<TokenData> {
    logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as TokenId, l)).collect()
}

/// Applies `s` to `logits` and returns (selected token, probabilities).
fn step(s: &mut dyn Sampler, logits: &[f32]) -> (TokenId, Vec<f32>) {
    let mut data = tokens(logits);
    let mut c = Candidates::new(&mut data);
    s.apply(&mut c).expect("apply");
    let t = c.selected_token().expect("selected");
    (t, c.as_slice().iter().map(|t| t.p).collect())
}

fn lm_like(n: usize, d: &mut DrawStream) -> Vec<f32> {
    (0..n).map(|_| (d.next_normal() * 3.0) as f32).collect()
}

/// Every number in a JSON value is finite (nulls stand for NaN/inf).
fn assert_json_finite(v: &serde_json::Value, what: &str) {
    match v {
        serde_json::Value::Null => panic!("{what}: a non-finite value (null) in state_json"),
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                // Fields that are null by design before a step / without a lump.
                if x.is_null() && matches!(k.as_str(), "path" | "selected" | "emwa_dir_lump_alpha" | "lump_target_nats") {
                    continue;
                }
                assert_json_finite(x, &format!("{what}.{k}"));
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| assert_json_finite(x, what)),
        serde_json::Value::Number(n) => assert!(n.as_f64().unwrap().is_finite(), "{what}"),
        _ => {}
    }
}

// ---------------------------------------------------------------- special

#[test]
fn digamma_known_values() {
    let g = EULER_GAMMA;
    assert!(rel(digamma(1.0), -g) < 1e-14);
    assert!(rel(digamma(0.5), -g - 2.0 * LN_2) < 1e-14);
    // psi(n) = H_{n-1} - gamma, psi(n + 1/2) = -gamma - 2 ln 2 + sum_{k=1}^n 2/(2k-1).
    let (mut h, mut odd) = (0.0f64, 0.0f64);
    for n in 1..=2000u32 {
        if n == 1 || n % 7 == 0 || (5..=15).contains(&n) {
            assert!(rel(digamma(n as f64), h - g) < 1e-13 || n == 1, "psi({n})");
            assert!(rel(digamma(n as f64 - 0.5), -g - 2.0 * LN_2 + odd) < 1e-13, "psi({n} - 1/2)");
        }
        h += 1.0 / n as f64;
        odd += 2.0 / (2.0 * n as f64 - 1.0);
    }
    // Small and large arguments: psi(x) = -1/x - gamma + zeta(2) x + O(x^2);
    // psi(x) = ln x - 1/(2x) - 1/(12 x^2) + O(x^-4).
    for &x in &[1e-8, 1e-6] {
        assert!(rel(digamma(x), -1.0 / x - g + PI * PI / 6.0 * x) < 1e-13, "psi({x})");
    }
    for &x in &[1e6, 1e9, 1e12] {
        assert!(rel(digamma(x), x.ln() - 0.5 / x - 1.0 / (12.0 * x * x)) < 1e-15, "psi({x})");
    }
}

#[test]
fn trigamma_and_tetragamma_known_values() {
    assert!(rel(trigamma(1.0), PI * PI / 6.0) < 1e-14);
    assert!(rel(trigamma(0.5), PI * PI / 2.0) < 1e-14);
    assert!(rel(tetragamma(1.0), -2.0 * ZETA3) < 1e-14);
    assert!(rel(tetragamma(0.5), -14.0 * ZETA3) < 1e-14);
    // psi'(n) = pi^2/6 - sum_{k<n} 1/k^2; psi''(n) = -2 zeta(3) + 2 sum_{k<n} 1/k^3.
    let (mut s2, mut s3) = (0.0f64, 0.0f64);
    for n in 1..=60u32 {
        assert!(rel(trigamma(n as f64), PI * PI / 6.0 - s2) < 1e-12, "psi'({n})");
        assert!(rel(tetragamma(n as f64), -2.0 * ZETA3 + 2.0 * s3) < 1e-11, "psi''({n})");
        s2 += 1.0 / (n as f64).powi(2);
        s3 += 1.0 / (n as f64).powi(3);
    }
    for &x in &[1e-8, 1e-5] {
        assert!(rel(trigamma(x), 1.0 / (x * x) + PI * PI / 6.0 - 2.0 * ZETA3 * x) < 1e-13, "psi'({x})");
        assert!(rel(tetragamma(x), -2.0 / (x * x * x) - 2.0 * ZETA3) < 1e-13, "psi''({x})");
    }
    for &x in &[1e6, 1e9, 1e12] {
        assert!(rel(trigamma(x), 1.0 / x + 0.5 / (x * x) + 1.0 / (6.0 * x * x * x)) < 1e-15, "psi'({x})");
        assert!(rel(tetragamma(x), -1.0 / (x * x) - 1.0 / (x * x * x) - 0.5 / (x * x * x * x)) < 1e-15, "psi''({x})");
    }
}

#[test]
fn ln_gamma_known_values() {
    assert!(rel(ln_gamma(0.5), 0.5 * PI.ln()) < 1e-14);
    // Zeros of ln Gamma: absolute accuracy.
    assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14, "{} {}", ln_gamma(1.0), ln_gamma(2.0));
    let mut ln_fact = 0.0f64;
    for n in 1..=300u32 {
        // ln Gamma(n + 1) = ln n!
        ln_fact += (n as f64).ln();
        assert!(rel(ln_gamma(n as f64 + 1.0), ln_fact) < 1e-13 || n == 1, "lgamma({})", n + 1);
    }
    for &x in &[1e-8, 1e-4] {
        // ln Gamma(x) = -ln x - gamma x + O(x^2)
        assert!(rel(ln_gamma(x), -x.ln() - EULER_GAMMA * x + PI * PI / 12.0 * x * x) < 1e-13, "lgamma({x})");
    }
    let x = 1e12f64;
    let stirling = (x - 0.5) * x.ln() - x + 0.5 * (2.0 * PI).ln() + 1.0 / (12.0 * x);
    assert!(rel(ln_gamma(x), stirling) < 1e-15);
}

// -------------------------------------------------------------------- fit

/// Mean ln p of `m` draws from Dir(alpha) (computed in log space from the
/// Gamma variates, so tiny components do not underflow).
fn mean_log_p(alpha: &[f64], m: usize, seed: u64) -> Vec<f64> {
    let mut d = DrawStream::from_state(seed);
    let mut acc = vec![0.0; alpha.len()];
    let mut g = vec![0.0; alpha.len()];
    for _ in 0..m {
        for (gi, &a) in g.iter_mut().zip(alpha) {
            *gi = ln_gamma_variate(a, &mut d);
        }
        let max = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + g.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        for (a, gi) in acc.iter_mut().zip(&g) {
            *a += gi - lse;
        }
    }
    acc.iter().map(|a| a / m as f64).collect()
}

#[test]
fn fit_recovers_parameters_from_dirichlet_samples() {
    for (k, alpha) in [vec![0.2, 0.7, 1.5, 4.0, 9.0, 0.05, 2.5], vec![30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.1, 0.1], vec![1.0; 5]].iter().enumerate() {
        let t = mean_log_p(alpha, 40_000, 17 + k as u64);
        let r = fit_dirichlet(&t, None, &FitConfig::default());
        assert!(r.converged, "set {k}: {r:?}");
        for (i, (got, want)) in r.alpha.iter().zip(alpha).enumerate() {
            assert!(rel(*got, *want) < 0.03, "set {k}, alpha[{i}]: {got} vs {want}");
        }
        // The exact solver agrees with the Halley fit on the same statistic,
        // within what the fit's tolerance (residual norm 1e-4 nats) allows:
        // the overall scale of alpha is weakly determined, so a few 1e-3.
        let exact = fit_dirichlet_exact(&t).unwrap();
        for (a, b) in r.alpha.iter().zip(&exact) {
            assert!(rel(*a, *b) < 5e-3, "set {k}: {a} vs exact {b}");
        }
    }
}

#[test]
fn fit_converges_from_cold_and_warm_starts() {
    let alpha: Vec<f64> = (0..129).map(|i| 200.0 * (-(i as f64) / 10.0).exp() + 0.02).collect();
    let ps = digamma(alpha.iter().sum());
    let t: Vec<f64> = alpha.iter().map(|&a| digamma(a) - ps).collect();
    let cold = fit_dirichlet(&t, None, &FitConfig::default());
    assert!(cold.converged && cold.iterations < 140, "{cold:?}");
    let near: Vec<f64> = alpha.iter().map(|a| a * 1.05).collect();
    let warm = fit_dirichlet(&t, Some(&near), &FitConfig::default());
    assert!(warm.converged && warm.iterations < cold.iterations, "{} vs {}", warm.iterations, cold.iterations);
    for (a, b) in warm.alpha.iter().zip(&alpha) {
        assert!(rel(*a, *b) < 1e-4);
    }
}

/// The seed's correction term as written (`+0.5 J^-1 (psi'' * v - ...)`)
/// throws a fit that starts 5% from the answer far off in one step; the
/// second-order term (the default) and plain Newton do not.
#[test]
fn seed_correction_term_diverges_near_the_solution() {
    let alpha = [0.3, 1.0, 2.5, 7.0, 0.05, 12.0];
    let ps = digamma(alpha.iter().sum());
    let t: Vec<f64> = alpha.iter().map(|&a| digamma(a) - ps).collect();
    let near: Vec<f64> = alpha.iter().map(|a| a * 1.05).collect();
    let start = entropix_sampler::samplers::dirichlet::fit::residual_norm(&t, &near);
    let one = |correction| {
        let cfg = FitConfig { correction, max_iters: 1, tol: 0.0, ..Default::default() };
        fit_dirichlet(&t, Some(&near), &cfg).residual_norm
    };
    assert!(one(FitCorrection::Seed) > 10.0 * start, "{} vs {start}", one(FitCorrection::Seed));
    assert!(one(FitCorrection::SecondOrder) < start);
    assert!(one(FitCorrection::Newton) < start);
}

// ---------------------------------------------------------------- temp_tune

fn temp_tune_cases() -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    let mut d = DrawStream::from_state(5);
    for &v in &[5usize, 100, 5000, 49_152] {
        for &sigma in &[0.3, 1.0, 3.0, 8.0] {
            out.push((format!("normal v{v} s{sigma}"), (0..v).map(|_| d.next_normal() * sigma).collect()));
        }
        let mut peaked: Vec<f64> = (0..v).map(|_| d.next_normal()).collect();
        peaked[0] = 25.0;
        out.push((format!("peaked v{v}"), peaked));
        out.push((format!("masked v{v}"), (0..v).map(|i| if i % 3 == 1 { f64::NEG_INFINITY } else { d.next_normal() * 2.0 }).collect()));
    }
    out
}

/// temp_tune reaches targets from 0.1% to 99% of the maximum entropy within
/// 1e-4 nats on 24 distributions. The seed's 10 iterations are not enough
/// for far targets (each step moves T by a factor 0.5..1.5; 40 of these
/// 216 cases miss with 10); 30 reach all of them (with the safeguard, the
/// default: without it the iteration cycles on low targets).
#[test]
fn temp_tune_reaches_targets_across_the_range() {
    let cfg = TempTuneConfig { max_iters: 30, ..Default::default() };
    let mut misses_at_10 = 0;
    for (name, l) in temp_tune_cases() {
        let n = l.iter().filter(|x| x.is_finite()).count() as f64;
        for f in [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
            let target = f * n.ln();
            let r = temp_tune(&l, target, &cfg);
            assert!((r.entropy_nats - target).abs() < 1e-4, "{name}, target {target}: {r:?}");
            let r10 = temp_tune(&l, target, &TempTuneConfig::default());
            misses_at_10 += usize::from((r10.entropy_nats - target).abs() >= 1e-4);
        }
    }
    assert!(misses_at_10 > 0, "10 iterations were enough everywhere: update the docs");
}

/// The sampler's temp_tune (f32 logits, vectorised f32 exponentials, f64
/// sums, warm-started) against the f64 one: on the same cases, started
/// from a cold 1.0 and from warm starts 10% and 50% off the f64 root, it
/// converges wherever the f64 version does, and the true (f64) entropy at
/// its temperature is within 2e-6 nats of the target (the f64 tolerance is
/// 1e-6; measured here: at most 9.6e-7 nats, i.e. within the f64
/// tolerance).
#[test]
fn temp_tune_f32_matches_the_f64_root() {
    let cfg = TempTuneConfig { max_iters: 30, ..Default::default() };
    let mut worst_entropy_error = 0.0f64;
    for (name, l) in temp_tune_cases() {
        let xs: Vec<f32> = l.iter().map(|&x| x as f32).collect();
        let l32: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let n = l.iter().filter(|x| x.is_finite()).count() as f64;
        for f in [0.01, 0.1, 0.5, 0.9] {
            let target = f * n.ln();
            let want = temp_tune(&l32, target, &cfg);
            if !want.converged {
                continue;
            }
            for t0 in [1.0, want.temperature * 1.1, want.temperature * 0.5] {
                let (got, _) = temp_tune_f32(&xs, max, target, &cfg, t0);
                assert!(got.converged, "{name}, target {target}, start {t0}: {got:?}");
                let (h, _, _) = ent_grad_hess(&l32, got.temperature).unwrap();
                worst_entropy_error = worst_entropy_error.max((h - target).abs());
                assert!((h - target).abs() < 2e-6, "{name}, target {target}, start {t0}: H {h} vs {target}");
            }
        }
    }
    println!("worst |H(T_f32) - target| = {worst_entropy_error:.2e} nats");
}

#[test]
fn temp_tune_without_safeguard_can_cycle() {
    let l = temp_tune_cases().into_iter().find(|(n, _)| n == "normal v5000 s0.3").unwrap().1;
    let target = 0.001 * 5000f64.ln();
    let seed_literal = TempTuneConfig { max_iters: 40, safeguard: false, ..Default::default() };
    assert!((temp_tune(&l, target, &seed_literal).entropy_nats - target).abs() > 0.1);
    let safe = TempTuneConfig { max_iters: 40, ..Default::default() };
    assert!((temp_tune(&l, target, &safe).entropy_nats - target).abs() < 1e-4);
}

#[test]
fn entropy_gradient_matches_finite_differences_and_hessian_is_the_seeds() {
    let l = [3.0, 1.0, 0.2, -0.5, -2.0, f64::NEG_INFINITY, 0.7];
    for &t in &[0.2, 1.0, 3.0] {
        let (_, g, hs) = ent_grad_hess(&l, t).unwrap();
        let e = |t| ent_grad_hess(&l, t).unwrap().0;
        let dt = 1e-5 * t;
        let fd = (e(t + dt) - e(t - dt)) / (2.0 * dt);
        assert!((g - fd).abs() < 1e-6 * fd.abs().max(1.0), "T {t}: {g} vs {fd}");
        // The exact second derivative is -(mu3 + 3 mu2) / T^2; the seed
        // writes -(2 mu3 + 3 mu2) / T^2, kept as given.
        let gd = |t| ent_grad_hess(&l, t).unwrap().1;
        let fd2 = (gd(t + dt) - gd(t - dt)) / (2.0 * dt);
        let mu2 = g * t;
        let mu3 = -fd2 * t * t - 3.0 * mu2;
        assert!((hs - (-(2.0 * mu3 + 3.0 * mu2) / (t * t))).abs() < 1e-4 * hs.abs().max(1.0), "T {t}");
    }
}

// ----------------------------------------------------------------- sampler

#[test]
fn sampler_is_deterministic_by_seed() {
    let run = |seed| {
        let mut s = DirichletSampler::new(params(seed)).unwrap();
        let mut d = DrawStream::from_state(9);
        let prompt: Vec<f32> = (0..8).flat_map(|_| lm_like(500, &mut d)).collect();
        assert!(s.observe_prompt_logits(&prompt, 500));
        (0..40)
            .map(|_| {
                let l = lm_like(500, &mut d);
                let (t, _) = step(&mut s, &l);
                s.accept(t);
                t
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn apply_changes_nothing_and_accept_commits() {
    let mut d = DrawStream::from_state(3);
    let mut s = DirichletSampler::new(with_test(1)).unwrap();
    let prompt: Vec<f32> = (0..4).flat_map(|_| lm_like(300, &mut d)).collect();
    s.observe_prompt_logits(&prompt, 300);
    let before = s.state_json();
    let l = lm_like(300, &mut d);
    let a = step(&mut s, &l);
    let b = step(&mut s, &l);
    assert_eq!(a, b);
    assert_eq!(s.state_json(), before, "apply changed the state");
    s.accept(a.0);
    assert_ne!(s.state_json(), before);
    assert_eq!(s.state_json()["steps"], 1);
    // accept without apply: only the RNG moves.
    let after = s.state_json();
    s.accept(5);
    assert_eq!(s.state_json(), after);
}

#[test]
fn reset_is_fresh_and_prompt_initialisation_sets_every_ema() {
    let mut d = DrawStream::from_state(4);
    let mut s = DirichletSampler::new(with_test(2)).unwrap();
    let fresh = s.state_json();
    assert_eq!(fresh["initialised"], false);
    let prompt: Vec<f32> = (0..16).flat_map(|_| lm_like(2000, &mut d)).collect();
    assert!(s.observe_prompt_logits(&prompt, 2000));
    let init = s.state_json();
    assert_eq!(init["initialised"], true);
    assert_json_finite(&init, "after prompt");
    assert!(init["emwa_ent_naked_nats"].as_f64().unwrap() > 1.0);
    assert_eq!(init["emwa_logp_vocab"], 2000);
    assert_eq!(init["emwa_dir_support"], 128);
    assert_eq!(s.emwa_temp(), 1.0);
    let l = lm_like(2000, &mut d);
    let (t, _) = step(&mut s, &l);
    s.accept(t);
    s.reset();
    assert_eq!(s.state_json(), fresh);
}

#[test]
fn every_path_is_reachable() {
    let mut d = DrawStream::from_state(6);
    let prompt: Vec<f32> = (0..8).flat_map(|_| lm_like(400, &mut d)).collect();
    let mut seen = std::collections::HashSet::new();
    let variants = [
        params(1),
        // Inliers: argmax always / never.
        DirichletParams { outlier_bias: -1e6, argmax_bias_nats: 100.0, ..params(1) },
        DirichletParams { outlier_bias: -1e6, argmax_bias_nats: -100.0, ..params(1) },
        // Dirichlet test always fails.
        DirichletParams { dirichlet_test: true, dirichlet_bias_nats: -1e9, ..params(1) },
        // Dirichlet test always passes.
        DirichletParams { dirichlet_test: true, dirichlet_bias_nats: 1e9, ..params(1) },
    ];
    for p in variants {
        let mut s = DirichletSampler::new(p).unwrap();
        s.observe_prompt_logits(&prompt, 400);
        for _ in 0..10 {
            let l = lm_like(400, &mut d);
            let (t, probs) = step(&mut s, &l);
            let sum: f64 = probs.iter().map(|&q| q as f64).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{sum}");
            s.accept(t);
            seen.insert(s.last_path().unwrap());
        }
    }
    for p in [DirichletPath::Dirichlet, DirichletPath::PreTemp, DirichletPath::Argmax, DirichletPath::TopK] {
        assert!(seen.contains(&p), "{p:?} never taken");
    }
}

/// `draw_min_p` drops the tokens below that fraction of the largest
/// probability from the draw (off the argmax path) and from nothing else:
/// the first step's temperature is the same with and without it, the
/// candidates' `p` still sum to 1, and no token of the tail is ever drawn,
/// where without the cut the tail is drawn.
#[test]
fn draw_min_p_cuts_the_tail_from_the_draw_only() {
    let mut d = DrawStream::from_state(31);
    let prompt: Vec<f32> = (0..6).flat_map(|_| lm_like(400, &mut d)).collect();
    let steps: Vec<Vec<f32>> = (0..30).map(|_| lm_like(400, &mut d)).collect();
    let (mut tail_draws_uncut, mut tail_draws_cut) = (0, 0);
    for seed in 0..6 {
        for (ratio, tail_draws) in [(0.0f32, &mut tail_draws_uncut), (0.1, &mut tail_draws_cut)] {
            let mut s = DirichletSampler::new(DirichletParams { draw_min_p: ratio, ..params(seed) }).unwrap();
            s.observe_prompt_logits(&prompt, 400);
            for (i, l) in steps.iter().enumerate() {
                let (t, probs) = step(&mut s, l);
                let sum: f64 = probs.iter().map(|&q| q as f64).sum();
                assert!((sum - 1.0).abs() < 1e-4, "{sum}");
                let max = probs.iter().cloned().fold(0.0f32, f32::max);
                let (cut_p, model_p) = (probs[t as usize], l[t as usize]);
                assert!(cut_p > 0.0, "a token outside the draw was selected");
                // On the pre_temp path, the tail as softmax(logits /
                // pre_temp) ranks it: below 0.1 of the top token's.
                let temp = s.state_json()["last"]["pre_temp"].as_f64().unwrap();
                let top = l.iter().cloned().fold(f32::MIN, f32::max);
                if s.last_path() == Some(DirichletPath::PreTemp) && (((model_p - top) as f64) / temp).exp() < 0.099 {
                    *tail_draws += 1;
                }
                if ratio > 0.0 {
                    assert!(probs.iter().all(|&q| q == 0.0 || q >= 0.1 * max * (1.0 - 1e-6)), "step {i}: a weight under the cut survived");
                }
                if i == 0 {
                    let mut fresh = DirichletSampler::new(DirichletParams { draw_min_p: 0.0, ..params(seed) }).unwrap();
                    fresh.observe_prompt_logits(&prompt, 400);
                    step(&mut fresh, l);
                    assert_eq!(fresh.state_json()["last"]["pre_temp"], s.state_json()["last"]["pre_temp"], "the cut changed the temperature");
                }
                s.accept(t);
            }
        }
    }
    assert!(tail_draws_uncut > 0, "these steps never draw from the tail: the test would not see the cut");
    assert_eq!(tail_draws_cut, 0, "drawn from the tail with the cut ({tail_draws_uncut} without it)");
}

/// `dirichlet_test: false` skips emwa_logp, the fit and the likelihood
/// test: the same tokens, probabilities and temperatures as a run with the
/// test on that never passes, no Dirichlet state, and never the Dirichlet
/// path, even with a threshold that would always pass.
#[test]
fn without_the_dirichlet_test_a_run_matches_one_where_it_never_passes() {
    let mut d = DrawStream::from_state(21);
    let prompt: Vec<f32> = (0..6).flat_map(|_| lm_like(500, &mut d)).collect();
    let steps: Vec<Vec<f32>> = (0..40).map(|_| lm_like(500, &mut d)).collect();
    let run = |p: DirichletParams| {
        let mut s = DirichletSampler::new(p).unwrap();
        s.observe_prompt_logits(&prompt, 500);
        let mut out = Vec::new();
        for l in &steps {
            let (t, probs) = step(&mut s, l);
            s.accept(t);
            let st = s.state_json();
            out.push((t, probs, st["last"]["pre_temp"].as_f64().unwrap(), s.last_path().unwrap(), st["emwa_dir_support"].as_u64().unwrap()));
        }
        out
    };
    let with_test = run(DirichletParams { dirichlet_test: true, dirichlet_bias_nats: -1e9, ..params(5) });
    let without = run(DirichletParams { dirichlet_test: false, ..params(5) });
    let without_always = run(DirichletParams { dirichlet_test: false, dirichlet_bias_nats: 1e9, ..params(5) });
    assert!(with_test.iter().all(|r| r.4 > 0), "with the test the support is fitted");
    for ((a, b), c) in with_test.iter().zip(&without).zip(&without_always) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert_eq!(a.2, b.2);
        assert_eq!(a.3, b.3);
        assert_eq!(b.4, 0, "no Dirichlet state without the test");
        assert_eq!(b, c, "the threshold is not read without the test");
        assert_ne!(b.3, DirichletPath::Dirichlet);
    }
}

#[test]
fn degenerate_inputs_stay_finite() {
    let n = 300;
    let one_hot: Vec<f32> = (0..n).map(|i| if i == 7 { 0.0 } else { f32::NEG_INFINITY }).collect();
    let uniform = vec![0.25f32; n];
    let partly: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { f32::NEG_INFINITY } else { (i % 13) as f32 * 0.3 }).collect();
    let with_nan: Vec<f32> = (0..n).map(|i| if i % 5 == 0 { f32::NAN } else { -(i as f32) * 0.01 }).collect();
    let huge: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 1e30 } else { -1e30 }).collect();
    let plus_inf: Vec<f32> = (0..n).map(|i| if i == 11 { f32::INFINITY } else { 0.0 }).collect();
    let inputs = [&one_hot, &uniform, &partly, &with_nan, &huge, &plus_inf];
    for (order, p) in (0..3).flat_map(|o| [(o, params(3)), (o, with_test(3))]) {
        let mut s = DirichletSampler::new(p).unwrap();
        if order == 1 {
            // Start from a one-hot prompt.
            s.observe_prompt_logits(&one_hot.repeat(3), n);
        }
        for k in 0..60 {
            let input = inputs[(k * (order + 1)) % inputs.len()];
            let (t, probs) = step(&mut s, input);
            assert!(input[t as usize] > f32::NEG_INFINITY && !input[t as usize].is_nan(), "picked an excluded token");
            assert!(probs.iter().all(|q| q.is_finite() && *q >= 0.0));
            if input == &one_hot {
                assert_eq!(t, 7);
            }
            if input == &plus_inf {
                assert_eq!(t, 11);
            }
            s.accept(t);
            assert_json_finite(&s.state_json(), &format!("order {order}, step {k}"));
        }
    }
}

#[test]
fn masked_tokens_are_never_selected_even_in_the_support() {
    let mut d = DrawStream::from_state(8);
    let n = 200;
    // The prompt makes tokens 0..10 the most likely: they fill the support.
    let prompt: Vec<f32> = (0..6).flat_map(|_| (0..n).map(|i| if i < 10 { 5.0 } else { 0.0 }).collect::<Vec<f32>>()).collect();
    // Dirichlet path always, so the sample puts mass on support tokens.
    let p = DirichletParams { dirichlet_bias_nats: 1e9, support_size: 16, ..with_test(5) };
    let mut s = DirichletSampler::new(p).unwrap();
    s.observe_prompt_logits(&prompt, n);
    for _ in 0..200 {
        let l: Vec<f32> = (0..n).map(|i| if i < 10 { f32::NEG_INFINITY } else { (d.next_normal() * 2.0) as f32 }).collect();
        let (t, probs) = step(&mut s, &l);
        assert!(t >= 10, "selected masked token {t}");
        assert!(probs[..10].iter().all(|&q| q == 0.0));
        s.accept(t);
    }
}

#[test]
fn varying_vocabularies_and_ids_are_handled() {
    let mut d = DrawStream::from_state(10);
    let mut s = DirichletSampler::new(with_test(4)).unwrap();
    for &n in &[1usize, 2, 7, 1000, 3, 50_000, 129, 130, 5] {
        let mut data = tokens(&lm_like(n, &mut d));
        data.reverse();
        let mut c = Candidates::new(&mut data);
        s.apply(&mut c).unwrap();
        let t = c.selected_token().unwrap();
        s.accept(t);
        assert_json_finite(&s.state_json(), &format!("n {n}"));
    }
    assert_eq!(s.state_json()["emwa_logp_vocab"], 50_000);
    // Ids beyond the tracked range and negative ids are sampled but not tracked.
    let mut data = vec![TokenData::new(-3, 1.0), TokenData::new(1 << 25, 2.0), TokenData::new(4, 0.5)];
    let mut c = Candidates::new(&mut data);
    s.apply(&mut c).unwrap();
    s.accept(c.selected_token().unwrap());
    assert_eq!(s.state_json()["emwa_logp_vocab"], 50_000);
}

/// emwa_logp through the identity-ordered path (candidates 0..n, the
/// vectorised update into a reused buffer) and through the id-mapped path
/// (the same candidates reversed) agree as the vocabulary grows and
/// shrinks, and after a reset; the emwa_logp update does not depend on the selected token, so
/// both accept the same one.
#[test]
fn emwa_logp_agrees_between_identity_and_mapped_order_across_vocabularies() {
    let mut d = DrawStream::from_state(12);
    let mut a = DirichletSampler::new(with_test(6)).unwrap();
    let mut b = DirichletSampler::new(with_test(6)).unwrap();
    // A reset between (the buffers stay, longer than the new vocabulary).
    for &n in &[300usize, 500, 200, 700, 700, 100, 900, 400, 0, 150, 250, 250, 120] {
        if n == 0 {
            a.reset();
            b.reset();
            continue;
        }
        let logits = lm_like(n, &mut d);
        let mut da = tokens(&logits);
        let mut ca = Candidates::new(&mut da);
        a.apply(&mut ca).unwrap();
        let mut db = tokens(&logits);
        db.reverse();
        let mut cb = Candidates::new(&mut db);
        b.apply(&mut cb).unwrap();
        a.accept(0);
        b.accept(0);
        let (la, lb) = (a.emwa_logp(), b.emwa_logp());
        assert_eq!(la.len(), lb.len(), "n {n}");
        for (i, (&x, &y)) in la.iter().zip(lb).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "n {n} id {i}: {x} vs {y}");
        }
    }
}

#[test]
fn empty_and_all_masked_inputs_are_errors() {
    let mut s = DirichletSampler::new(params(1)).unwrap();
    let mut empty: Vec<TokenData> = Vec::new();
    assert!(s.apply(&mut Candidates::new(&mut empty)).is_err());
    let mut masked = tokens(&[f32::NEG_INFINITY, f32::NAN]);
    let mut c = Candidates::new(&mut masked);
    assert!(s.apply(&mut c).is_err());
    assert!(c.selected().is_none());
    s.accept(0);
    assert_eq!(s.state_json()["initialised"], false);
}

// ------------------------------------------------------ profile and replay

#[test]
fn profiles_round_trip_and_reject_bad_input() {
    let dir = std::env::temp_dir().join(format!("entropix-dirichlet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profile.json");
    let p = DirichletParams { support_size: 64, target_bias_nats: 0.5, outlier_bilinear: [0.5; 16], ..params(42) };
    save_profile(&path, &p, serde_json::json!({"objective_nats": 2.5})).unwrap();
    assert_eq!(load_profile(&path).unwrap(), p);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("entropix-dirichlet-profile") && text.contains("objective_nats"));
    // A bare params object, partial: the rest are defaults.
    std::fs::write(&path, r#"{"support_size": 32}"#).unwrap();
    assert_eq!(load_profile(&path).unwrap(), DirichletParams { support_size: 32, ..Default::default() });
    for bad in [
        r#"{"support_sise": 32}"#,
        r#"{"support_size": 0}"#,
        r#"{"format": "other", "version": 1, "params": {}}"#,
        r#"{"format": "entropix-dirichlet-profile", "version": 9, "params": {}}"#,
        r#"{"emwa_dir_coeff": 1.5}"#,
        "not json",
    ] {
        assert!(Profile::from_json(bad).is_err(), "{bad}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cross_entropy_rate_replays_the_state_machine() {
    let mut d = DrawStream::from_state(12);
    let rows: Vec<Vec<f32>> = (0..30).map(|_| lm_like(800, &mut d)).collect();
    // The "actual" tokens: each row's argmax, so the model predicts them well.
    let toks: Vec<TokenId> = rows.iter().map(|r| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap() as TokenId).collect();
    let p = with_test(3);
    let a = cross_entropy_rate(&p, &rows, &toks).unwrap();
    assert!(a.is_finite() && a > 0.0);
    assert_eq!(a, cross_entropy_rate(&p, &rows, &toks).unwrap());
    // Random tokens are less predictable than the argmax.
    let random: Vec<TokenId> = (0..30).map(|i| (i * 37 % 800) as TokenId).collect();
    assert!(cross_entropy_rate(&p, &rows, &random).unwrap() > a);
    let prompt: Vec<f32> = rows[..5].concat();
    let stats = replay(&p, Some((&prompt, 800)), &rows[5..], &toks[5..]).unwrap();
    assert_eq!(stats.steps, 25);
    assert_eq!(stats.paths.iter().sum::<usize>(), 25);
    assert!(cross_entropy_rate(&p, &rows, &toks[1..]).is_err());
}

// ------------------------------------------------------------------- C ABI

#[test]
fn c_exports_build_load_and_observe() {
    unsafe {
        let defaults = entropix_dirichlet_default_params();
        assert_eq!(defaults, DirichletParams::default());
        // NULL params: the defaults. Invalid params: NULL and a reason.
        let s = LlamaSampler::new(entropix_sampler_init_dirichlet(std::ptr::null()));
        assert_eq!(s.name(), "dirichlet");
        let bad = DirichletParams { emwa_temp_coeff: 2.0, ..defaults };
        assert!(entropix_sampler_init_dirichlet(&bad).is_null());
        assert!(last_error().contains("emwa_temp_coeff"), "{}", last_error());

        // Profiles into an in/out struct: unnamed fields keep their values.
        let dir = std::env::temp_dir().join(format!("entropix-dirichlet-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        std::fs::write(&path, r#"{"format": "entropix-dirichlet-profile", "version": 1, "params": {"support_size": 77}}"#).unwrap();
        let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut inout = DirichletParams { seed: 99, ..defaults };
        assert_eq!(entropix_dirichlet_load_profile(cpath.as_ptr(), &mut inout), 0);
        assert_eq!((inout.support_size, inout.seed), (77, 99));
        std::fs::write(&path, r#"{"support_size": -1}"#).unwrap();
        let before = inout;
        assert_eq!(entropix_dirichlet_load_profile(cpath.as_ptr(), &mut inout), 2);
        assert_eq!(inout, before);
        assert_eq!(entropix_dirichlet_load_profile(std::ptr::null(), &mut inout), 1);
        assert_eq!(entropix_dirichlet_load_profile(cpath.as_ptr(), std::ptr::null_mut()), 1);
        std::fs::remove_dir_all(&dir).ok();

        // Prompt logits through C: ours and using them, ours but not, foreign, NULL.
        let mut d = DrawStream::from_state(2);
        let logits: Vec<f32> = (0..4).flat_map(|_| lm_like(100, &mut d)).collect();
        assert_eq!(entropix_sampler_observe_prompt_logits(s.0, logits.as_ptr(), 4, 100), 0);
        let state = state_json_string(s.0).unwrap();
        assert!(state.contains("\"initialised\":true"), "{state}");
        let greedy = LlamaSampler::new(into_llama_sampler(Box::new(Greedy)));
        assert_eq!(entropix_sampler_observe_prompt_logits(greedy.0, logits.as_ptr(), 4, 100), 2);
        assert!(last_error().contains("does not use prompt logits"));
        let foreign = LlamaSampler::new(entropix_sampler::sys::llama_sampler_init_greedy());
        assert_eq!(entropix_sampler_observe_prompt_logits(foreign.0, logits.as_ptr(), 4, 100), 2);
        assert!(last_error().contains("not an entropix sampler"));
        assert_eq!(entropix_sampler_observe_prompt_logits(std::ptr::null_mut(), logits.as_ptr(), 4, 100), 1);
        assert_eq!(entropix_sampler_observe_prompt_logits(s.0, std::ptr::null(), 4, 100), 1);
        assert_eq!(entropix_sampler_observe_prompt_logits(s.0, logits.as_ptr(), 0, 100), 2);
        assert_eq!(entropix_sampler_observe_prompt_logits(s.0, logits.as_ptr(), 4, -1), 2);
    }
}

// -------------------------------------------------------------- real model

/// Decodes `prompt` with logits for every position and returns them
/// row-major, with the context left after the prompt.
fn prompt_logits(ctx: &mut Context<'_>, prompt: &[TokenId], n_vocab: usize) -> Vec<f32> {
    ctx.decode(prompt, 0, 0, true).unwrap();
    let mut rows = Vec::with_capacity(prompt.len() * n_vocab);
    for i in 0..prompt.len() as i32 {
        rows.extend_from_slice(&ctx.logits(i)[..n_vocab]);
    }
    rows
}

fn context_options() -> ContextOptions {
    ContextOptions { n_ctx: 512, n_batch: 512, n_ubatch: 512, ..ContextOptions::default() }
}

/// Generates `n` tokens with the sampler in a llama.cpp chain, initialised
/// from the logits of every prompt position through the C hook.
fn generate(model: &Model, prompt: &[TokenId], n: usize, seed: u32) -> (Vec<TokenId>, Vec<String>) {
    let n_vocab = model.n_vocab();
    let mut ctx = Context::new(model, &context_options()).unwrap();
    let rows = prompt_logits(&mut ctx, prompt, n_vocab);
    let mut chain = SamplerChain::new(true);
    // SAFETY: a fresh sampler, owned by nothing else.
    unsafe { chain.add(into_llama_sampler(Box::new(DirichletSampler::new(params(seed)).unwrap()))) }.unwrap();
    let rc = unsafe { entropix_sampler_observe_prompt_logits(chain.get(0), rows.as_ptr(), prompt.len() as i32, n_vocab as i32) };
    assert_eq!(rc, 0, "{}", last_error());
    let mut out = Vec::new();
    let mut paths = Vec::new();
    for i in 0..n {
        let t = chain.sample(&ctx, -1);
        out.push(t);
        let state: serde_json::Value =
            serde_json::from_str(&unsafe { state_json_string(chain.get(0)) }.unwrap()).unwrap();
        assert_json_finite(&state, &format!("token {i}"));
        paths.push(state["last"]["path"].as_str().unwrap().to_owned());
        if model.is_eog(t) {
            break;
        }
        ctx.decode(&[t], (prompt.len() + i) as i32, 0, false).unwrap();
    }
    (out, paths)
}

#[test]
fn end_to_end_on_the_real_model_is_deterministic() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    entropix_sampler::llama::set_log_level(entropix_sampler::llama::LogLevel::Error);
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let prompt = model.tokenize("The old lighthouse keeper looked out at the sea and", true, false).unwrap();
    let (a, paths) = generate(&model, &prompt, 20, 31);
    let (b, _) = generate(&model, &prompt, 20, 31);
    assert_eq!(a, b, "same seed, different tokens");
    assert!(a.len() >= 5, "{a:?}");
    let text: String = a.iter().map(|&t| model.token_text(t)).collect();
    eprintln!("dirichlet, seed 31: {text:?}\npaths: {paths:?}");
}

// ------------------------------------------------------------ measurements

/// Records (prompt logits, per-step logits, tokens) for `prompts`, sampling
/// with the default sampler; `n` tokens each.
#[allow(clippy::type_complexity)]
fn record(model: &Model, prompts: &[&str], n: usize) -> Vec<(Vec<f32>, Vec<Vec<f32>>, Vec<TokenId>)> {
    let n_vocab = model.n_vocab();
    let mut out = Vec::new();
    for (k, text) in prompts.iter().enumerate() {
        let prompt = model.tokenize(text, true, false).unwrap();
        let mut ctx = Context::new(model, &context_options()).unwrap();
        let rows = prompt_logits(&mut ctx, &prompt, n_vocab);
        let mut s = DirichletSampler::new(params(100 + k as u32)).unwrap();
        s.observe_prompt_logits(&rows, n_vocab);
        let (mut steps, mut toks) = (Vec::new(), Vec::new());
        let mut last = rows[(prompt.len() - 1) * n_vocab..].to_vec();
        for i in 0..n {
            let (t, _) = step(&mut s, &last);
            s.accept(t);
            steps.push(last.clone());
            toks.push(t);
            if model.is_eog(t) {
                break;
            }
            ctx.decode(&[t], (prompt.len() + i) as i32, 0, false).unwrap();
            last = ctx.logits(-1)[..n_vocab].to_vec();
        }
        out.push((rows, steps, toks));
    }
    out
}

const PROMPTS: [&str; 4] = [
    "The old lighthouse keeper looked out at the sea and",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nWhat are three good reasons to learn a second language?<|im_end|>\n<|im_start|>assistant\n",
    "In 1869, the transcontinental railroad",
];

/// Issue 13, defect 9: the fit error bound, in the suite (the measurement
/// above is ignored). On the default model's distributions, with the
/// default parameters, every step's fit on the support (plus the lump) is
/// within 1e-3 of the exact maximum-likelihood fit over the whole
/// vocabulary, component by component, and so are the lump and the sum
/// (measured: at most 9.0e-5, 2.7e-7 and 4.9e-7).
#[test]
fn support_fit_matches_the_exact_full_vocabulary_fit() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let n_vocab = model.n_vocab();
    let data = record(&model, &PROMPTS[..2], 6);
    drop(model);
    let mut checked = 0;
    for (k, (rows, steps, toks)) in data.iter().enumerate() {
        let mut s = DirichletSampler::new(with_test(300 + k as u32)).unwrap();
        s.observe_prompt_logits(rows, n_vocab);
        for (step, (logits, &tok)) in steps.iter().zip(toks).enumerate() {
            let mut data = tokens(logits);
            s.apply(&mut Candidates::new(&mut data)).unwrap();
            s.accept(tok);
            let t: Vec<f64> = s.emwa_logp().iter().map(|&x| x as f64).collect();
            let full = fit_dirichlet_exact(&t).expect("the exact fit converges");
            let (sup, fit) = s.last_fit();
            let what = format!("prompt {k}, step {step}");
            for (i, &id) in sup.iter().enumerate() {
                assert!(rel(fit[i], full[id as usize]) < 1e-3, "{what}: token {id}: {} vs {}", fit[i], full[id as usize]);
            }
            let in_sup: std::collections::HashSet<TokenId> = sup.iter().copied().collect();
            let rest: f64 = (0..n_vocab).filter(|i| !in_sup.contains(&(*i as TokenId))).map(|i| full[i]).sum();
            assert!(rel(*fit.last().unwrap(), rest) < 1e-3, "{what}: lump {} vs {rest}", fit.last().unwrap());
            assert!(rel(fit.iter().sum(), full.iter().sum()) < 1e-3, "{what}: sum");
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

/// The support fit's error against the full-vocabulary fit, on real
/// distributions of the default model: after every step the sampler's raw
/// fit (support + lump) is compared with the exact maximum-likelihood fit
/// over all 49152 tokens on the same emwa_logp (and with the naive lump
/// target, and with the seed's Halley fit run over the full vocabulary).
#[test]
#[ignore]
fn measure_support_fit_error() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    entropix_sampler::llama::set_log_level(entropix_sampler::llama::LogLevel::Error);
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let n_vocab = model.n_vocab();
    let data = record(&model, &PROMPTS, 24);
    drop(model);
    println!("vocab {n_vocab}; relative errors of alpha vs the exact full-vocabulary fit; medians over steps [max]");
    println!("| N | support alpha (median comp.) | support alpha (max comp.) | lump vs sum of rest | S | naive lump / exact (ratio) | -ln Dir(p) diff, nats | fit iters | us/apply | model p on support |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &(n_sup, correction) in &[(32u32, 0u32), (64, 0), (128, 0), (256, 0), (512, 0), (128, 1), (128, 2)] {
        let (mut med_c, mut max_c, mut lump_e, mut s_e, mut naive_e, mut nll_d, mut iters) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut mass = vec![];
        let mut n_conv = 0usize;
        let mut time = std::time::Duration::ZERO;
        let mut n_apply = 0u32;
        for (k, (rows, steps, toks)) in data.iter().enumerate() {
            let p = DirichletParams { support_size: n_sup, fit_correction: correction, ..with_test(100 + k as u32) };
            let mut s = DirichletSampler::new(p).unwrap();
            s.observe_prompt_logits(rows, n_vocab);
            for (logits, &tok) in steps.iter().zip(toks) {
                let mut data = tokens(logits);
                let t0 = std::time::Instant::now();
                s.apply(&mut Candidates::new(&mut data)).unwrap();
                s.accept(tok);
                time += t0.elapsed();
                n_apply += 1;
                iters.push(s.state_json()["last"]["fit_iterations"].as_f64().unwrap());
                n_conv += usize::from(s.state_json()["last"]["fit_converged"].as_bool().unwrap());
                let t: Vec<f64> = s.emwa_logp().iter().map(|&x| x as f64).collect();
                let Some(full) = fit_dirichlet_exact(&t) else { continue };
                let (sup, fit) = s.last_fit();
                let mut errs: Vec<f64> = sup.iter().enumerate().map(|(i, &id)| rel(fit[i], full[id as usize])).collect();
                errs.sort_by(f64::total_cmp);
                med_c.push(errs[errs.len() / 2]);
                max_c.push(*errs.last().unwrap());
                let in_sup: std::collections::HashSet<TokenId> = sup.iter().copied().collect();
                let rest: f64 = (0..n_vocab).filter(|i| !in_sup.contains(&(*i as TokenId))).map(|i| full[i]).sum();
                lump_e.push(rel(*fit.last().unwrap(), rest));
                let s_full: f64 = full.iter().sum();
                s_e.push(rel(fit.iter().sum(), s_full));
                // The naive lump target, fitted exactly on the same support.
                let mut tail = TailModel::default();
                tail.build(s.emwa_logp(), sup, -18.420680743952367);
                let mut naive_t: Vec<f64> = sup.iter().map(|&id| t[id as usize]).collect();
                naive_t.push(tail.naive_lump_target());
                if let Some(naive) = fit_dirichlet_exact(&naive_t) {
                    naive_e.push(*naive.last().unwrap() / rest);
                }
                // -ln Dir of this step's model distribution, lumped, under
                // the support fit vs the aggregated full fit.
                let lse = {
                    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    m + logits.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln()
                };
                let mut ln_x: Vec<f64> = sup.iter().map(|&id| (logits[id as usize] as f64 - lse).max(-18.420680743952367)).collect();
                let sup_mass: f64 = ln_x.iter().map(|l| l.exp()).sum();
                mass.push(sup_mass);
                ln_x.push((1.0 - sup_mass).max(1e-8).ln());
                let mut agg: Vec<f64> = sup.iter().map(|&id| full[id as usize]).collect();
                agg.push(rest);
                let d1 = entropix_sampler::samplers::dirichlet::gamma::ln_dirichlet_density(&ln_x, fit);
                let d2 = entropix_sampler::samplers::dirichlet::gamma::ln_dirichlet_density(&ln_x, &agg);
                nll_d.push((d1 - d2).abs());
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], *v.last().unwrap())
        };
        let f = |v: &mut Vec<f64>| {
            let (m, x) = med(v);
            format!("{m:.1e} [{x:.1e}]")
        };
        println!(
            "| {n_sup}{} | {} | {} | {} | {} | {} | {} | {} ({n_conv}/{n_apply} conv.) | {:.0} | {} |",
            ["", " seed corr.", " Newton"][correction as usize],
            f(&mut med_c),
            f(&mut max_c),
            f(&mut lump_e),
            f(&mut s_e),
            f(&mut naive_e),
            f(&mut nll_d),
            f(&mut iters),
            time.as_secs_f64() * 1e6 / n_apply as f64,
            {
                let (m, _) = med(&mut mass);
                format!("{m:.3} [min {:.3}]", mass[0])
            }
        );
    }
    // The seed's Halley fit over the whole vocabulary (what the reference
    // does), on the first prompt's initial emwa_logp: time and accuracy.
    let (rows, _, _) = &data[0];
    let mut s = DirichletSampler::new(with_test(1)).unwrap();
    s.observe_prompt_logits(rows, n_vocab);
    let t: Vec<f64> = s.emwa_logp().iter().map(|&x| x as f64).collect();
    let exact = fit_dirichlet_exact(&t).unwrap();
    for correction in [FitCorrection::SecondOrder, FitCorrection::Seed] {
        let t0 = std::time::Instant::now();
        let r = fit_dirichlet(&t, None, &FitConfig { correction, ..Default::default() });
        let el = t0.elapsed();
        let mut errs: Vec<f64> = r.alpha.iter().zip(&exact).map(|(a, b)| rel(*a, *b)).collect();
        errs.sort_by(f64::total_cmp);
        println!(
            "full-vocabulary Halley fit ({correction:?}) from ones: {:.0} ms, {} iterations, converged {}, residual {:.2e}, alpha rel err median {:.1e} max {:.1e}, S rel err {:.1e}",
            el.as_secs_f64() * 1e3,
            r.iterations,
            r.converged,
            r.residual_norm,
            errs[errs.len() / 2],
            errs.last().unwrap(),
            rel(r.alpha.iter().sum(), exact.iter().sum())
        );
    }
    let mut sup = Vec::new();
    select_support(s.emwa_logp(), 128, &mut Vec::new(), &mut sup);
    println!("initial support (128) holds {:.4} of softmax(emwa_logp)", sup.iter().map(|&i| (t[i as usize]).exp()).sum::<f64>());
}

/// The warm-start polish of the fit (`fit_polish_steps`, default on)
/// against the seed's schedule alone (0), on the same real steps
/// (teacher-forced: both samplers accept the recorded tokens): fit
/// iterations, the residual reached, how far emwa_dir moves, and whether
/// the step's decisions (path, Dirichlet test, selected token) change.
#[test]
#[ignore]
fn measure_fit_polish_effect() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    entropix_sampler::llama::set_log_level(entropix_sampler::llama::LogLevel::Error);
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let n_vocab = model.n_vocab();
    let data = record(&model, &PROMPTS, 32);
    drop(model);
    let (mut steps, mut same_path, mut same_test, mut same_token) = (0, 0, 0, 0);
    let (mut iters_seed, mut iters_polish, mut res_seed, mut res_polish, mut dir_rel, mut nll_diff) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (k, (rows, logits, toks)) in data.iter().enumerate() {
        let mut seed_only = DirichletSampler::new(DirichletParams { fit_polish_steps: 0, ..with_test(k as u32) }).unwrap();
        let mut polished = DirichletSampler::new(with_test(k as u32)).unwrap();
        seed_only.observe_prompt_logits(rows, n_vocab);
        polished.observe_prompt_logits(rows, n_vocab);
        for (l, &t) in logits.iter().zip(toks) {
            let (a, _) = step(&mut seed_only, l);
            let (b, _) = step(&mut polished, l);
            seed_only.accept(t);
            polished.accept(t);
            let (ja, jb) = (seed_only.state_json(), polished.state_json());
            let (la, lb) = (&ja["last"], &jb["last"]);
            steps += 1;
            same_path += usize::from(la["path"] == lb["path"]);
            same_test += usize::from(la["use_dirichlet"] == lb["use_dirichlet"]);
            same_token += usize::from(a == b);
            iters_seed.push(la["fit_iterations"].as_f64().unwrap());
            iters_polish.push(lb["fit_iterations"].as_f64().unwrap());
            res_seed.push(la["fit_residual_nats"].as_f64().unwrap());
            res_polish.push(lb["fit_residual_nats"].as_f64().unwrap());
            nll_diff.push((la["dir_nll_nats"].as_f64().unwrap() - lb["dir_nll_nats"].as_f64().unwrap()).abs());
            let ((ids_a, al_a), (ids_b, al_b)) = (seed_only.dirichlet(), polished.dirichlet());
            assert_eq!(ids_a, ids_b, "same support");
            dir_rel.push(al_a.iter().zip(al_b).map(|(x, y)| rel(*x, *y)).fold(0.0, f64::max));
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 9 / 10], v[v.len() - 1])
    };
    println!("{steps} steps, 4 prompts; (median, p90, max)");
    println!("fit iterations: seed schedule {:?}, polished {:?}", med(&mut iters_seed), med(&mut iters_polish));
    println!("final residual norm (nats): seed schedule {:?}, polished {:?}", med(&mut res_seed), med(&mut res_polish));
    println!("emwa_dir, largest relative difference over components: {:?}", med(&mut dir_rel));
    println!("|delta -ln Dir(pre_probs)| (nats): {:?}", med(&mut nll_diff));
    println!("same path {same_path}/{steps}, same Dirichlet test {same_test}/{steps}, same token {same_token}/{steps}");
}

/// Per-token cost of apply + accept on real logits (49152 tokens), against
/// the `dist` sampler in the same run.
#[test]
#[ignore]
fn measure_cost_per_token() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    entropix_sampler::llama::set_log_level(entropix_sampler::llama::LogLevel::Error);
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let n_vocab = model.n_vocab();
    let data = record(&model, &PROMPTS[..2], 32);
    drop(model);
    let mut dist = entropix_sampler::samplers::Dist::new(entropix_sampler::samplers::DistParams { seed: 1 }).unwrap();
    let mut times = Vec::new();
    for (rows, steps, toks) in &data {
        for (logits, &t) in steps.iter().zip(toks) {
            let mut d = tokens(logits);
            let t0 = std::time::Instant::now();
            dist.apply(&mut Candidates::new(&mut d)).unwrap();
            dist.accept(t);
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        let _ = rows;
    }
    times.sort_by(f64::total_cmp);
    println!("dist: median {:.0} us per token", times[times.len() / 2]);
    for &n_sup in &[64u32, 128, 256] {
        let mut times = Vec::new();
        let mut init = Vec::new();
        let (mut fit_iters, mut tt_iters, mut tt_missed) = (Vec::new(), Vec::new(), 0usize);
        for (k, (rows, steps, toks)) in data.iter().enumerate() {
            let mut s = DirichletSampler::new(DirichletParams { support_size: n_sup, ..params(k as u32) }).unwrap();
            let t0 = std::time::Instant::now();
            s.observe_prompt_logits(rows, n_vocab);
            init.push((t0.elapsed().as_secs_f64() * 1e3, rows.len() / n_vocab));
            for (logits, &t) in steps.iter().zip(toks) {
                let mut d = tokens(logits);
                let t0 = std::time::Instant::now();
                s.apply(&mut Candidates::new(&mut d)).unwrap();
                s.accept(t);
                times.push(t0.elapsed().as_secs_f64() * 1e6);
                let last = &s.state_json()["last"];
                fit_iters.push(last["fit_iterations"].as_u64().unwrap());
                tt_iters.push(last["pre_temp_iterations"].as_u64().unwrap());
                tt_missed += usize::from(last["pre_temp_converged"] == false);
            }
        }
        times.sort_by(f64::total_cmp);
        fit_iters.sort_unstable();
        let tt_mean = tt_iters.iter().sum::<u64>() as f64 / tt_iters.len() as f64;
        println!(
            "dirichlet N={n_sup}: median {:.0} us per token (p90 {:.0}); fit iterations median {} (p90 {}, max {}); temp_tune steps mean {tt_mean:.2}, not converged {tt_missed}/{}; prompt init {:?} (ms, positions)",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            fit_iters[fit_iters.len() / 2],
            fit_iters[fit_iters.len() * 9 / 10],
            fit_iters[fit_iters.len() - 1],
            tt_iters.len(),
            init
        );
    }
}

/// Text, paths, temperatures and Dirichlet-test values of 40 tokens on
/// three prompts: the defaults, the reference's target-entropy weights
/// (the temperature runs away), and the Dirichlet path forced on
/// (`dirichlet_ent_weight` 1 / bias 0, and always).
#[test]
#[ignore]
fn measure_text_with_defaults() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    entropix_sampler::llama::set_log_level(entropix_sampler::llama::LogLevel::Error);
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let n_vocab = model.n_vocab();
    let variants: Vec<(&str, DirichletParams)> = vec![
        ("defaults", params(1)),
        ("reference target [1,1,1,1] 8 0", DirichletParams { target_linear: [1.0; 4], target_cross_ent_weight: 0.0, target_inv_temp: 8.0, target_bias_nats: 0.0, ..params(1) }),
        ("dir test e=1 b=0", DirichletParams { dirichlet_ent_weight: 1.0, dirichlet_bias_nats: 0.0, ..with_test(1) }),
        ("dir test always", DirichletParams { dirichlet_bias_nats: 1e9, ..with_test(1) }),
    ];
    for (name, p) in variants {
        println!("== {name}");
        for text in PROMPTS.iter().take(3) {
            let prompt = model.tokenize(text, true, false).unwrap();
            let mut ctx = Context::new(&model, &context_options()).unwrap();
            let rows = prompt_logits(&mut ctx, &prompt, n_vocab);
            let mut s = DirichletSampler::new(p).unwrap();
            s.observe_prompt_logits(&rows, n_vocab);
            let mut last = rows[(prompt.len() - 1) * n_vocab..].to_vec();
            let mut out = String::new();
            let mut paths = std::collections::BTreeMap::<String, usize>::new();
            let (mut temps, mut ents, mut nll, mut thr) = (vec![], vec![], vec![], vec![]);
            for i in 0..40 {
                let (t, _) = step(&mut s, &last);
                s.accept(t);
                let st = s.state_json();
                *paths.entry(st["last"]["path"].as_str().unwrap().to_owned()).or_default() += 1;
                temps.push(st["last"]["pre_temp"].as_f64().unwrap());
                ents.push(st["last"]["target_entropy_nats"].as_f64().unwrap());
                nll.push(st["last"]["dir_nll_nats"].as_f64().unwrap());
                thr.push(st["last"]["dir_nll_threshold_nats"].as_f64().unwrap());
                out.push_str(&model.token_text(t));
                if model.is_eog(t) {
                    break;
                }
                ctx.decode(&[t], (prompt.len() + i) as i32, 0, false).unwrap();
                last = ctx.logits(-1)[..n_vocab].to_vec();
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            println!("  {out:?}\n  paths {paths:?} pre_temp mean {:.2} [{:.2}..{:.2}] target {:.2} nll {:.0} thr {:.0} ce {:.2}", mean(&temps), temps.iter().cloned().fold(f64::INFINITY, f64::min), temps.iter().cloned().fold(0.0, f64::max), mean(&ents), mean(&nll), mean(&thr), s.emwa_cross_ent_nats());
        }
    }
}

const TEXT: &str = "The lighthouse stood at the edge of the cliff for more than a century. Every night its keeper climbed the narrow stairs, trimmed the wick and wound the clockwork that turned the great lens. Ships far out at sea saw the beam sweep across the water and knew where the rocks were. When the keeper grew old, his daughter took over the work. She kept a logbook of every storm, every wreck and every rescue, and the book is still kept in the town museum today. Visitors can read her neat handwriting and imagine the long winter nights, the wind howling around the tower and the waves breaking on the rocks below.";

/// The tuning objective (`replay`'s mean emwa_cross_ent) on an English
/// text for a grid of seed-form target-entropy weights, and for the
/// reference's; the defaults come from here.
#[test]
#[ignore]
fn measure_objective_grid() {
    let _one = ONE_MODEL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    entropix_sampler::llama::set_log_level(entropix_sampler::llama::LogLevel::Error);
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let n_vocab = model.n_vocab();
    let toks = model.tokenize(TEXT, true, false).unwrap();
    let mut ctx = Context::new(&model, &context_options()).unwrap();
    let rows = prompt_logits(&mut ctx, &toks, n_vocab);
    drop(ctx);
    drop(model);
    // (logits of position i, token i+1), the first 16 positions as the prompt.
    let k = 16;
    let seq: Vec<&[f32]> = (k..toks.len() - 1).map(|i| &rows[i * n_vocab..(i + 1) * n_vocab]).collect();
    let actual: Vec<TokenId> = toks[k + 1..].to_vec();
    let prompt = &rows[..k * n_vocab];
    let naked: f64 = seq.iter().zip(&actual).map(|(r, &t)| {
        let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + r.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln();
        lse - r[t as usize] as f64
    }).sum::<f64>() / seq.len() as f64;
    println!("{} steps; model log-loss {naked:.3} nats/token", seq.len());
    let mut results = Vec::new();
    for a in [0.2f32, 0.35, 0.5] {
        for b in [0.2f32, 0.35, 0.5] {
            for off in [0.25f32, 0.75, 1.5] {
                let p = DirichletParams { target_cross_ent_weight: a, target_linear: [0.0, 0.0, b, 0.0], target_bias_nats: off, ..params(1) };
                let st = replay(&p, Some((prompt, n_vocab)), &seq, &actual).unwrap();
                results.push((st.mean_emwa_cross_ent_nats, a, b, off, st.mean_surprise_scaffold_nats));
            }
        }
    }
    let p = DirichletParams { target_linear: [1.0; 4], target_cross_ent_weight: 0.0, target_inv_temp: 8.0, target_bias_nats: 0.0, ..params(1) };
    let st = replay(&p, Some((prompt, n_vocab)), &seq, &actual).unwrap();
    println!("reference target: emwa_cross_ent {:.3} scaffold {:.3}", st.mean_emwa_cross_ent_nats, st.mean_surprise_scaffold_nats);
    results.sort_by(|x, y| x.0.total_cmp(&y.0));
    for r in &results {
        println!("a {} b {} offset {}: emwa_cross_ent {:.3} scaffold surprise {:.3}", r.1, r.2, r.3, r.0, r.4);
    }
}
