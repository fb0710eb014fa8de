//! Oracle tests: our Mirostat v1 and v2 against llama.cpp's, through
//! `llama_sampler_apply` on random candidate arrays over several steps.
//!
//! The RNGs differ (ours is counter-based, llama.cpp's is mt19937), so the
//! selected tokens differ. What is deterministic is compared instead: at
//! every step both samplers get the same input; afterwards ours accepts the
//! token llama.cpp selected (llama.cpp already moved its mu in apply, from
//! that token). Then
//! - the survivors (ids, logits, renormalised probabilities) are the same,
//!   which for v1 means the same k and for v2 the same mu cut;
//! - our mu equals llama.cpp's within 1e-4 bits. llama.cpp's mu is not
//!   readable, so it is reconstructed from what its apply leaves in the
//!   array: `mu -= eta * (-log2 p[selected] - tau)`, the same f32
//!   arithmetic on the same `p` llama.cpp used. For v2 that reconstruction
//!   is itself checked against llama.cpp's cut.
//!
//! Documented divergences (the case stops there, since the two mu then
//! drift apart legitimately), counted and printed:
//! - v1 fit on zero or subnormal f32 probabilities (masked tokens among the
//!   top m, or a logit gap > 87): llama.cpp's ratio gives inf/NaN and, via
//!   an undefined float-to-int conversion, k = 1; ours fits the finite pairs;
//! - v1 k estimate beyond `i32` (or infinite): llama.cpp's `int(k)`
//!   overflows and keeps 1; ours keeps all. That is x86-64's conversion
//!   (INT_MIN out of range); aarch64's saturates, and there llama.cpp
//!   keeps all as we do;
//! - rounding at a boundary: v1 k within 1e-4 (relative) of an integer, or
//!   v2 tokens within 1e-4 bits of mu (llama.cpp sums the softmax in f32,
//!   we sum in f64);
//! - v1 mu drift: that f32 sum leaves llama.cpp's mu up to the tolerance
//!   below from ours, and the fit raises 2^mu to 1/s_hat (20 or more when
//!   s_hat is small), so k can differ by several tokens; the divergence
//!   counts only when llama.cpp's k is the one its own (reconstructed) mu
//!   gives with our fit. On x86-64 most cases that would reach it stop
//!   earlier at a k overflow; on aarch64 they go on (`scripts/test-aarch64.sh`).

// `!(x > y)` admits NaN on purpose, as llama.cpp's comparisons do.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod common;

use common::cases::{random_cases, Case};
use common::compare::{assert_same_survivors, softmax64};
use common::llama::{last_error, Applied, LlamaSampler};
use entropix_sampler::core::{DrawStream, TokenData};
use entropix_sampler::ffi::{
    entropix_mirostat_default_params, entropix_mirostat_v2_default_params, entropix_sampler_init_mirostat,
    entropix_sampler_init_mirostat_v2, sampler_ref,
};
use entropix_sampler::samplers::mirostat::{MirostatParams, MirostatV2Params};
use entropix_sampler::sys;

const CASES: usize = 1200;
const STEPS: usize = 8;
/// Tolerance of boundary rounding (relative for v1's k, bits for v2).
const BORDER_TOL: f64 = 1e-4;

/// The input of `step`: the case itself at step 0, then its logits scaled
/// by a factor in [0.7, 1.3) and its ids permuted (order, ties and -inf
/// kept, so a sorted case stays sorted).
fn step_input(case: &Case, case_index: usize, step: usize) -> Vec<TokenData> {
    let mut tokens = case.tokens.clone();
    if step == 0 {
        return tokens;
    }
    let mut rng = DrawStream::from_state(0xC0FFEE ^ ((case_index as u64) << 20) ^ step as u64);
    let scale = 0.7 + 0.6 * rng.next_f64() as f32;
    let mut ids: Vec<i32> = tokens.iter().map(|t| t.id).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    for (t, id) in tokens.iter_mut().zip(ids) {
        t.logit *= scale;
        t.id = id;
    }
    tokens
}

/// Largest |logit| that llama.cpp's bucket sort (used for arrays over 128
/// candidates) handles: it computes `int(6.4 * logit + 64)`, which
/// overflows beyond about 3.3e8, and such logits land in the lowest bucket,
/// so llama.cpp's "sorted" array is not sorted. Inputs beyond it are scaled
/// down to it (order, ties and -inf kept).
const LLAMA_BUCKET_SAFE: f32 = 1e8;

