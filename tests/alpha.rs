//! The AlphaSampler: seed 000's parameter maps and state thresholds, the
//! COLD-state lookahead on the real model (the KV cache is restored exactly:
//! generation continues as if no lookahead had run), determinism with a
//! seed (Rust API and C API), and the C export's argument checks.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::llama::{last_error, LlamaSampler};
use entropix_sampler::attention::{AttentionCapture, CaptureConfig};
use entropix_sampler::core::{Candidates, Sampler, TokenData, TokenId};
use entropix_sampler::ffi::{
    entropix_alpha_default_params, entropix_alpha_set_lookahead, entropix_attention_eval_callback, entropix_sampler_init_alpha, entropix_sampler_init_greedy,
    state_json_string, LlamaLookahead, ENTROPIX_ERR_INVALID, ENTROPIX_ERR_NULL, ENTROPIX_OK,
};
use entropix_sampler::llama::{Context, ContextOptions, FlashAttention, Model, ModelOptions};
use entropix_sampler::metrics::{AttentionMetrics, AttentionSource, FixedAttention};
use entropix_sampler::samplers::alpha::{AlphaParams, AlphaSampler, LookaheadOutcome, ThermoState};
use entropix_sampler::sys;
use serde_json::Value;

/// One llama context at a time: ggml's threads spin.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PROMPT: &str = "The quick brown fox jumps over the lazy dog. Then the dog wakes up and";

// ---------------------------------------------------------------------------
// Parameter maps and states (no model)
// ---------------------------------------------------------------------------

/// Seed 000's formulas, written out independently of the library.
fn seed_temperature(a: f64) -> f64 {
    0.1 + 1.2 / (1.0 + f64::exp(-1.5 * (a - 1.0)))
}
fn seed_top_k(a: f64) -> f64 {
    10.0 + 190.0 * (f64::atan(a - 1.0) / std::f64::consts::PI + 0.5)
}
fn seed_top_p(a: f64) -> f64 {
    0.85 + 0.1 * (2.0 / (1.0 + f64::exp(-0.8 * a)) - 1.0)
}
fn seed_rep_penalty(a: f64) -> f64 {
    1.0 + 0.3 / (1.0 + f64::exp(-2.0 * (a - 1.0)))
}

fn attn(entropy_bits: f64, n_valid: usize) -> AttentionMetrics {
    AttentionMetrics { entropy_bits, head_entropy_variance_bits2: 0.0, varentropy_bits2: 0.0, agreement: 0.0, interaction_strength: None, n_head: 9, n_valid }
}

/// Runs one apply whose alpha is exactly `alpha` (in [0, 2]): the token half
/// is 0 (one candidate) or 1 (two equal logits), the attention half is
/// `entropy_bits / log2(2)` with two valid cells. Returns the state JSON.
fn step_at(alpha: f64, params: AlphaParams) -> Value {
    let (logits, attn_part) = if alpha <= 1.0 { (vec![0.5f32], alpha) } else { (vec![0.5f32, 0.5], alpha - 1.0) };
    let mut s = AlphaSampler::new(AlphaParams { window: 1, ..params }).unwrap();
    let source: Arc<dyn AttentionSource> = Arc::new(FixedAttention(Some(attn(attn_part, 2))));
    assert!(s.set_attention_source(Some(source)));
    let mut data: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect();
    s.apply(&mut Candidates::new(&mut data)).unwrap();
    let st = s.last_step().unwrap();
    assert_eq!(st.alpha, alpha, "alpha driven exactly");
    assert_eq!(st.alpha_mean, alpha);
    s.state_json()
}

