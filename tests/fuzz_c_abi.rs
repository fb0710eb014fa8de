//! A property-based fuzz harness over the C ABI (issue 13): every sampler
//! constructor with arbitrary parameters, every sampler fed arbitrary arrays
//! (sizes 0 to 262144; NaN, +-inf, +-3e38, duplicate and out-of-range ids;
//! stale `sorted` and `selected`), chains that mix llama.cpp's samplers with
//! ours, and the accessors with arbitrary buffers. The properties:
//!
//! - nothing crashes and no panic reaches C (a caught panic leaves
//!   "internal error" in the last error, which fails the run);
//! - a constructor returns a sampler, or NULL with a message;
//! - after a chain that ends in a selecting sampler of ours, `selected` is
//!   in range and on a logit that is neither NaN nor -inf whenever the array
//!   holds one;
//! - applying one of our samplers twice to the same input gives the same
//!   array (ids, logit and probability bits, size, `sorted`, `selected`).
//!
//! The test suite runs `ENTROPIX_FUZZ_CASES` cases (default 1500, seconds);
//! the long run is
//! `ENTROPIX_FUZZ_CASES=200000 ENTROPIX_FUZZ_SEED=7 cargo test --release --test fuzz_c_abi -- --nocapture`.

mod common;

use std::ffi::c_char;

use common::llama::last_error;
use entropix_sampler::core::TokenData;
use entropix_sampler::ffi;
use entropix_sampler::samplers::filters::{DynamicTemperatureParams, MinPParams, TempExtParams, TopNSigmaParams, TopPParams, TypicalParams};
use entropix_sampler::samplers::alpha::AlphaParams;
use entropix_sampler::samplers::dirichlet::DirichletParams;
use entropix_sampler::samplers::entropix::{EntropixParams, FourModeParams};
use entropix_sampler::samplers::mirostat::{MirostatParams, MirostatV2Params};
use entropix_sampler::samplers::penalties::{DryParams, LengthPenaltyParams, PenaltiesParams, RepetitionDecayParams};
use entropix_sampler::samplers::{DistParams, TemperatureParams, TopKParams};
use entropix_sampler::sys;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// SplitMix64: small, seedable, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn normal(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

const N_VOCAB: i32 = 49152;

/// The whole array of one case, as llama.cpp would hand it over.
struct Case {
    data: Vec<TokenData>,
    sorted: bool,
    selected: i64,
    /// Only finite or -inf logits and valid, distinct ids: what llama.cpp's
    /// own samplers are given in chains (their behaviour on NaN is not ours
    /// to test).
    tame: bool,
}

fn random_case(rng: &mut Rng, large: bool) -> Case {
    let sizes: &[usize] = if large { &[49152, 151936, 262144] } else { &[0, 1, 2, 3, 5, 17, 40, 100, 128, 129, 1000, 4096] };
    let n = rng.pick(sizes);
    let tame = rng.chance(0.5);
    let scale = rng.pick(&[0.01f32, 1.0, 3.0, 30.0]);
    let kind = rng.below(6);
    let mut data: Vec<TokenData> = (0..n)
        .map(|i| {
            let logit = match kind {
                0 => rng.normal() * scale,
                1 => 1.5,                                                             // all equal
                2 if rng.chance(0.95) => f32::NEG_INFINITY,                           // mostly masked
                3 => -(i as f32) * scale,                                             // descending
                4 => (i as f32) * scale,                                              // ascending
                _ => rng.normal() * scale + if rng.chance(0.1) { 20.0 } else { 0.0 }, // peaked
            };
            TokenData { id: i as i32, logit, p: if rng.chance(0.5) { rng.normal() } else { 0.0 } }
        })
        .collect();
    if !tame && n > 0 {
        let wild = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e38, -3e38, f32::MIN_POSITIVE, -0.0];
        for _ in 0..1 + rng.below(n.min(64)) {
            let i = rng.below(n);
            data[i].logit = rng.pick(&wild);
        }
        if rng.chance(0.3) {
            for t in data.iter_mut().filter(|_| rng.chance(0.5)) {
                t.logit = f32::NAN;
            }
        }
        for _ in 0..rng.below(4) {
            let i = rng.below(n);
            let duplicate = data[rng.below(n)].id;
            data[i].id = rng.pick(&[-1, i32::MIN, N_VOCAB, i32::MAX, 0, duplicate]);
        }
    }
    // Shuffle sometimes, so ids and order differ.
    if rng.chance(0.5) {
        for i in (1..n).rev() {
            let j = rng.below(i + 1);
            data.swap(i, j);
        }
    }
    let sorted = rng.chance(0.4);
    let selected = match rng.below(4) {
        0 => -1,
        1 => 0,
        2 => n as i64 + 3,
        _ => rng.below(n.max(1)) as i64,
    };
    Case { data, sorted, selected, tame }
}