fn llama_safe(mut tokens: Vec<TokenData>) -> (Vec<TokenData>, bool) {
    let big = tokens.iter().filter(|t| t.logit.is_finite()).fold(0.0f32, |m, t| m.max(t.logit.abs()));
    if tokens.len() <= 128 || big <= LLAMA_BUCKET_SAFE {
        return (tokens, false);
    }
    let scale = LLAMA_BUCKET_SAFE / big;
    tokens.iter_mut().for_each(|t| t.logit *= scale);
    (tokens, true)
}

fn sorted_desc(tokens: &[TokenData]) -> Vec<TokenData> {
    let mut s = tokens.to_vec();
    s.sort_by(|a, b| b.logit.partial_cmp(&a.logit).unwrap());
    s
}

/// Surprise in bits of each token of a descending array (f64 softmax).
fn surprises_bits(sorted: &[TokenData]) -> Vec<f64> {
    let max = sorted[0].logit as f64;
    let z: f64 = sorted.iter().map(|t| (t.logit as f64 - max).exp()).sum();
    sorted.iter().map(|t| (z.ln() - (t.logit as f64 - max)) / std::f64::consts::LN_2).collect()
}

/// The surprise in bits llama.cpp computes for each token of a descending
/// array: p = expf(logit - max) / sum, the sum accumulated in f32 in
/// descending order (so terms below half an ulp of the running sum vanish
/// and every p comes out slightly high on large vocabularies).
fn llama_f32_surprises_bits(sorted: &[TokenData]) -> Vec<f64> {
    let max = sorted[0].logit;
    let e: Vec<f32> = sorted.iter().map(|t| (t.logit - max).exp()).collect();
    let sum: f32 = e.iter().fold(0.0f32, |acc, x| acc + x);
    e.iter().map(|x| -(x / sum).log2() as f64).collect()
}

fn state(s: &LlamaSampler) -> serde_json::Value {
    unsafe { sampler_ref(s.0) }.expect("one of ours").state_json()
}

/// Checks what both applies have in common; returns the token ours must
/// accept (llama.cpp's pick, or a token of ours with the same logit when
/// llama.cpp's pick lies in a tie group that the two cut differently).
fn compare_step(ours: &Applied, theirs: &Applied, what: &str) -> i32 {
    assert_same_survivors(&ours.tokens, &theirs.tokens, 1e-5, what);
    assert!(ours.sorted && theirs.sorted, "{what}: survivors not flagged sorted");
    let sel = ours.selected.unwrap_or_else(|| panic!("{what}: ours selected nothing"));
    assert!(ours.tokens[sel].p > 0.0, "{what}: ours selected a zero-probability token");
    // The p fields themselves, renormalised over the survivors: ours within
    // 1e-6 of the f64 softmax; llama.cpp's within 1e-5 plus the error of its
    // sequential f32 sum (terms below half an ulp of the running sum vanish).
    let by_logit = |v: &[TokenData]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| b.logit.partial_cmp(&a.logit).unwrap().then(a.id.cmp(&b.id)));
        v
    };
    let (a, b) = (by_logit(&ours.tokens), by_logit(&theirs.tokens));
    let exact = softmax64(&a);
    let f32_sum_err = 1e-5 + a.len() as f32 * f32::EPSILON;
    for ((x, y), e) in a.iter().zip(b.iter()).zip(exact) {
        assert!((x.p as f64 - e).abs() <= 1e-6, "{what}: our p {x:?} is not the softmax {e}");
        assert!((x.p - y.p).abs() <= f32_sum_err, "{what}: p differs: ours {x:?} theirs {y:?}");
    }
    let tok = theirs.tokens[theirs.selected.expect("llama.cpp selects")];
    if ours.tokens.iter().any(|t| t.id == tok.id) {
        tok.id
    } else {
        ours.tokens.iter().find(|t| t.logit == tok.logit).unwrap_or_else(|| panic!("{what}: llama.cpp's pick {tok:?} not among ours")).id
    }
}

#[derive(Default, Debug)]
struct Tally {
    steps_compared: usize,
    rescaled: usize,
    max_mu_diff: f32,
    max_mu_diff_exact: f32,
    tie_swaps: usize,
    underflow_fit: usize,
    k_overflow: usize,
    rounding: usize,
    mu_drift: usize,
}