#[test]
fn parameter_maps_equal_the_seed_formulas() {
    for a in [0.0, 0.3, 0.6, 1.0, 1.8, 2.0] {
        let j = step_at(a, AlphaParams { seed: 1, ..AlphaParams::reference() });
        let last = &j["last_step"];
        let f = |k: &str| last[k].as_f64().unwrap();
        assert!((f("temperature") - seed_temperature(a)).abs() < 1e-12, "alpha {a}: temperature {}", f("temperature"));
        assert!((f("top_p") - seed_top_p(a)).abs() < 1e-12, "alpha {a}: top_p");
        assert!((f("rep_penalty") - seed_rep_penalty(a)).abs() < 1e-12, "alpha {a}: rep_penalty");
        // top_k: the seed's real value rounded to the nearest integer.
        assert_eq!(last["top_k"].as_i64().unwrap(), seed_top_k(a).round() as i64, "alpha {a}: top_k");
        assert!((last["top_k"].as_i64().unwrap() as f64 - seed_top_k(a)).abs() <= 0.5);
    }
    // Spot values from the formulas, by hand.
    assert!((seed_temperature(1.0) - 0.7).abs() < 1e-15);
    assert_eq!(seed_top_k(1.0).round(), 105.0);
    assert!((seed_top_p(0.0) - 0.85).abs() < 1e-15);
    assert!((seed_rep_penalty(1.0) - 1.15).abs() < 1e-15);
}

#[test]
fn states_switch_exactly_at_the_thresholds() {
    for (cold, hot) in [(0.6f32, 1.8f32), (0.25, 1.25), (1.0, 1.5)] {
        let p = AlphaParams { cold_point: cold, hot_point: hot, seed: 3, ..AlphaParams::reference() };
        let (c, h) = (cold as f64, hot as f64);
        let state = |a: f64| step_at(a, p)["last_step"]["state"].as_str().unwrap().to_string();
        let below = |x: f64| f64::from_bits(x.to_bits() - 1);
        let above = |x: f64| f64::from_bits(x.to_bits() + 1);
        assert_eq!(state(below(c)), "cold", "just below cold_point {c}");
        assert_eq!(state(c), "mixed", "at cold_point {c}");
        assert_eq!(state(h), "mixed", "at hot_point {h}");
        assert_eq!(state(above(h)), "hot", "just above hot_point {h}");
        assert_eq!(state(0.0), "cold");
        assert_eq!(state(2.0), "hot");
    }
    assert_eq!(ThermoState::of(0.5, 3.0, 1.0), ThermoState::Cold, "COLD is checked first");
}

#[test]
fn without_attention_the_attention_half_is_zero_and_reported() {
    let mut s = AlphaSampler::new(AlphaParams { seed: 5, window: 1, ..AlphaParams::reference() }).unwrap();
    let mut data: Vec<TokenData> = (0..8).map(|i| TokenData::new(i, 0.0)).collect();
    s.apply(&mut Candidates::new(&mut data)).unwrap();
    let j = s.state_json();
    assert_eq!(j["last_step"]["attention_available"], Value::Bool(false));
    assert_eq!(j["last_step"]["alpha"].as_f64().unwrap(), 1.0);
    assert_eq!(j["last_step"]["attention_entropy_norm"].as_f64().unwrap(), 0.0);
    // A source that returns None (no fresh attention) is the same fallback.
    let none: Arc<dyn AttentionSource> = Arc::new(FixedAttention(None));
    s.set_attention_source(Some(none));
    let mut data: Vec<TokenData> = (0..8).map(|i| TokenData::new(i, 0.0)).collect();
    s.apply(&mut Candidates::new(&mut data)).unwrap();
    assert_eq!(s.state_json()["last_step"]["attention_available"], Value::Bool(false));
    // COLD without a context samples and says why no lookahead ran.
    let mut cold = AlphaSampler::new(AlphaParams { seed: 5, cold_point: 3.0, hot_point: 3.5, ..AlphaParams::reference() }).unwrap();
    let mut data: Vec<TokenData> = (0..8).map(|i| TokenData::new(i, i as f32)).collect();
    cold.apply(&mut Candidates::new(&mut data)).unwrap();
    assert_eq!(cold.last_step().unwrap().lookahead, LookaheadOutcome::NoContext);
}

