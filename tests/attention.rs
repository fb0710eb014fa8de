//! Attention capture on the real model (CPU here; the same code reads CUDA
//! and Metal buffers through ggml_backend_tensor_get).

mod common;

use std::sync::{Arc, Mutex};

use entropix_sampler::attention::{AttentionCapture, CaptureConfig, CapturedRow};
use entropix_sampler::ffi::entropix_attention_eval_callback;
use entropix_sampler::llama::{Context, ContextOptions, FlashAttention, Model, ModelOptions};
use entropix_sampler::metrics::AttentionSource;

/// One llama context at a time: ggml's threads spin.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn model() -> Model {
    Model::load(&common::llama::model_path(), &ModelOptions::default()).unwrap()
}

fn options(capture: Option<&Arc<AttentionCapture>>, fa: FlashAttention, n_ubatch: u32) -> ContextOptions {
    ContextOptions {
        n_ctx: 512,
        n_batch: 512,
        n_ubatch,
        flash_attention: fa,
        cb_eval: capture.map(|_| entropix_attention_eval_callback as unsafe extern "C" fn(_, _, _) -> _),
        cb_eval_user_data: capture.map_or(std::ptr::null_mut(), |c| c.user_data()),
        no_perf: true,
        ..ContextOptions::default()
    }
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog. Then the dog wakes up and";

/// Decodes PROMPT and `n_gen` greedy tokens; returns the row captured at
/// each step (prompt first).
fn run(model: &Model, n_ubatch: u32) -> Vec<CapturedRow> {
    let capture = AttentionCapture::new(model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(model, &options(Some(&capture), FlashAttention::Off, n_ubatch)).unwrap();
    let mut tokens = model.tokenize(PROMPT, true, false).unwrap();
    ctx.decode(&tokens, 0, 0, false).unwrap();
    let mut rows = vec![capture.rows().expect("fresh rows after the prompt").pop().unwrap()];
    for _ in 0..4 {
        let logits = ctx.logits(-1);
        let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as i32;
        ctx.decode(&[next], tokens.len() as i32, 0, false).unwrap();
        tokens.push(next);
        rows.push(capture.rows().unwrap().pop().unwrap());
    }
    rows
}

fn valid_values(row: &CapturedRow, h: usize) -> Vec<f32> {
    row.probs[h * row.n_kv..(h + 1) * row.n_kv].iter().copied().filter(|&a| a > 0.0).collect()
}

#[test]
fn rows_are_causal_distributions_equal_to_recomputed_softmax() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let n_prompt = model.tokenize(PROMPT, true, false).unwrap().len();
    let rows = run(&model, 512);
    let scale = 1.0 / ((unsafe { entropix_sampler::sys::llama_model_n_embd(model.as_ptr()) } / unsafe { entropix_sampler::sys::llama_model_n_head(model.as_ptr()) }) as f32).sqrt();
    for (step, row) in rows.iter().enumerate() {
        let pos = n_prompt - 1 + step; // position of the token whose row this is
        assert!(row.n_kv > pos && row.n_head > 0);
        let scores = row.scores.as_ref().expect("scores captured");
        for h in 0..row.n_head {
            let p = &row.probs[h * row.n_kv..(h + 1) * row.n_kv];
            let sum: f64 = p.iter().map(|&x| x as f64).sum();
            assert!((sum - 1.0).abs() < 1e-5, "step {step} head {h}: row sums to {sum}");
            assert!(p[pos + 1..].iter().all(|&x| x == 0.0), "step {step} head {h}: cells beyond the position are not 0");
            // Independent recomputation: softmax of scaled, causally masked scores.
            let s = &scores[h * row.n_kv..(h + 1) * row.n_kv];
            let max = s[..=pos].iter().map(|&x| x as f64 * scale as f64).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s[..=pos].iter().map(|&x| (x as f64 * scale as f64 - max).exp()).sum();
            for j in 0..=pos {
                let want = (s[j] as f64 * scale as f64 - max).exp() / z;
                assert!((p[j] as f64 - want).abs() < 1e-4, "step {step} head {h} cell {j}: {} vs {want}", p[j]);
            }
        }
    }
}

#[test]
fn captures_do_not_depend_on_ubatch_size_or_run() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let a = run(&model, 512);
    let b = run(&model, 7);
    let again = run(&model, 512);
    assert_eq!(a, again, "two runs with the same settings differ");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!((x.n_kv, x.n_head), (y.n_kv, y.n_head));
        for (i, (p, q)) in x.probs.iter().zip(&y.probs).enumerate() {
            assert!((p - q).abs() < 1e-4, "step {step} value {i}: ubatch 512 {p} vs ubatch 7 {q}");
        }
    }
}