impl Tally {
    fn report(&self, name: &str) {
        eprintln!(
            "{name}: {} steps compared ({} inputs scaled into llama.cpp's bucket-sort range); max |mu ours - mu llama.cpp| {:e} bits ({:e} against llama.cpp's update with exact p); tie swaps {}; divergences: fit on zero/subnormal p {}, k overflow {}, rounding at the boundary {}, mu drift {}",
            self.steps_compared,
            self.rescaled,
            self.max_mu_diff,
            self.max_mu_diff_exact,
            self.tie_swaps,
            self.underflow_fit,
            self.k_overflow,
            self.rounding,
            self.mu_drift
        );
        assert!(self.steps_compared >= CASES * STEPS * 3 / 4, "{name}: too few steps compared: {self:?}");
        assert!(self.rounding <= CASES * STEPS / 200, "{name}: too many rounding divergences: {self:?}");
        assert!(self.mu_drift <= CASES * STEPS / 200, "{name}: too many mu drift divergences: {self:?}");
    }
}

/// The survivor counts llama.cpp's Mirostat v1 can keep with its mu at
/// `mu_ref` (reconstructed, within `mu_tol` of ours) and our fit (`st`,
/// our state after the apply): k = ((s_hat - 1) 2^mu / (1 - N^(1 - s_hat)))^(1 / s_hat)
/// scales by 2^((mu_ref - mu) / s_hat), and is truncated to an integer
/// (one either side for the f32 arithmetic of llama.cpp's fit). None when
/// the two mu are further apart than the tolerance.
fn k_from_their_mu(st: &serde_json::Value, mu_ref: f32, mu_tol: f32) -> Option<std::ops::RangeInclusive<usize>> {
    let (mu, s_hat, k_est) = (st["mu_bits"].as_f64().unwrap(), st["s_hat"].as_f64().unwrap_or(f64::NAN), st["k_estimate"].as_f64().unwrap_or(f64::NAN));
    let drift = mu_ref as f64 - mu;
    if !(drift.abs() <= mu_tol as f64 && s_hat > 0.0 && k_est.is_finite()) {
        return None;
    }
    let theirs = k_est * (drift / s_hat).exp2();
    let (lo, hi) = (k_est.min(theirs), k_est.max(theirs));
    Some((lo.floor() as usize).saturating_sub(1)..=hi.ceil() as usize + 1)
}

fn case_params(i: usize, len: usize) -> (f32, f32, i32, i32) {
    let tau = [5.0f32, 3.0, 8.0, 1.0][i % 4];
    let eta = [0.1f32, 0.5, 1.0][i % 3];
    let m = [100, 100, 2, 10, 400][i % 5];
    let n_vocab = if i.is_multiple_of(2) { len.max(2) as i32 } else { 151_936 };
    (tau, eta, m, n_vocab)
}

#[test]
fn mirostat_v1_matches_llama_cpp() {
    let mut tally = Tally::default();
    for (i, case) in random_cases(0x1111, CASES).iter().enumerate() {
        let (tau, eta, m, n_vocab) = case_params(i, case.tokens.len());
        let seed = i as u32;
        let params = MirostatParams { n_vocab, seed, tau, eta, m };
        let ours = LlamaSampler::new(unsafe { entropix_sampler_init_mirostat(&params) });
        let theirs = LlamaSampler::new(unsafe { sys::llama_sampler_init_mirostat(n_vocab, seed, tau, eta, m) });
        let mut mu_ref = 2.0 * tau;
        let mut mu_tol = 1e-4f32;
        let mut mu_exact = 2.0 * tau;
        for step in 0..STEPS {
            let (input, rescaled) = llama_safe(step_input(case, i, step));
            tally.rescaled += rescaled as usize;
            let what = format!("v1 case {i} ({:?}, n {}, sorted {}, {params:?}) step {step}", case.shape, input.len(), case.sorted);
            let a = ours.apply(&input, case.sorted);
            let b = theirs.apply(&input, case.sorted);
            if a.tokens.len() != b.tokens.len() {
                let st = state(&ours);
                let k_est = st["k_estimate"].as_f64().unwrap_or(f64::INFINITY);
                let sorted = sorted_desc(&input);
                let m_eff = (m as usize).min(sorted.len());
                let max = sorted[0].logit;
                if sorted[..m_eff].iter().any(|t| !(t.logit - max >= -87.0)) {
                    tally.underflow_fit += 1;
                } else if k_est >= 2_147_483_000.0 {
                    tally.k_overflow += 1;
                } else if a.tokens.len().abs_diff(b.tokens.len()) == 1 && (k_est - k_est.round()).abs() <= BORDER_TOL * k_est.max(1.0) {
                    tally.rounding += 1;
                } else if k_from_their_mu(&st, mu_ref, mu_tol).is_some_and(|k| k.contains(&b.tokens.len())) {
                    tally.mu_drift += 1;
                } else {
                    panic!("{what}: survivor count ours {} theirs {} (our state {st})", a.tokens.len(), b.tokens.len());
                }
                break;
            }
            let accept = compare_step(&a, &b, &what);
            let picked = b.tokens[b.selected.unwrap()];
            if accept != picked.id {
                tally.tie_swaps += 1;
            }
            mu_ref -= eta * (-picked.p.log2() - tau);
            // llama.cpp's f32 normalisation error of p moves its mu too.
            let ours_p = a.tokens.iter().find(|t| t.id == accept).unwrap().p;
            mu_tol += eta * (ours_p.log2() - picked.p.log2()).abs();
            // The same update with the exact (f64) p of llama.cpp's survivors.
            let exact_p = softmax64(&b.tokens)[b.selected.unwrap()];
            mu_exact -= eta * (-exact_p.log2() as f32 - tau);
            ours.accept(accept);
            theirs.accept(picked.id);
            let mu = state(&ours)["mu_bits"].as_f64().unwrap() as f32;
            assert!((mu - mu_exact).abs() <= 1e-4, "{what}: mu ours {mu}, llama.cpp's update with exact p {mu_exact}");
            assert!((mu - mu_ref).abs() <= mu_tol, "{what}: mu ours {mu} llama.cpp {mu_ref} (tolerance {mu_tol})");
            tally.max_mu_diff_exact = tally.max_mu_diff_exact.max((mu - mu_exact).abs());
            tally.max_mu_diff = tally.max_mu_diff.max((mu - mu_ref).abs());
            tally.steps_compared += 1;
        }
    }
    tally.report("mirostat v1");
}