/// `T::default()` with some fields set to arbitrary values (through its
/// serde form; a value the field's type cannot hold keeps the default).
fn arbitrary_params<T: Serialize + DeserializeOwned + Default>(rng: &mut Rng) -> T {
    let mut v = serde_json::to_value(T::default()).expect("params serialise");
    if let Value::Object(map) = &mut v {
        let keys: Vec<String> = map.keys().cloned().collect();
        for k in keys {
            if !rng.chance(0.25) {
                continue;
            }
            let old = map[&k].clone();
            let new = arbitrary_like(rng, &old);
            map.insert(k.clone(), new);
            if serde_json::from_value::<T>(v_clone(map)).is_err() {
                map.insert(k, old);
            }
        }
    }
    serde_json::from_value(v).expect("kept deserialisable")
}

fn v_clone(map: &serde_json::Map<String, Value>) -> Value {
    Value::Object(map.clone())
}

fn arbitrary_like(rng: &mut Rng, like: &Value) -> Value {
    match like {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(_) => {
            let f = rng.pick(&[0.0, -0.0, -1.0, 1.0, 0.5, 2.0, 1e-30, -1e-30, 3e38, -3e38, 1e9, -1e9, 4096.0, 4097.0, 65536.0, -2147483648.0]);
            let f = if rng.chance(0.3) { rng.normal() as f64 * 10.0 } else { f };
            if like.is_f64() {
                serde_json::json!(f)
            } else if f.fract() == 0.0 {
                serde_json::json!(f as i64)
            } else {
                serde_json::json!(f.round() as i64)
            }
        }
        Value::Array(xs) => Value::Array(xs.iter().map(|x| if rng.chance(0.3) { arbitrary_like(rng, x) } else { x.clone() }).collect()),
        other => other.clone(),
    }
}

/// Checks a constructor's result: a sampler, or NULL with a message.
fn built(what: &str, smpl: *mut sys::llama_sampler, params: &dyn std::fmt::Debug) -> Option<*mut sys::llama_sampler> {
    let error = last_error();
    assert!(!error.contains("internal error"), "{what}: panic at the C boundary: {error}");
    if smpl.is_null() {
        assert!(!error.is_empty(), "{what}: NULL without a message for {params:?}");
        None
    } else {
        Some(smpl)
    }
}

macro_rules! with_params {
    ($rng:expr, $ty:ty, $init:path) => {{
        let p: $ty = arbitrary_params($rng);
        let s = unsafe { $init(&p) };
        (stringify!($init), s, format!("{p:?}"))
    }};
}

