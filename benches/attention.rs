//! Cost of attention capture: decode time per generated token on the
//! default model with flash attention on, with it off and no callback, and
//! with it off plus the capture (probabilities only, and with scores).
//!
//! `cargo bench --bench attention`; `ENTROPIX_BENCH_QUICK=1` for a short
//! run. Configurations alternate round by round; medians are reported.

use std::time::Instant;

use entropix_sampler::attention::{AttentionCapture, CaptureConfig};
use entropix_sampler::ffi::entropix_attention_eval_callback;
use entropix_sampler::llama::{Context, ContextOptions, FlashAttention, Model, ModelOptions};
use entropix_sampler::metrics::AttentionSource;

const PROMPT: &str = "Write a long story about a lighthouse keeper who finds a message in a bottle.";

#[derive(Clone, Copy, Debug)]
enum Config {
    FlashOn,
    FlashOff,
    Capture,
    CaptureScores,
}

/// Decodes the prompt, then `n_gen` greedy tokens; returns ms per token of
/// the generation decodes (sampling and metrics excluded).
fn run(model: &Model, config: Config, n_gen: usize) -> f64 {
    let capture = match config {
        Config::Capture => Some(AttentionCapture::new(model, CaptureConfig { capture_scores: false, ..CaptureConfig::default() }).unwrap()),
        Config::CaptureScores => Some(AttentionCapture::new(model, CaptureConfig::default()).unwrap()),
        _ => None,
    };
    let options = ContextOptions {
        n_ctx: 1024,
        flash_attention: if matches!(config, Config::FlashOn) { FlashAttention::On } else { FlashAttention::Off },
        cb_eval: capture.as_ref().map(|_| entropix_attention_eval_callback as unsafe extern "C" fn(_, _, _) -> _),
        cb_eval_user_data: capture.as_ref().map_or(std::ptr::null_mut(), |c| c.user_data()),
        no_perf: true,
        ..ContextOptions::default()
    };
    let mut ctx = Context::new(model, &options).unwrap();
    let tokens = model.tokenize(PROMPT, true, false).unwrap();
    ctx.decode(&tokens, 0, 0, false).unwrap();
    let mut decode_s = 0.0;
    let start = tokens.len() as i32;
    for pos in start..start + n_gen as i32 {
        let logits = ctx.logits(-1);
        let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as i32;
        if let Some(c) = &capture {
            assert!(c.metrics().is_some(), "capture must be fresh each step");
        }
        let t0 = Instant::now();
        ctx.decode(&[next], pos, 0, false).unwrap();
        decode_s += t0.elapsed().as_secs_f64();
    }
    decode_s * 1e3 / n_gen as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() {
    let quick = std::env::var_os("ENTROPIX_BENCH_QUICK").is_some();
    let (rounds, n_gen) = if quick { (1, 16) } else { (7, 128) };
    let path = entropix_sampler::default_model::ensure_default_model(true).expect("default model");
    let model = Model::load(&path, &ModelOptions::default()).unwrap();
    let configs = [Config::FlashOn, Config::FlashOff, Config::Capture, Config::CaptureScores];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..rounds {
        for k in 0..configs.len() {
            // Rotate the order every round so drift hits all alike.
            let i = (k + round) % configs.len();
            times[i].push(run(&model, configs[i], n_gen));
        }
    }
    let med: Vec<f64> = times.into_iter().map(median).collect();
    println!("decode of one token, SmolLM2-135M Q4_1, CPU, {n_gen} tokens x {rounds} rounds (median ms/token)");
    println!("| configuration | ms/token | vs flash-attn off |");
    println!("|---|---|---|");
    for (c, m) in configs.iter().zip(&med) {
        println!("| {c:?} | {m:.3} | {:+.1}% |", (m / med[1] - 1.0) * 100.0);
    }
}