#[test]
fn mirostat_v2_matches_llama_cpp() {
    let mut tally = Tally::default();
    for (i, case) in random_cases(0x2222, CASES).iter().enumerate() {
        let (tau, eta, _, _) = case_params(i, case.tokens.len());
        let seed = i as u32;
        let params = MirostatV2Params { seed, tau, eta };
        let ours = LlamaSampler::new(unsafe { entropix_sampler_init_mirostat_v2(&params) });
        let theirs = LlamaSampler::new(unsafe { sys::llama_sampler_init_mirostat_v2(seed, tau, eta) });
        let mut mu_ref = 2.0 * tau;
        let mut mu_tol = 1e-4f32;
        let mut mu_exact = 2.0 * tau;
        for step in 0..STEPS {
            let (input, rescaled) = llama_safe(step_input(case, i, step));
            tally.rescaled += rescaled as usize;
            let what = format!("v2 case {i} ({:?}, n {}, sorted {}, {params:?}) step {step}", case.shape, input.len(), case.sorted);
            let mu_before = state(&ours)["mu_bits"].as_f64().unwrap();
            let a = ours.apply(&input, case.sorted);
            let b = theirs.apply(&input, case.sorted);
            let sorted = sorted_desc(&input);
            let s = surprises_bits(&sorted);
            let s_llama = llama_f32_surprises_bits(&sorted);
            // llama.cpp's cut is consistent with the reconstructed mu (and
            // with its own f32 surprises).
            let (cb, mr) = (b.tokens.len(), mu_ref as f64);
            if s_llama[0] <= mr - 1e-5 {
                assert!(
                    s_llama[cb - 1] <= mr + 1e-5 && (cb == s.len() || s_llama[cb] > mr - 1e-5),
                    "{what}: llama.cpp's cut at {cb} disagrees with the reconstructed mu {mr}"
                );
            }
            if a.tokens.len() != cb {
                // Divergent only where mu lies between the exact surprise
                // of the tokens in between and llama.cpp's f32 one.
                let (lo, hi) = (a.tokens.len().min(cb), a.tokens.len().max(cb));
                let between = |j: usize| {
                    let (x, y) = (s[j].min(s_llama[j]), s[j].max(s_llama[j]));
                    mu_before >= x - BORDER_TOL && mu_before <= y + BORDER_TOL
                };
                if (lo..hi).all(between) {
                    tally.rounding += 1;
                    break;
                }
                panic!("{what}: survivor count ours {} theirs {cb}, mu {mu_before}, surprises {:?} (llama.cpp's f32: {:?})", a.tokens.len(), &s[lo..hi.min(lo + 5)], &s_llama[lo..hi.min(lo + 5)]);
            }
            let accept = compare_step(&a, &b, &what);
            let picked = b.tokens[b.selected.unwrap()];
            if accept != picked.id {
                tally.tie_swaps += 1;
            }
            mu_ref -= eta * (-picked.p.log2() - tau);
            // llama.cpp's f32 normalisation error of p moves its mu too.
            let ours_p = a.tokens.iter().find(|t| t.id == accept).unwrap().p;
            mu_tol += eta * (ours_p.log2() - picked.p.log2()).abs();
            // The same update with the exact (f64) p of llama.cpp's survivors.
            let exact_p = softmax64(&b.tokens)[b.selected.unwrap()];
            mu_exact -= eta * (-exact_p.log2() as f32 - tau);
            ours.accept(accept);
            theirs.accept(picked.id);
            let mu = state(&ours)["mu_bits"].as_f64().unwrap() as f32;
            assert!((mu - mu_exact).abs() <= 1e-4, "{what}: mu ours {mu}, llama.cpp's update with exact p {mu_exact}");
            assert!((mu - mu_ref).abs() <= mu_tol, "{what}: mu ours {mu} llama.cpp {mu_ref} (tolerance {mu_tol})");
            tally.max_mu_diff_exact = tally.max_mu_diff_exact.max((mu - mu_exact).abs());
            tally.max_mu_diff = tally.max_mu_diff.max((mu - mu_ref).abs());
            tally.steps_compared += 1;
        }
    }
    tally.report("mirostat v2");
}