// ---------------------------------------------------------------------------
// The real model
// ---------------------------------------------------------------------------

fn model() -> Model {
    Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap()
}

fn options(capture: &Arc<AttentionCapture>, n_seq_max: u32) -> ContextOptions {
    ContextOptions {
        n_ctx: 512,
        n_batch: 512,
        n_ubatch: 512,
        n_seq_max,
        kv_unified: true,
        flash_attention: FlashAttention::Off,
        cb_eval: Some(entropix_attention_eval_callback as unsafe extern "C" fn(_, _, _) -> _),
        cb_eval_user_data: capture.user_data(),
        no_perf: true,
        ..ContextOptions::default()
    }
}

fn candidates_of(logits: &[f32]) -> Vec<TokenData> {
    logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as TokenId, l)).collect()
}

fn seq_pos_max(ctx: &Context<'_>, seq: i32) -> i32 {
    unsafe { sys::llama_memory_seq_pos_max(sys::llama_get_memory(ctx.as_ptr()), seq) }
}

/// COLD at every step (cold_point above any alpha), three candidates
/// whatever their mass.
fn always_cold(seed: u32) -> AlphaParams {
    AlphaParams { cold_point: 3.0, hot_point: 3.5, lookahead_k: 3, lookahead_p: 1.0, seed, ..AlphaParams::reference() }
}

/// A sampler with the capture as attention source and the lookahead on `ctx`.
fn attached(params: AlphaParams, ctx: &Context<'_>, capture: &Arc<AttentionCapture>) -> AlphaSampler {
    let mut s = AlphaSampler::new(params).unwrap();
    let source: Arc<dyn AttentionSource> = capture.clone();
    s.set_attention_source(Some(source));
    let backend = unsafe { LlamaLookahead::new(ctx.as_ptr(), capture.clone(), 0) }.unwrap();
    backend.check_capacity(params.lookahead_k as usize).unwrap();
    s.set_lookahead(Some(Box::new(backend)));
    s
}