/// One of our samplers, built through the C ABI with arbitrary parameters
/// (`None` when the parameters were rejected, which `built` checked).
fn our_sampler(rng: &mut Rng) -> Option<*mut sys::llama_sampler> {
    let (what, smpl, params) = match rng.below(22) {
        0 => with_params!(rng, AlphaParams, ffi::entropix_sampler_init_alpha),
        1 => with_params!(rng, TemperatureParams, ffi::entropix_sampler_init_temperature),
        2 => ("greedy", ffi::entropix_sampler_init_greedy(), String::new()),
        3 => with_params!(rng, DistParams, ffi::entropix_sampler_init_dist),
        4 => with_params!(rng, TopKParams, ffi::entropix_sampler_init_top_k),
        5 => with_params!(rng, DirichletParams, ffi::entropix_sampler_init_dirichlet),
        6 => with_params!(rng, EntropixParams, ffi::entropix_sampler_init_entropix),
        7 => with_params!(rng, FourModeParams, ffi::entropix_sampler_init_four_mode),
        8 => with_params!(rng, TopPParams, ffi::entropix_sampler_init_top_p),
        9 => with_params!(rng, MinPParams, ffi::entropix_sampler_init_min_p),
        10 => with_params!(rng, TypicalParams, ffi::entropix_sampler_init_typical),
        11 => with_params!(rng, TopNSigmaParams, ffi::entropix_sampler_init_top_n_sigma),
        12 => with_params!(rng, TempExtParams, ffi::entropix_sampler_init_temp_ext),
        13 => with_params!(rng, DynamicTemperatureParams, ffi::entropix_sampler_init_dynamic_temperature),
        14 => with_params!(rng, MirostatParams, ffi::entropix_sampler_init_mirostat),
        15 => with_params!(rng, MirostatV2Params, ffi::entropix_sampler_init_mirostat_v2),
        16 => with_params!(rng, PenaltiesParams, ffi::entropix_sampler_init_penalties),
        17 => with_params!(rng, RepetitionDecayParams, ffi::entropix_sampler_init_repetition_decay),
        18 => {
            let p: LengthPenaltyParams = arbitrary_params(rng);
            let stops: Vec<i32> = (0..rng.below(4)).map(|_| rng.pick(&[2, 0, -1, N_VOCAB + 7])).collect();
            let s = unsafe { ffi::entropix_sampler_init_length_penalty(&p, stops.as_ptr(), stops.len()) };
            ("length_penalty", s, format!("{p:?} {stops:?}"))
        }
        19 => {
            let ids: Vec<i32> = (0..rng.below(6)).map(|_| rng.pick(&[0, 1, 5, -3, i32::MAX])).collect();
            let s = unsafe { ffi::entropix_sampler_init_token_ban(ids.as_ptr(), ids.len()) };
            ("token_ban", s, format!("{ids:?}"))
        }
        20 => {
            let bias: Vec<sys::llama_logit_bias> =
                (0..rng.below(6)).map(|_| sys::llama_logit_bias { token: rng.pick(&[0, 1, 7, -2, N_VOCAB]), bias: rng.pick(&[1.0, -5.0, f32::NEG_INFINITY, f32::NAN]) }).collect();
            let s = unsafe { ffi::entropix_sampler_init_logit_bias(N_VOCAB, bias.len() as i32, bias.as_ptr()) };
            ("logit_bias", s, format!("{} biases", bias.len()))
        }
        _ => {
            // DRY without a vocabulary: only its parameter checks and the
            // NULL-vocabulary error path.
            let p: DryParams = arbitrary_params(rng);
            let s = unsafe { ffi::entropix_sampler_init_dry(std::ptr::null(), 2048, &p, std::ptr::null(), 0) };
            ("dry", s, format!("{p:?}"))
        }
    };
    let out = built(what, smpl, &params)?;
    // Some history, so penalties and mirostat have state.
    for _ in 0..rng.below(5) {
        unsafe { sys::llama_sampler_accept(out, rng.pick(&[0, 1, 2, 3, -1, N_VOCAB + 1])) };
    }
    Some(out)
}

/// One of llama.cpp's samplers (never a selecting one: the chain's end is
/// ours, whose selection is under test).
fn llama_stage(rng: &mut Rng, n_tokens: usize) -> *mut sys::llama_sampler {
    unsafe {
        match rng.below(5) {
            0 => sys::llama_sampler_init_top_k(rng.pick(&[1, 5, 40, 0])),
            1 => sys::llama_sampler_init_top_p(rng.pick(&[0.5, 0.95, 1.0]), 1),
            2 => sys::llama_sampler_init_min_p(rng.pick(&[0.05, 0.2]), 1),
            3 => sys::llama_sampler_init_temp(rng.pick(&[0.5, 1.0, 2.0])),
            _ => {
                // Mask some tokens that may be at the top (stale `sorted`).
                let bias: Vec<sys::llama_logit_bias> =
                    (0..1 + rng.below(3)).map(|_| sys::llama_logit_bias { token: rng.below(n_tokens.max(1)) as i32, bias: f32::NEG_INFINITY }).collect();
                sys::llama_sampler_init_logit_bias(N_VOCAB.max(n_tokens as i32), bias.len() as i32, bias.as_ptr())
            }
        }
    }
}

/// Applies `smpl` to a copy of the case; returns the array afterwards.
fn apply(smpl: *mut sys::llama_sampler, case: &Case) -> (Vec<TokenData>, usize, i64, bool) {
    let mut data = case.data.clone();
    let mut arr = sys::llama_token_data_array { data: data.as_mut_ptr().cast(), size: data.len(), selected: case.selected, sorted: case.sorted };
    unsafe { sys::llama_sampler_apply(smpl, &mut arr) };
    let error = last_error();
    assert!(!error.contains("internal error"), "panic at the C boundary: {error}");
    assert!(arr.size <= case.data.len() || arr.data != data.as_mut_ptr().cast(), "size grew in place");
    let out = if arr.size == 0 { Vec::new() } else { unsafe { std::slice::from_raw_parts(arr.data.cast::<TokenData>(), arr.size) }.to_vec() };
    (out, arr.size, arr.selected, arr.sorted)
}