/// Mirostat v1 on masked candidates: with fewer than m + 1 finite
/// candidates llama.cpp's fit divides 0 by 0 and it keeps one token; ours
/// fits the finite ones. Pinned so a change on either side is noticed.
#[test]
fn v1_masked_tail_differs_from_llama_cpp_as_documented() {
    let mut tokens: Vec<TokenData> = (0..300).map(|i| TokenData::new(i, f32::NEG_INFINITY)).collect();
    for (j, l) in [3.0f32, 2.6, 2.3, 2.1, 1.9, 1.8, 1.6, 1.5].iter().enumerate() {
        tokens[j * 31].logit = *l;
    }
    let params = MirostatParams { n_vocab: 32_000, seed: 1, tau: 5.0, eta: 0.1, m: 100 };
    let ours = LlamaSampler::new(unsafe { entropix_sampler_init_mirostat(&params) });
    let theirs = LlamaSampler::new(unsafe { sys::llama_sampler_init_mirostat(32_000, 1, 5.0, 0.1, 100) });
    assert_eq!(theirs.apply(&tokens, false).tokens.len(), 1);
    assert!(ours.apply(&tokens, false).tokens.len() > 1);
}

#[test]
fn c_exports_defaults_null_and_invalid_params() {
    let d = entropix_mirostat_default_params();
    assert_eq!(d, MirostatParams::default());
    assert_eq!((d.tau, d.eta, d.m, d.n_vocab), (5.0, 0.1, 100, 0));
    assert_eq!(entropix_mirostat_v2_default_params(), MirostatV2Params::default());
    let v1 = LlamaSampler::new(unsafe { entropix_sampler_init_mirostat(std::ptr::null()) });
    let v2 = LlamaSampler::new(unsafe { entropix_sampler_init_mirostat_v2(std::ptr::null()) });
    assert_eq!(v1.name(), "mirostat");
    assert_eq!(v2.name(), "mirostat-v2");
    assert_eq!(state(&v1)["mu_bits"].as_f64(), Some(10.0));
    let clone = v2.clone_sampler();
    assert_eq!(state(&clone)["mu_bits"].as_f64(), Some(10.0));
    let bad = MirostatParams { m: 0, ..d };
    assert!(unsafe { entropix_sampler_init_mirostat(&bad) }.is_null());
    assert!(last_error().contains("`m`"), "{}", last_error());
    let bad = MirostatV2Params { tau: f32::NAN, ..MirostatV2Params::default() };
    assert!(unsafe { entropix_sampler_init_mirostat_v2(&bad) }.is_null());
    assert!(last_error().contains("`tau`"), "{}", last_error());
}

/// These oracle cases again with each other SIMD kernel forced: the
/// default run covers only the kernel this machine picks, and the filters'
/// fast paths (window selection, chunked scans, radix sort) have one per
/// instruction set.
#[test]
fn every_simd_path_matches_llama_cpp() {
    common::rerun_on_other_kernels("every_simd_path_matches_llama_cpp", 4);
}
