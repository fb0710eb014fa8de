//! Our samplers inside chains a host builds: llama.cpp's own samplers
//! before ours leave flags (`sorted`, `selected`) that no longer describe
//! the array. A selecting sampler must choose among what it is given and
//! never a -inf or NaN candidate while a finite one exists. A host that
//! turns on llama.cpp's backend sampling still gets working samplers.

mod common;

use common::cases::lm_logits;
use common::llama::LlamaSampler;
use entropix_sampler::core::TokenData;
use entropix_sampler::ffi::into_llama_sampler;
use entropix_sampler::llama::Model;
use entropix_sampler::samplers::registry;
use entropix_sampler::sys;

/// Every registered sampler that selects, wrapped for the C ABI.
fn selecting_samplers() -> Vec<(&'static str, *mut sys::llama_sampler)> {
    registry().into_iter().filter(|(_, s)| s.selects()).map(|(name, s)| (name, into_llama_sampler(s))).collect()
}

/// llama.cpp's top-k 40, then a logit bias of -inf on `masked`, then ours:
/// top-k leaves `sorted = true`, the bias makes `data[0]` -inf without
/// clearing it (defect 1 of issue 13: ours picked the masked token 300
/// times out of 300).
#[test]
fn masked_token_behind_top_k_and_logit_bias_is_never_selected() {
    let n_vocab = 1000;
    for (name, ours) in selecting_samplers() {
        let mut picked_masked = 0;
        let mut selected_none = 0;
        for round in 0..60u64 {
            let logits = lm_logits(n_vocab, 100 + round);
            let top = logits.iter().max_by(|a, b| a.logit.total_cmp(&b.logit)).unwrap().id;
            let bias = [sys::llama_logit_bias { token: top, bias: f32::NEG_INFINITY }];
            let chain = LlamaSampler::new(unsafe { sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params()) });
            unsafe {
                sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_top_k(40));
                sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_logit_bias(n_vocab as i32, 1, bias.as_ptr()));
                // The chain takes our sampler; clone it so each round starts
                // from the same state and `ours` stays ours to free.
                sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_clone(ours));
            }
            for step in 0..5 {
                let applied = chain.apply(&logits, false);
                match applied.selected {
                    Some(k) => {
                        let t = applied.tokens[k];
                        if t.id == top {
                            picked_masked += 1;
                        }
                        assert!(t.logit > f32::NEG_INFINITY, "{name}: round {round} step {step}: selected {t:?}");
                        chain.accept(t.id);
                    }
                    None => selected_none += 1,
                }
            }
        }
        assert_eq!(picked_masked, 0, "{name}: the masked token was selected {picked_masked} times in 300");
        assert_eq!(selected_none, 0, "{name}: selected nothing {selected_none} times");
        unsafe { sys::llama_sampler_free(ours) };
    }
}

/// A host that claims `sorted` for ascending logits: greedy must still
/// take the largest, and no selecting sampler may take the -inf head.
#[test]
fn a_false_sorted_claim_is_not_trusted() {
    let ascending: Vec<TokenData> = (0..1000).map(|i| TokenData::new(i, i as f32 * 0.01)).collect();
    let greedy = LlamaSampler::new(entropix_sampler::ffi::entropix_sampler_init_greedy());
    let applied = greedy.apply(&ascending, true);
    assert_eq!(applied.selected.map(|k| applied.tokens[k].id), Some(999));

    // Descending but for a -inf head, claimed sorted.
    let mut masked_head: Vec<TokenData> = (0..1000).map(|i| TokenData::new(i, 10.0 - i as f32 * 0.01)).collect();
    masked_head[0].logit = f32::NEG_INFINITY;
    for (name, ours) in selecting_samplers() {
        let s = LlamaSampler::new(ours);
        for _ in 0..20 {
            let applied = s.apply(&masked_head, true);
            let k = applied.selected.unwrap_or_else(|| panic!("{name}: selected nothing"));
            assert_ne!(applied.tokens[k].id, 0, "{name}: selected the -inf head of a falsely sorted array");
            s.accept(applied.tokens[k].id);
        }
    }
}

/// Arrays where every other logit is NaN (defect 2 of issue 13: the
/// Dirichlet sampler's scalar top-k panicked, leaving `selected = -1`).
/// Every selecting sampler picks a finite candidate, through the C ABI.
/// [`every_simd_path_passes`] runs this file again on every SIMD path.
#[test]
fn half_nan_arrays_select_a_finite_candidate() {
    for n in [2usize, 7, 100, 1000, 49152] {
        let base = lm_logits(n, 7 + n as u64);
        let half_nan: Vec<TokenData> = base.iter().map(|t| if t.id % 2 == 0 { TokenData::new(t.id, f32::NAN) } else { *t }).collect();
        for (name, ours) in selecting_samplers() {
            let s = LlamaSampler::new(ours);
            for sorted in [false, true] {
                let applied = s.apply(&half_nan, sorted);
                let k = applied.selected.unwrap_or_else(|| panic!("{name}: n {n}: selected nothing: {}", common::llama::last_error()));
                let t = applied.tokens[k];
                assert!(t.logit.is_finite(), "{name}: n {n}: selected {t:?}");
                s.accept(t.id);
            }
        }
    }
}