#[test]
fn after_a_lookahead_generation_continues_exactly_as_without_it() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    const STEPS: usize = 12;

    // Run A: lookahead at every step.
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(&capture, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let mut sampler = attached(always_cold(11), &ctx, &capture);
    let mut tokens = prompt.clone();
    let mut logits_a: Vec<Vec<f32>> = vec![ctx.logits(-1).to_vec()];
    for step in 0..STEPS {
        let main_before = seq_pos_max(&ctx, 0);
        let mut cands = candidates_of(logits_a.last().unwrap());
        let mut c = Candidates::new(&mut cands);
        sampler.apply(&mut c).unwrap();
        let token = c.selected_token().unwrap();
        let report = sampler.last_step().unwrap().clone();
        assert_eq!(report.state, ThermoState::Cold);
        assert_eq!(report.lookahead, LookaheadOutcome::Decided, "step {step}: {:?}", sampler.state_json());
        assert!(report.attention.is_some(), "step {step}: the main step's attention was read");
        assert_eq!(report.candidates.len(), 3);
        // The chosen token is the lowest score among the candidates.
        let best = report.candidates.iter().min_by(|a, b| a.score.total_cmp(&b.score)).unwrap();
        assert_eq!(best.token, token);
        assert!(report.candidates.iter().all(|c| c.score.is_finite() && c.attn_entropy_bits > 0.0));
        // The cache: spares empty, main sequence untouched.
        for spare in 1..4 {
            assert_eq!(seq_pos_max(&ctx, spare), -1, "step {step}: spare sequence {spare} not empty");
        }
        assert_eq!(seq_pos_max(&ctx, 0), main_before, "step {step}: main sequence changed");
        let j = sampler.state_json();
        assert_eq!(j["last_step"]["chosen"].as_i64(), Some(token as i64));
        assert_eq!(j["last_step"]["candidates"].as_array().unwrap().len(), 3);
        sampler.accept(token);
        ctx.decode(&[token], tokens.len() as i32, 0, false).unwrap();
        tokens.push(token);
        logits_a.push(ctx.logits(-1).to_vec());
    }
    drop(ctx);

    // Run B: the same tokens, no lookahead.
    let capture_b = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(&capture_b, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let mut logits_b = vec![ctx.logits(-1).to_vec()];
    for (i, &t) in tokens[prompt.len()..].iter().enumerate() {
        ctx.decode(&[t], (prompt.len() + i) as i32, 0, false).unwrap();
        logits_b.push(ctx.logits(-1).to_vec());
    }
    let mut max_diff = 0.0f32;
    let mut bit_identical = true;
    for (step, (a, b)) in logits_a.iter().zip(&logits_b).enumerate() {
        for (x, y) in a.iter().zip(b) {
            max_diff = max_diff.max((x - y).abs());
            bit_identical &= x.to_bits() == y.to_bits();
        }
        assert!(max_diff <= 1e-4, "step {step}: logits differ by {max_diff}");
    }
    eprintln!("lookahead vs none over {STEPS} steps: max |logit difference| = {max_diff:e}, bit-identical: {bit_identical}");
    assert!(bit_identical, "logits are within {max_diff:e} but not bit-identical");
}

#[test]
fn repeated_apply_at_the_same_position_reuses_the_lookahead() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(&capture, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let logits = ctx.logits(-1).to_vec();
    let mut s = attached(always_cold(5), &ctx, &capture);
    let run = |s: &mut AlphaSampler| {
        let mut cands = candidates_of(&logits);
        let mut c = Candidates::new(&mut cands);
        s.apply(&mut c).unwrap();
        (c.selected_token().unwrap(), c.as_slice().iter().map(|t| (t.id, t.logit.to_bits(), t.p.to_bits())).collect::<Vec<_>>())
    };
    let first = run(&mut s);
    let report1 = s.last_step().unwrap().clone();
    let graphs = capture.graphs_done();
    let second = run(&mut s);
    let report2 = s.last_step().unwrap().clone();
    assert_eq!(first, second, "apply twice differs");
    assert_eq!(capture.graphs_done(), graphs, "the second apply decoded again");
    assert!(!report1.lookahead_reused && report2.lookahead_reused);
    assert_eq!(report1.attention, report2.attention, "the main step's attention, not the lookahead rows");
    assert_eq!(report1.alpha, report2.alpha);
    assert_eq!(report1.candidates, report2.candidates);
    // A clone starts without the lookahead (it must not share the host's
    // sequence); attached to the same sequence, it agrees.
    let mut c = s.clone();
    assert!(!c.has_lookahead());
    let backend = unsafe { LlamaLookahead::new(ctx.as_ptr(), capture.clone(), 0) }.unwrap();
    c.set_lookahead(Some(Box::new(backend)));
    assert_eq!(run(&mut c), first);
}

/// The lookahead starts from the token being sampled as the host decoded
/// it, not from the end of the main sequence: a host that decodes three
/// tokens in one batch (speculative decoding's drafts, say) and samples
/// from the first of them gets the lookahead a host that decoded only that
/// token gets. (Guessing `seq_pos_max + 1` looked ahead from after the
/// third token, with the two drafts in view.) The capture still serves the
/// sampled row afterwards.
#[test]
fn the_lookahead_starts_from_the_output_being_sampled() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    let drafts = model.tokenize(" the cat sat", false, false).unwrap();
    assert!(drafts.len() >= 3);
    let drafts = &drafts[..3];
    let n = prompt.len() as i32;

    // A: the three drafts in one batch, sampling from the first.
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(&capture, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    capture.expect_outputs(&[0, 1, 2]);
    let entries: Vec<(TokenId, i32, i32, bool)> = drafts.iter().enumerate().map(|(i, &t)| (t, n + i as i32, 0, true)).collect();
    ctx.decode_entries(&entries).unwrap();
    capture.select_output(Some(0));
    assert_eq!(capture.selected_position(), Ok(Some(n)));
    let row_before = capture.metrics().unwrap();
    let mut s = attached(always_cold(3), &ctx, &capture);
    let mut cands = candidates_of(ctx.logits(0));
    s.apply(&mut Candidates::new(&mut cands)).unwrap();
    let a = s.last_step().unwrap().clone();
    assert_eq!(a.lookahead, LookaheadOutcome::Decided, "{:?}", s.state_json());
    assert_eq!(capture.metrics(), Some(row_before), "the capture serves the sampled row after the lookahead");
    assert_eq!(seq_pos_max(&ctx, 0), n + 2, "main sequence changed");
    drop(ctx);

    // B: the same batch, then the second and third drafts removed (as a
    // host does when it rejects them): the cache holds exactly what A's
    // lookahead may see.
    let capture_b = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(&capture_b, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    capture_b.expect_outputs(&[0, 1, 2]);
    ctx.decode_entries(&entries).unwrap();
    capture_b.select_output(Some(0));
    unsafe { sys::llama_memory_seq_rm(sys::llama_get_memory(ctx.as_ptr()), 0, n + 1, -1) };
    assert_eq!(seq_pos_max(&ctx, 0), n);
    let mut s = attached(always_cold(3), &ctx, &capture_b);
    let mut cands = candidates_of(ctx.logits(0));
    s.apply(&mut Candidates::new(&mut cands)).unwrap();
    let b = s.last_step().unwrap().clone();

    let tokens = |r: &entropix_sampler::samplers::alpha::AlphaStep| r.candidates.iter().map(|c| c.token).collect::<Vec<_>>();
    assert_eq!(tokens(&a), tokens(&b), "same candidates");
    for (x, y) in a.candidates.iter().zip(&b.candidates) {
        // The same cells in view, in other slots: equal up to the order of
        // the sums. Two more cells in view move the entropy by far more.
        assert!((x.attn_entropy_bits - y.attn_entropy_bits).abs() < 1e-6, "token {}: {} vs {} bits", x.token, x.attn_entropy_bits, y.attn_entropy_bits);
        assert!((x.score - y.score).abs() < 1e-6, "token {}: score {} vs {}", x.token, x.score, y.score);
    }
}

/// Generates `steps` tokens with the alpha sampler through the Rust API or
/// through the C API (`llama_sampler_sample`). Returns the tokens and the
/// per-step states.
fn generate(model: &Model, params: AlphaParams, steps: usize, via_c: bool) -> (Vec<TokenId>, Vec<Value>) {
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    let capture = AttentionCapture::new(model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(model, &options(&capture, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let mut out = Vec::new();
    let mut states = Vec::new();
    if via_c {
        let smpl = LlamaSampler::new(unsafe { entropix_sampler_init_alpha(&params) });
        let rc = unsafe { entropix_alpha_set_lookahead(smpl.0, ctx.as_ptr(), Arc::as_ptr(&capture), 0) };
        assert_eq!(rc, 0, "{}", last_error());
        for i in 0..steps {
            let token = unsafe { sys::llama_sampler_sample(smpl.0, ctx.as_ptr(), -1) };
            let json = unsafe { state_json_string(smpl.0) }.unwrap();
            states.push(serde_json::from_str(&json).unwrap());
            out.push(token);
            ctx.decode(&[token], (prompt.len() + i) as i32, 0, false).unwrap();
        }
    } else {
        let mut s = attached(params, &ctx, &capture);
        for i in 0..steps {
            let mut cands = candidates_of(ctx.logits(-1));
            let mut c = Candidates::new(&mut cands);
            s.apply(&mut c).unwrap();
            let token = c.selected_token().unwrap();
            // Through text, as the C API returns it (serde_json's float parsing
            // may differ from the value by an ulp; both sides then agree).
            states.push(serde_json::from_str(&s.state_json().to_string()).unwrap());
            s.accept(token);
            out.push(token);
            ctx.decode(&[token], (prompt.len() + i) as i32, 0, false).unwrap();
        }
    }
    (out, states)
}

#[test]
fn generation_is_deterministic_with_a_seed() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    // Default thresholds (states follow the model), and always-COLD.
    for params in [AlphaParams { seed: 42, ..AlphaParams::reference() }, always_cold(42)] {
        let (a, sa) = generate(&model, params, 16, false);
        let (b, _) = generate(&model, params, 16, false);
        assert_eq!(a, b, "two Rust runs differ");
        let (c, sc) = generate(&model, params, 16, true);
        assert_eq!(a, c, "the C API run differs from the Rust run");
        let names: Vec<&str> = sa.iter().map(|s| s["last_step"]["state"].as_str().unwrap()).collect();
        eprintln!("states with cold_point {}: {names:?}", params.cold_point);
        for (x, y) in sa.iter().zip(&sc) {
            assert_eq!(x["last_step"], y["last_step"], "Rust and C step reports differ");
            assert_eq!(x["last_step"]["attention_available"], Value::Bool(true));
        }
    }
    // A different seed with sampling steps gives another text.
    let (a, _) = generate(&model, AlphaParams { seed: 42, cold_point: -1.0, ..AlphaParams::reference() }, 16, false);
    let (b, _) = generate(&model, AlphaParams { seed: 43, cold_point: -1.0, ..AlphaParams::reference() }, 16, false);
    assert_ne!(a, b, "seeds 42 and 43 gave the same 16 tokens");
}

#[test]
fn c_api_checks_its_arguments() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let cap = Arc::as_ptr(&capture);
    let one_seq = Context::new(&model, &options(&capture, 1)).unwrap();
    unsafe {
        let p = entropix_alpha_default_params();
        assert_eq!(p, AlphaParams::default());
        assert_eq!(entropix_sampler::ffi::entropix_alpha_reference_params(), AlphaParams::reference());
        assert!(!p.lookahead && AlphaParams::reference().lookahead);
        let bad = AlphaParams { lookahead_k: 0, ..p };
        assert!(entropix_sampler_init_alpha(&bad).is_null());
        assert!(last_error().contains("lookahead_k"));
        let alpha = LlamaSampler::new(entropix_sampler_init_alpha(std::ptr::null()));
        assert_eq!(alpha.name(), "alpha");
        // Not ours / not alpha.
        assert_eq!(entropix_alpha_set_lookahead(std::ptr::null_mut(), one_seq.as_ptr(), cap, 0), ENTROPIX_ERR_NULL);
        let greedy = LlamaSampler::new(entropix_sampler_init_greedy());
        assert_eq!(entropix_alpha_set_lookahead(greedy.0, one_seq.as_ptr(), cap, 0), ENTROPIX_ERR_INVALID);
        assert!(last_error().contains("not an alpha sampler"), "{}", last_error());
        let foreign = LlamaSampler::new(sys::llama_sampler_init_greedy());
        assert_eq!(entropix_alpha_set_lookahead(foreign.0, one_seq.as_ptr(), cap, 0), ENTROPIX_ERR_INVALID);
        assert!(last_error().contains("not a sampler of this library"), "{}", last_error());
        // NULL capture, bad main sequence, too few sequences.
        assert_eq!(entropix_alpha_set_lookahead(alpha.0, one_seq.as_ptr(), std::ptr::null(), 0), ENTROPIX_ERR_NULL);
        assert_eq!(entropix_alpha_set_lookahead(alpha.0, one_seq.as_ptr(), cap, 5), ENTROPIX_ERR_INVALID);
        assert_eq!(entropix_alpha_set_lookahead(alpha.0, one_seq.as_ptr(), cap, 0), ENTROPIX_ERR_INVALID);
        assert!(last_error().contains("n_seq_max"), "{}", last_error());
        let state: Value = serde_json::from_str(&state_json_string(alpha.0).unwrap()).unwrap();
        assert_eq!(state["lookahead_attached"], Value::Bool(false));
        // Attach, then detach with a NULL context (the source stays).
        drop(one_seq);
        let ctx = Context::new(&model, &options(&capture, 4)).unwrap();
        assert_eq!(entropix_alpha_set_lookahead(alpha.0, ctx.as_ptr(), cap, 0), ENTROPIX_OK, "{}", last_error());
        let state: Value = serde_json::from_str(&state_json_string(alpha.0).unwrap()).unwrap();
        assert_eq!(state["lookahead_attached"], Value::Bool(true));
        assert_eq!(state["has_attention_source"], Value::Bool(true));
        // A clone (one per parallel slot in llama-server) never shares the
        // context: it starts detached, with the attention source kept.
        let clone = LlamaSampler::new(sys::llama_sampler_clone(alpha.0));
        let state: Value = serde_json::from_str(&state_json_string(clone.0).unwrap()).unwrap();
        assert_eq!(state["lookahead_attached"], Value::Bool(false));
        assert_eq!(state["has_attention_source"], Value::Bool(true));
        assert_eq!(entropix_alpha_set_lookahead(alpha.0, std::ptr::null_mut(), std::ptr::null(), 0), 0);
        let state: Value = serde_json::from_str(&state_json_string(alpha.0).unwrap()).unwrap();
        assert_eq!(state["lookahead_attached"], Value::Bool(false));
        assert_eq!(state["has_attention_source"], Value::Bool(true));
    }
}

#[test]
fn a_busy_spare_sequence_is_never_touched() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(&capture, 4)).unwrap();
    // Sequence 2 holds the host's own tokens.
    ctx.decode(&prompt[..3], 0, 2, false).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let logits = ctx.logits(-1).to_vec();
    let mut s = attached(always_cold(9), &ctx, &capture);
    let mut cands = candidates_of(&logits);
    let mut c = Candidates::new(&mut cands);
    s.apply(&mut c).unwrap();
    assert!(c.selected().is_some(), "falls back to sampling");
    match &s.last_step().unwrap().lookahead {
        LookaheadOutcome::Failed(why) => assert!(why.contains("spare sequence 2"), "{why}"),
        other => panic!("expected a failed lookahead, got {other:?}"),
    }
    assert_eq!(seq_pos_max(&ctx, 2), 2);
    assert_eq!(seq_pos_max(&ctx, 0), prompt.len() as i32 - 1);
}

// ---------------------------------------------------------------------------
// Cost (ignored: run with --ignored --nocapture; numbers, not assertions)
// ---------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Medians (ms) of a plain decode, the COLD apply with lookahead, the same
/// apply without lookahead, and the mean number of candidates decoded, over
/// `steps` generated tokens (the first 5 not timed).
fn bench_run(model: &Model, params: AlphaParams, steps: usize) -> (f64, f64, f64, f64, usize) {
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    let capture = AttentionCapture::new(model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(model, &options(&capture, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let mut s = attached(params, &ctx, &capture);
    let mut plain = AlphaSampler::new(AlphaParams { lookahead: false, ..params }).unwrap();
    let source: Arc<dyn AttentionSource> = capture.clone();
    plain.set_attention_source(Some(source));
    let (mut t_decode, mut t_lookahead, mut t_plain, mut n_cands) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (step, n_past) in (0..steps).zip(prompt.len() as i32..) {
        let logits = ctx.logits(-1).to_vec();
        // The COLD apply without lookahead (sampling only), for reference.
        let mut cands = candidates_of(&logits);
        let t0 = Instant::now();
        plain.apply(&mut Candidates::new(&mut cands)).unwrap();
        let plain_ms = t0.elapsed().as_secs_f64() * 1e3;
        // The COLD apply with the lookahead (decode + scoring + restore).
        let mut cands = candidates_of(&logits);
        let mut c = Candidates::new(&mut cands);
        let t0 = Instant::now();
        s.apply(&mut c).unwrap();
        let look_ms = t0.elapsed().as_secs_f64() * 1e3;
        let report = s.last_step().unwrap();
        assert!(matches!(report.lookahead, LookaheadOutcome::Decided | LookaheadOutcome::SingleCandidate), "{:?}", report.lookahead);
        let decoded = if report.lookahead == LookaheadOutcome::Decided { report.candidates.len() } else { 0 };
        let token = c.selected_token().unwrap();
        s.accept(token);
        plain.accept(token);
        // A plain decode step of the chosen token (logits on, as the host does).
        let t0 = Instant::now();
        ctx.decode(&[token], n_past, 0, false).unwrap();
        let dec_ms = t0.elapsed().as_secs_f64() * 1e3;
        if step >= 5 {
            t_decode.push(dec_ms);
            t_lookahead.push(look_ms);
            t_plain.push(plain_ms);
            n_cands.push(decoded as f64);
        }
    }
    let n = t_decode.len();
    let mean_cands = n_cands.iter().sum::<f64>() / n as f64;
    (median(t_decode), median(t_lookahead), median(t_plain), mean_cands, n)
}

/// Median (ms) of one batched decode of `n` tokens at the same position in
/// sequences 1..=n (copies of sequence 0), with or without outputs.
fn raw_batch_decode(model: &Model, n: usize, outputs: bool) -> f64 {
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    let capture = AttentionCapture::new(model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(model, &options(&capture, 4)).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let n_past = prompt.len() as i32;
    let mut t = Vec::new();
    for _ in 0..30 {
        for s in 1..=n as i32 {
            ctx.copy_sequence(0, s, -1, -1);
        }
        let entries: Vec<(i32, i32, i32, bool)> = (0..n).map(|i| (prompt[i + 1], n_past, i as i32 + 1, outputs)).collect();
        let t0 = Instant::now();
        ctx.decode_entries(&entries).unwrap();
        t.push(t0.elapsed().as_secs_f64() * 1e3);
        for s in 1..=n as i32 {
            ctx.remove_positions(s, -1, -1);
        }
    }
    median(t)
}

#[test]
#[ignore]
fn bench_cold_lookahead_step_against_a_plain_decode() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // What a batch costs on this machine: the floor of the lookahead.
    let one = raw_batch_decode(&model, 1, true);
    let rows: Vec<String> = [(1, false), (2, false), (3, false), (3, true)]
        .iter()
        .map(|&(n, o)| {
            let t = raw_batch_decode(&model, n, o);
            format!("{n} token(s){} {t:.2} ms ({:.2}x)", if o { " with logits" } else { " no outputs" }, t / one)
        })
        .collect();
    eprintln!("[{threads} threads] raw batched decode: 1 token with logits {one:.2} ms; {}", rows.join("; "));
    for (label, params) in [("3 candidates (lookahead_p 1.0)", always_cold(1)), ("default lookahead_p 0.9", AlphaParams { lookahead_p: 0.9, ..always_cold(1) })]
    {
        let (d, l, p, c, n) = bench_run(&model, params, 40);
        eprintln!(
            "[{threads} threads] {label}: medians over {n} steps: plain decode {d:.2} ms; COLD apply with lookahead {l:.2} ms \
             ({:.2}x a plain decode; mean candidates decoded {c:.2}); COLD apply without lookahead {p:.2} ms; \
             COLD step (decode + apply) {:.2} ms = {:.2}x a plain step (decode + apply without lookahead)",
            l / d,
            d + l,
            (d + l) / (d + p)
        );
    }
}