fn bits(a: &[TokenData]) -> Vec<(i32, u32, u32)> {
    a.iter().map(|t| (t.id, t.logit.to_bits(), t.p.to_bits())).collect()
}

fn admissible(logit: f32) -> bool {
    logit > f32::NEG_INFINITY
}

/// `selected` is in range and admissible whenever an admissible logit
/// exists.
fn check_selection(what: &str, out: &[TokenData], selected: i64) {
    let any = out.iter().any(|t| admissible(t.logit));
    if out.is_empty() {
        return;
    }
    assert!(selected >= 0 && (selected as usize) < out.len(), "{what}: selected {selected} out of 0..{}", out.len());
    if any {
        let l = out[selected as usize].logit;
        assert!(admissible(l), "{what}: selected logit {l} while an admissible one exists");
    }
}

fn n_cases() -> usize {
    std::env::var("ENTROPIX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

fn seed() -> u64 {
    std::env::var("ENTROPIX_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261204)
}

#[test]
fn fuzz_samplers_chains_and_accessors() {
    let mut rng = Rng(seed());
    let cases = n_cases();
    let (mut built_ok, mut rejected, mut chains, mut selections) = (0usize, 0usize, 0usize, 0usize);
    for i in 0..cases {
        // One large vocabulary in 50 cases.
        let case = random_case(&mut rng, i % 50 == 49);
        let Some(ours) = our_sampler(&mut rng) else {
            rejected += 1;
            continue;
        };
        built_ok += 1;
        let name = unsafe { std::ffi::CStr::from_ptr(sys::llama_sampler_name(ours)) }.to_string_lossy().into_owned();
        let what = format!("case {i} ({name}, n {}, sorted {}, selected {})", case.data.len(), case.sorted, case.selected);

        // Alone: apply twice gives the same array.
        let a = apply(ours, &case);
        let b = apply(ours, &case);
        assert_eq!((bits(&a.0), a.1, a.2, a.3), (bits(&b.0), b.1, b.2, b.3), "{what}: two applies differ");
        if a.2 >= 0 {
            assert!((a.2 as usize) < a.0.len(), "{what}: selected {} out of range {}", a.2, a.0.len());
        }

        // The accessors, with arbitrary buffers.
        let len = rng.pick(&[0usize, 1, 2, 16, 4096]);
        let mut buf = vec![1 as c_char; len];
        let ptr = if len == 0 && rng.chance(0.5) { std::ptr::null_mut() } else { buf.as_mut_ptr() };
        let n = unsafe { ffi::entropix_sampler_state_json(ours, ptr, len) };
        assert!(n > 0, "{what}: state_json failed: {}", last_error());
        if len > 0 {
            assert!(buf.contains(&0), "{what}: state_json left no NUL");
        }
        let _ = unsafe { ffi::entropix_last_error_copy(ptr, len) };
        assert!(unsafe { ffi::entropix_sampler_is_ours(ours) });
        if unsafe { ffi::entropix_sampler_needs_attention(ours) } {
            assert_eq!(unsafe { ffi::entropix_sampler_set_attention(ours, std::ptr::null()) }, 0, "{what}: {}", last_error());
        }
        // The array holds what the two sizes promise (the contract); the
        // sizes themselves may be invalid.
        let (n_positions, n_vocab) = (rng.pick(&[0, 1, 2, -1]), rng.pick(&[0, 7, -7, 3]));
        let n_values = (n_positions.max(0) * n_vocab.max(0)) as usize;
        let logits: Vec<f32> = (0..n_values).map(|_| rng.pick(&[0.0, 1.0, 5.0, f32::NAN, f32::NEG_INFINITY])).collect();
        let _ = unsafe { ffi::entropix_sampler_observe_prompt_logits(ours, logits.as_ptr(), n_positions, n_vocab) };
        assert!(!last_error().contains("internal error"), "{what}: {}", last_error());

        // In a chain behind llama.cpp's samplers (tame input only) and
        // other samplers of ours, ending in a selecting sampler of ours.
        let chain = unsafe { sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params()) };
        // llama.cpp's samplers assert on an empty array (GGML_ASSERT).
        if case.tame && !case.data.is_empty() {
            for _ in 0..rng.below(3) {
                unsafe { sys::llama_sampler_chain_add(chain, llama_stage(&mut rng, case.data.len())) };
            }
        }
        unsafe { sys::llama_sampler_chain_add(chain, ours) };
        let last = if unsafe { selects(ours) } {
            None
        } else {
            let pick = rng.below(3);
            let s = unsafe {
                match pick {
                    0 => ffi::entropix_sampler_init_greedy(),
                    1 => ffi::entropix_sampler_init_dist(&DistParams { seed: rng.next() as u32 }),
                    _ => ffi::entropix_sampler_init_mirostat_v2(&MirostatV2Params::default()),
                }
            };
            assert!(!s.is_null(), "{}", last_error());
            unsafe { sys::llama_sampler_chain_add(chain, s) };
            Some(s)
        };
        let (out, _, selected, _) = apply(chain, &case);
        check_selection(&format!("{what}, chain ending in {}", if last.is_some() { "a selector" } else { "it" }), &out, selected);
        chains += 1;
        selections += usize::from(selected >= 0);
        // A clone of the chain gives the same selection for samplers that
        // draw nothing; draws may differ in llama.cpp's RNG-based stages.
        let copy = unsafe { sys::llama_sampler_clone(chain) };
        assert!(!copy.is_null());
        unsafe {
            sys::llama_sampler_accept(chain, out.first().map_or(0, |t| t.id));
            sys::llama_sampler_reset(copy);
            sys::llama_sampler_free(copy);
            sys::llama_sampler_free(chain);
        }
    }
    eprintln!("fuzz: {cases} cases (seed {}): {built_ok} samplers built, {rejected} parameter sets rejected with a message, {chains} chains, {selections} selections checked", seed());
    assert!(built_ok > cases / 4 && rejected > 0, "the parameter generator must produce both valid and invalid sets");
}

/// True for our samplers that select a token.
///
/// # Safety
/// `smpl` is one of ours.
unsafe fn selects(smpl: *mut sys::llama_sampler) -> bool {
    let probe: Vec<TokenData> = (0..4).map(|i| TokenData { id: i, logit: i as f32, p: 0.0 }).collect();
    let mut data = probe.clone();
    let mut arr = sys::llama_token_data_array { data: data.as_mut_ptr().cast(), size: 4, selected: -1, sorted: false };
    let clone = sys::llama_sampler_clone(smpl);
    sys::llama_sampler_apply(clone, &mut arr);
    sys::llama_sampler_free(clone);
    arr.selected >= 0
}

#[test]
fn capture_exports_reject_bad_arguments() {
    let mut rng = Rng(seed() ^ 1);
    for _ in 0..200 {
        let idx: Vec<i32> = (0..rng.below(5)).map(|_| rng.pick(&[-1, 0, 3, i32::MAX])).collect();
        let ptr = if rng.chance(0.2) { std::ptr::null() } else { idx.as_ptr() };
        unsafe {
            assert_eq!(ffi::entropix_attention_capture_expect_outputs(std::ptr::null(), ptr, idx.len()), ffi::ENTROPIX_ERR_NULL);
            assert_eq!(ffi::entropix_attention_capture_expect_batch(std::ptr::null(), ptr, idx.len(), rng.pick(&[-1, 0, 4])), ffi::ENTROPIX_ERR_NULL);
            assert_eq!(ffi::entropix_attention_capture_select_output(std::ptr::null(), rng.pick(&[-1, 0, 5])), ffi::ENTROPIX_ERR_NULL);
            let mut m = ffi::AttentionMetricsOut::default();
            assert_eq!(ffi::entropix_attention_capture_metrics(std::ptr::null(), &mut m), ffi::ENTROPIX_ERR_NULL);
            assert!(ffi::entropix_attention_capture_new(std::ptr::null(), std::ptr::null()).is_null());
            assert!(!last_error().is_empty() && !last_error().contains("internal error"));
            ffi::entropix_attention_capture_free(std::ptr::null_mut());
            assert!(!ffi::entropix_attention_eval_callback(std::ptr::null_mut(), true, std::ptr::null_mut()));
        }
    }
}

/// Runs the fuzz test again with each SIMD kernel forced (`ENTROPIX_SIMD`,
/// read once per process), so the portable and AVX2 paths get the same
/// cases as the machine's default.
#[test]
fn every_simd_path_survives_the_fuzz_cases() {
    if std::env::var_os("ENTROPIX_SIMD").is_some() {
        return; // already a forced run: do not recurse
    }
    let exe = std::env::current_exe().unwrap();
    for kernel in ["portable", "avx2", "avx512"] {
        let out = std::process::Command::new(&exe)
            .env("ENTROPIX_SIMD", kernel)
            .env("ENTROPIX_FUZZ_CASES", n_cases().min(500).to_string())
            .args(["--test-threads", "1", "--exact", "fuzz_samplers_chains_and_accessors"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ENTROPIX_SIMD={kernel}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}