/// Runs this test binary again with each SIMD kernel forced
/// (`ENTROPIX_SIMD`, read once per process), so the portable and AVX2
/// paths are tested on a machine whose default is AVX-512, as valgrind
/// (which cannot run AVX-512) would run them.
#[test]
fn every_simd_path_passes() {
    if std::env::var_os("ENTROPIX_SIMD").is_some() {
        return; // already a forced run: do not recurse
    }
    let exe = std::env::current_exe().unwrap();
    for kernel in ["portable", "avx2", "avx512"] {
        let out = std::process::Command::new(&exe)
            .env("ENTROPIX_SIMD", kernel)
            .args(["--test-threads", "1", "--skip", "every_simd_path_passes"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "ENTROPIX_SIMD={kernel}:\n{text}");
        assert!(text.contains("4 passed"), "ENTROPIX_SIMD={kernel}: expected the other 4 tests to run:\n{text}");
    }
}

/// Generates `steps` tokens with `chain` from `prompt`, in a context that
/// runs the chain's backend-capable prefix on the backend (llama.cpp's
/// backend sampling, `llama_context_params.samplers`) when `backend` is
/// set. Returns the tokens and, per step, how many candidates the CPU part
/// of the chain got (the vocabulary without backend sampling).
fn generate_with(model: &Model, prompt: &[i32], chain: *mut sys::llama_sampler, backend: bool, steps: usize) -> (Vec<i32>, Vec<u32>) {
    unsafe {
        let mut params = sys::llama_context_default_params();
        params.n_ctx = 256;
        params.n_batch = 256;
        params.no_perf = true;
        let mut config = [sys::llama_sampler_seq_config { seq_id: 0, sampler: chain }];
        if backend {
            params.samplers = config.as_mut_ptr();
            params.n_samplers = config.len();
        }
        // ggml's threads spin: never more than the cores (its default is 4).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) as i32;
        params.n_threads = threads;
        params.n_threads_batch = threads;
        let ctx = sys::llama_init_from_model(model.as_ptr(), params);
        assert!(!ctx.is_null());
        let mut out = Vec::new();
        let mut handed = Vec::new();
        let mut next = prompt.to_vec();
        for _ in 0..steps {
            assert_eq!(sys::llama_decode(ctx, sys::llama_batch_get_one(next.as_mut_ptr(), next.len() as i32)), 0);
            handed.push(sys::llama_get_sampled_logits_count_ith(ctx, -1));
            let t = sys::llama_sampler_sample(chain, ctx, -1);
            out.push(t);
            next = vec![t];
        }
        sys::llama_free(ctx);
        (out, handed)
    }
}

/// A host that turns on llama.cpp's backend sampling with a chain holding
/// our samplers gets working samplers: llama.cpp runs the chain's prefix of
/// backend-capable samplers (its own top-k here) on the backend and ours on
/// the CPU over what the prefix left (ours have no backend hooks), and the
/// text equals the same chain without backend sampling.
#[test]
fn backend_sampling_runs_ours_after_the_backend_prefix() {
    use entropix_sampler::ffi::{entropix_sampler_init_entropix, entropix_sampler_init_greedy};
    use entropix_sampler::llama::ModelOptions;
    use entropix_sampler::samplers::entropix::EntropixParams;

    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let prompt = model.tokenize("The capital of France is", true, false).unwrap();
    let chain_with = |ours: *mut sys::llama_sampler| unsafe {
        let chain = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
        sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_top_k(40));
        sys::llama_sampler_chain_add(chain, ours);
        LlamaSampler::new(chain)
    };
    let entropix = || unsafe { entropix_sampler_init_entropix(&EntropixParams { seed: 7, ..EntropixParams::default() }) };
    for (name, make) in [("greedy", &(|| entropix_sampler_init_greedy()) as &dyn Fn() -> *mut sys::llama_sampler), ("entropix", &entropix)] {
        let cpu_chain = chain_with(make());
        let (cpu, handed_cpu) = generate_with(&model, &prompt, cpu_chain.0, false, 8);
        let backend_chain = chain_with(make());
        let (backend, handed) = generate_with(&model, &prompt, backend_chain.0, true, 8);
        let n_vocab = unsafe { sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(model.as_ptr())) } as u32;
        assert!(handed_cpu.iter().all(|&n| n == n_vocab), "{name}: without backend sampling the CPU gets the vocabulary: {handed_cpu:?}");
        assert!(handed.iter().all(|&n| n == 40), "{name}: the backend ran top-k 40 (candidates handed over: {handed:?})");
        assert_eq!(backend, cpu, "{name}: backend sampling changed the text");
    }
}
