//! Soak runs (issue 13): many apply + accept steps through the C ABI on the
//! real model's logits, with the resident memory sampled along the way. A
//! leak per step shows as a rising curve; the assertion allows the first
//! tenth of the run to warm up (buffers reaching their final size).
//!
//! Long, so ignored in the suite:
//! `cargo test --release --test soak -- --ignored --nocapture --test-threads 1`
//! (1,000,000 steps of a classic chain, 100,000 of entropix and of
//! dirichlet; `ENTROPIX_SOAK_SCALE=0.01` for a short run).

mod common;

use entropix_sampler::core::TokenData;
use entropix_sampler::ffi;
use entropix_sampler::llama::{Context, ContextOptions, Model, ModelOptions};
use entropix_sampler::samplers::dirichlet::DirichletParams;
use entropix_sampler::samplers::entropix::EntropixParams;
use entropix_sampler::samplers::filters::{MinPParams, TopPParams};
use entropix_sampler::samplers::penalties::PenaltiesParams;
use entropix_sampler::samplers::{DistParams, TemperatureParams, TopKParams};
use entropix_sampler::sys;

/// Resident memory of this process, KiB.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// 64 rows of next-token logits of the default model (greedy continuation).
fn real_logits() -> Vec<Vec<f32>> {
    let model = Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap();
    let mut ctx = Context::new(&model, &ContextOptions { n_ctx: 512, no_perf: true, ..ContextOptions::default() }).unwrap();
    let prompt = model.tokenize("Write a short story about a lighthouse keeper.", true, false).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let mut rows = Vec::new();
    for i in 0..64 {
        let logits = ctx.logits(-1).to_vec();
        let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as i32;
        rows.push(logits);
        ctx.decode(&[next], (prompt.len() + i) as i32, 0, false).unwrap();
    }
    rows
}

fn scale() -> f64 {
    std::env::var("ENTROPIX_SOAK_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0)
}

/// Runs `steps` apply + accept steps of `chain` over the rows; prints the
/// RSS curve (20 points) and checks it is flat after the first tenth.
fn soak(name: &str, chain: *mut sys::llama_sampler, rows: &[Vec<f32>], steps: usize) {
    let mut data: Vec<TokenData> = Vec::with_capacity(rows[0].len());
    let mut curve = Vec::new();
    let t0 = std::time::Instant::now();
    for step in 0..steps {
        let row = &rows[step % rows.len()];
        data.clear();
        data.extend(row.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)));
        let mut arr = sys::llama_token_data_array { data: data.as_mut_ptr().cast(), size: data.len(), selected: -1, sorted: false };
        unsafe { sys::llama_sampler_apply(chain, &mut arr) };
        assert!(arr.selected >= 0, "{name}: step {step}: nothing selected: {}", common::llama::last_error());
        let token = unsafe { (*arr.data.add(arr.selected as usize)).id };
        unsafe { sys::llama_sampler_accept(chain, token) };
        if step % (steps / 20).max(1) == 0 || step + 1 == steps {
            curve.push((step + 1, rss_kib()));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let points: Vec<String> = curve.iter().map(|(s, k)| format!("{s}:{:.1}", *k as f64 / 1024.0)).collect();
    eprintln!("soak {name}: {steps} steps in {secs:.1} s ({:.1} µs/step); RSS MiB by step: {}", secs * 1e6 / steps as f64, points.join(" "));
    let warm = curve.iter().find(|(s, _)| *s >= steps / 10).map_or(curve[0].1, |p| p.1);
    let last = curve.last().unwrap().1;
    assert!(last <= warm + 4096, "{name}: RSS grew from {warm} KiB to {last} KiB after warm-up");
    unsafe { sys::llama_sampler_free(chain) };
}

fn chain_of(stages: Vec<*mut sys::llama_sampler>) -> *mut sys::llama_sampler {
    let chain = unsafe { sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params()) };
    for s in stages {
        assert!(!s.is_null(), "{}", common::llama::last_error());
        unsafe { sys::llama_sampler_chain_add(chain, s) };
    }
    chain
}

#[test]
#[ignore = "a long soak: run with --ignored (see the file's doc)"]
fn soak_classic_entropix_dirichlet() {
    let rows = real_logits();
    let n = |base: f64| ((base * scale()) as usize).max(100);
    unsafe {
        let classic = chain_of(vec![
            ffi::entropix_sampler_init_penalties(&PenaltiesParams { penalty_last_n: 64, penalty_repeat: 1.1, ..PenaltiesParams::default() }),
            ffi::entropix_sampler_init_top_k(&TopKParams { k: 40 }),
            ffi::entropix_sampler_init_top_p(&TopPParams { p: 0.95, min_keep: 1 }),
            ffi::entropix_sampler_init_min_p(&MinPParams { p: 0.05, min_keep: 1 }),
            ffi::entropix_sampler_init_temperature(&TemperatureParams { temp: 0.8 }),
            ffi::entropix_sampler_init_dist(&DistParams { seed: 1 }),
        ]);
        soak("classic", classic, &rows, n(1_000_000.0));
        let entropix = chain_of(vec![ffi::entropix_sampler_init_entropix(&EntropixParams { seed: 1, ..EntropixParams::default() })]);
        soak("entropix", entropix, &rows, n(100_000.0));
        let dirichlet = chain_of(vec![ffi::entropix_sampler_init_dirichlet(&DirichletParams { seed: 1, ..DirichletParams::default() })]);
        soak("dirichlet", dirichlet, &rows, n(100_000.0));
    }
}