#[test]
fn several_sequences_in_one_batch_get_their_own_rows() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let pa = model.tokenize("Paris is the capital of", true, false).unwrap();
    let pb = model.tokenize("One, two, three, four, five, six,", true, false).unwrap();
    let single = |prompt: &[i32]| {
        let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
        let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::Off, 512)).unwrap();
        ctx.decode(prompt, 0, 0, false).unwrap();
        capture.rows().unwrap().pop().unwrap()
    };
    let (ra, rb) = (single(&pa), single(&pb));

    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut opts = options(Some(&capture), FlashAttention::Off, 512);
    opts.n_seq_max = 2;
    opts.kv_unified = true;
    let mut ctx = Context::new(&model, &opts).unwrap();
    let mut entries: Vec<(i32, i32, i32, bool)> = pa.iter().enumerate().map(|(i, &t)| (t, i as i32, 0, i + 1 == pa.len())).collect();
    entries.extend(pb.iter().enumerate().map(|(i, &t)| (t, i as i32, 1, i + 1 == pb.len())));
    capture.expect_outputs(&[pa.len() - 1, pa.len() + pb.len() - 1]);
    ctx.decode_entries(&entries).unwrap();
    let rows = capture.rows().expect("fresh");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].batch_index, Some(pa.len() - 1));
    assert_eq!(rows[1].batch_index, Some(pa.len() + pb.len() - 1));
    for (row, alone) in [(&rows[0], &ra), (&rows[1], &rb)] {
        for h in 0..row.n_head {
            let (x, y) = (valid_values(row, h), valid_values(alone, h));
            assert_eq!(x.len(), y.len(), "head {h}: the other sequence's cells must be masked");
            for (p, q) in x.iter().zip(&y) {
                assert!((p - q).abs() < 1e-4, "head {h}: {p} vs {q}");
            }
        }
    }
    // The samplers read the row they are told to.
    capture.select_output(Some(pa.len() - 1));
    let ma = capture.metrics().unwrap();
    capture.select_output(Some(pa.len() + pb.len() - 1));
    let mb = capture.metrics().unwrap();
    assert_ne!(ma, mb);
}

#[test]
fn cells_removed_from_the_cache_are_masked() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::Off, 512)).unwrap();
    let tokens = model.tokenize(PROMPT, true, false).unwrap();
    ctx.decode(&tokens, 0, 0, false).unwrap();
    assert!(ctx.remove_positions(0, 3, 6));
    ctx.decode(&[tokens[1]], tokens.len() as i32, 0, false).unwrap();
    let row = capture.rows().unwrap().pop().unwrap();
    // Columns are KV cells, not positions: the new token reuses one freed
    // cell, the other two freed cells stay masked (exactly 0) in every head.
    let valid: Vec<bool> = (0..row.n_kv).map(|j| (0..row.n_head).any(|h| row.probs[h * row.n_kv + j] > 0.0)).collect();
    assert_eq!(valid.iter().filter(|&&v| v).count(), tokens.len() - 3 + 1);
    assert_eq!(valid[3..6].iter().filter(|&&v| !v).count(), 2, "two freed cells must stay masked");
    for h in 0..row.n_head {
        let p = &row.probs[h * row.n_kv..(h + 1) * row.n_kv];
        let sum: f64 = p.iter().map(|&x| x as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
    let m = capture.metrics().unwrap();
    assert_eq!(m.n_valid, tokens.len() - 2);
}

#[test]
fn no_stale_attention_with_flash_attention_on_or_no_callback() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let tokens = model.tokenize(PROMPT, true, false).unwrap();
    // Flash attention fuses the softmax away: nothing is captured.
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::On, 512)).unwrap();
    ctx.decode(&tokens, 0, 0, false).unwrap();
    assert!(capture.graphs_done() > 0, "the callback saw the graph");
    assert!(!capture.is_fresh() && capture.metrics().is_none());
    drop(ctx);

    // Fresh with flash attention off, then stale once the callback is gone.
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::Off, 512)).unwrap();
    ctx.decode(&tokens, 0, 0, false).unwrap();
    assert!(capture.is_fresh());
    let m = capture.metrics().unwrap();
    assert!(m.entropy_bits > 0.0 && m.n_valid == tokens.len() && m.interaction_strength.is_some());
    // A later decode in which the tensor does not show up (simulated by a
    // graph that completes without it) makes the capture stale.
    let never = AttentionCapture::with_layer(999, false, 1.0);
    let mut ctx2 = Context::new(&model, &options(Some(&never), FlashAttention::Off, 512)).unwrap();
    ctx2.decode(&tokens, 0, 0, false).unwrap();
    assert!(never.graphs_done() > 0 && never.metrics().is_none());
}
