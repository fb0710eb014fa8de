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

/// Issue 13, defect 3: an announcement covers one decode. Before the fix the
/// expected rows and the batch offset outlived their decode, so the next,
/// unannounced decode captured nothing for them and the samplers were served
/// the previous decode's rows as fresh.
#[test]
fn rows_serve_only_the_decode_and_output_they_came_from() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let pa = model.tokenize("Paris is the capital of", true, false).unwrap();
    let pb = model.tokenize("One, two, three, four, five, six,", true, false).unwrap();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut opts = options(Some(&capture), FlashAttention::Off, 512);
    opts.n_seq_max = 2;
    opts.kv_unified = true;
    let mut ctx = Context::new(&model, &opts).unwrap();
    let mut entries: Vec<(i32, i32, i32, bool)> = pa.iter().enumerate().map(|(i, &t)| (t, i as i32, 0, i + 1 == pa.len())).collect();
    entries.extend(pb.iter().enumerate().map(|(i, &t)| (t, i as i32, 1, i + 1 == pb.len())));
    let (ia, ib) = (pa.len() - 1, pa.len() + pb.len() - 1);
    capture.expect_outputs(&[ia, ib]);
    ctx.decode_entries(&entries).unwrap();
    capture.select_output(Some(ia));
    let first = capture.metrics().expect("the announced decode's row");

    // The next decode (one token of sequence 0) is not announced: the row
    // the sampler selected does not exist for it.
    ctx.decode_entries(&[(pa[1], pa.len() as i32, 0, true)]).unwrap();
    assert!(capture.metrics().is_none(), "batch index {ia} of the previous decode must not be served");
    let rows = capture.rows().expect("the unannounced decode's last token");
    assert_eq!((rows.len(), rows[0].batch_index), (1, None));
    assert!(capture.problem().is_some_and(|p| p.contains("not announced")), "{:?}", capture.problem());
    // Selecting nothing reads that decode's (last token's) row.
    capture.select_output(None);
    let m = capture.metrics().expect("fresh last-token row");
    assert_eq!(m.n_valid, pa.len() + 1);
    assert_ne!(m, first);

    // A new announcement resets the selection and the offsets: batch index 0
    // of a one-token batch for sequence 1.
    capture.expect_outputs(&[0]);
    ctx.decode_entries(&[(pb[1], pb.len() as i32, 1, true)]).unwrap();
    let rows = capture.rows().expect("announced again");
    assert_eq!((rows.len(), rows[0].batch_index), (1, Some(0)));
    capture.select_output(Some(ib));
    assert!(capture.metrics().is_none(), "an index of an older decode gives no attention, not another row");
    capture.select_output(Some(0));
    assert_eq!(capture.metrics().unwrap().n_valid, pb.len() + 1);
}

/// A batch announced with `expect_batch` may end with tokens that have no
/// output (a prompt chunk after the sampled rows), spread over ubatches.
#[test]
fn an_announced_batch_spans_its_ubatches_and_nothing_more() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let pa = model.tokenize("Paris is the capital of", true, false).unwrap();
    let pb = model.tokenize("One, two, three, four, five, six, seven, eight, nine, ten", true, false).unwrap();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut opts = options(Some(&capture), FlashAttention::Off, 4);
    opts.n_seq_max = 2;
    opts.kv_unified = true;
    let mut ctx = Context::new(&model, &opts).unwrap();
    // Sequence 0 has its output; sequence 1 is a prompt chunk without one.
    let mut entries: Vec<(i32, i32, i32, bool)> = pa.iter().enumerate().map(|(i, &t)| (t, i as i32, 0, i + 1 == pa.len())).collect();
    entries.extend(pb.iter().enumerate().map(|(i, &t)| (t, i as i32, 1, false)));
    let ia = pa.len() - 1;
    // Announced as ending at its last output, the trailing ubatches look
    // like a new decode: no rows, never stale ones.
    capture.expect_outputs(&[ia]);
    ctx.decode_entries(&entries).unwrap();
    capture.select_output(Some(ia));
    assert!(capture.metrics().is_none());
    // Announced with the whole batch, the row is served.
    ctx.clear();
    capture.expect_batch(&[ia], entries.len()).unwrap();
    ctx.decode_entries(&entries).unwrap();
    assert_eq!(capture.metrics().expect("the row of batch index ia").n_valid, pa.len());
    assert!(capture.expect_batch(&[entries.len()], entries.len()).is_err());
}

/// Issue 13, defect 4: interaction strength scales the scores by the scale
/// the softmax applied, read from the graph. SmolLM2's is 1/sqrt(64).
#[test]
fn score_scale_is_the_one_the_graph_applied() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    assert_eq!(capture.scale(), None, "no graph seen yet");
    let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::Off, 512)).unwrap();
    ctx.decode(&model.tokenize(PROMPT, true, false).unwrap(), 0, 0, false).unwrap();
    assert_eq!(capture.scale(), Some(0.125));
    let row = capture.rows().unwrap().pop().unwrap();
    let scores = row.scores.as_ref().unwrap();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (s, p) in scores.iter().zip(&row.probs) {
        if *p > 0.0 {
            sum += (*s as f64 * 0.125).abs();
            n += 1;
        }
    }
    let want = sum / n as f64;
    let got = capture.metrics().unwrap().interaction_strength.unwrap();
    assert!((got - want).abs() < 1e-6 * want.max(1.0), "{got} vs {want}");
    // An override wins over the graph's scale.
    let doubled = AttentionCapture::new(&model, CaptureConfig { attention_scale: 0.25, ..CaptureConfig::default() }).unwrap();
    let mut ctx = Context::new(&model, &options(Some(&doubled), FlashAttention::Off, 512)).unwrap();
    ctx.decode(&model.tokenize(PROMPT, true, false).unwrap(), 0, 0, false).unwrap();
    let got2 = doubled.metrics().unwrap().interaction_strength.unwrap();
    assert!((got2 - 2.0 * want).abs() < 1e-5 * want.max(1.0), "{got2} vs {}", 2.0 * want);
    assert!(AttentionCapture::new(&model, CaptureConfig { attention_scale: f32::NAN, ..CaptureConfig::default() }).is_err());
}

/// The second model of issue 14 (Gemma 3 270M: head size 256, 640 / 4 =
/// 160 by n_embd / n_head; Q is scaled before the product, so the softmax
/// applies 1). Run with `ENTROPIX_GEMMA=/path/to/gemma-3-270m-q4_k_m.gguf
/// cargo test --release --test attention -- --ignored gemma`.
#[test]
#[ignore = "needs ENTROPIX_GEMMA (a Gemma 3 GGUF)"]
fn gemma_score_scale_is_not_one_over_sqrt_embd_per_head() {
    let path = std::env::var("ENTROPIX_GEMMA").expect("ENTROPIX_GEMMA");
    let model = Model::load(std::path::Path::new(&path), &ModelOptions::default()).unwrap();
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::Off, 512)).unwrap();
    ctx.decode(&model.tokenize(PROMPT, true, false).unwrap(), 0, 0, false).unwrap();
    // SAFETY: a live model.
    let (n_embd, n_head) = unsafe { (entropix_sampler::sys::llama_model_n_embd(model.as_ptr()), entropix_sampler::sys::llama_model_n_head(model.as_ptr())) };
    let by_shape = 1.0 / ((n_embd / n_head) as f32).sqrt();
    eprintln!("graph scale {:?}, 1/sqrt(n_embd/n_head) = {by_shape}", capture.scale());
    assert_eq!(capture.scale(), Some(1.0));
}

/// A host like llama-server (issue 13): 4 sequences decoded in one batch,
/// each sampled by its own clone of one entropix sampler, all attached to
/// one capture; each sequence reads exactly its own output's row. Compared
/// with 4 runs of one sequence each: the same attention metrics at every
/// step (the same cells; values to 2%: batched kernels round differently)
/// and the same tokens.
#[test]
fn four_sequences_in_one_batch_match_four_single_runs() {
    use entropix_sampler::ffi::{entropix_sampler_init_entropix, entropix_sampler_set_attention};
    use entropix_sampler::samplers::entropix::EntropixParams;
    use entropix_sampler::sys;

    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = model();
    let prompts = ["Paris is the capital of", "One, two, three, four,", "The quick brown fox", "Water boils at a temperature of"];
    let prompts: Vec<Vec<i32>> = prompts.iter().map(|p| model.tokenize(p, true, false).unwrap()).collect();
    const STEPS: usize = 6;
    let params = EntropixParams { seed: 7, ..EntropixParams::default() };
    let sampler = |capture: &Arc<AttentionCapture>| {
        let s = unsafe { entropix_sampler_init_entropix(&params) };
        assert!(!s.is_null());
        assert_eq!(unsafe { entropix_sampler_set_attention(s, Arc::as_ptr(capture)) }, 0);
        s
    };
    // The prompts differ in length, so a wrong row shows in `n_valid`; the
    // values differ by the batched kernels' rounding, which grows through
    // the layers (0.3% of the entropy after one step here).
    let close = |a: &entropix_sampler::metrics::AttentionMetrics, b: &entropix_sampler::metrics::AttentionMetrics, what: &str| {
        assert_eq!(a.n_valid, b.n_valid, "{what}: valid cells");
        for (x, y, name) in [(a.entropy_bits, b.entropy_bits, "entropy"), (a.varentropy_bits2, b.varentropy_bits2, "varentropy"), (a.agreement, b.agreement, "agreement")] {
            assert!((x - y).abs() <= 2e-2 * x.abs().max(y.abs()).max(1e-3), "{what}: {name} {x} vs {y}");
        }
    };

    // One sequence per context.
    let mut single: Vec<(Vec<i32>, Vec<entropix_sampler::metrics::AttentionMetrics>)> = Vec::new();
    for p in &prompts {
        let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
        let mut ctx = Context::new(&model, &options(Some(&capture), FlashAttention::Off, 512)).unwrap();
        let s = sampler(&capture);
        ctx.decode(p, 0, 0, false).unwrap();
        let (mut tokens, mut metrics) = (Vec::new(), Vec::new());
        for step in 0..STEPS {
            metrics.push(capture.metrics().expect("fresh"));
            let t = unsafe { sys::llama_sampler_sample(s, ctx.as_ptr(), -1) };
            tokens.push(t);
            ctx.decode(&[t], (p.len() + step) as i32, 0, false).unwrap();
        }
        unsafe { sys::llama_sampler_free(s) };
        single.push((tokens, metrics));
    }

    // Four sequences in one batch, each with a clone of one sampler.
    let capture = AttentionCapture::new(&model, CaptureConfig::default()).unwrap();
    let mut opts = options(Some(&capture), FlashAttention::Off, 512);
    opts.n_seq_max = 4;
    opts.kv_unified = true;
    let mut ctx = Context::new(&model, &opts).unwrap();
    let base = sampler(&capture);
    let clones: Vec<*mut sys::llama_sampler> = (0..4).map(|_| unsafe { sys::llama_sampler_clone(base) }).collect();
    let mut entries: Vec<(i32, i32, i32, bool)> = Vec::new();
    let mut outputs = Vec::new();
    for (seq, p) in prompts.iter().enumerate() {
        for (i, &t) in p.iter().enumerate() {
            entries.push((t, i as i32, seq as i32, i + 1 == p.len()));
        }
        outputs.push(entries.len() - 1);
    }
    capture.expect_batch(&outputs, entries.len()).unwrap();
    ctx.decode_entries(&entries).unwrap();
    for step in 0..STEPS {
        let mut next = Vec::new();
        for seq in 0..4 {
            capture.select_output(Some(outputs[seq]));
            let m = capture.metrics().expect("this sequence's row");
            close(&m, &single[seq].1[step], &format!("sequence {seq}, step {step}"));
            // The row knows where its token sits: the pos the batch gave it.
            let want = (prompts[seq].len() + step) as i32 - 1;
            assert_eq!(capture.selected_position(), Ok(Some(want)), "sequence {seq}, step {step}: position");
            let t = unsafe { sys::llama_sampler_sample(clones[seq], ctx.as_ptr(), outputs[seq] as i32) };
            assert_eq!(t, single[seq].0[step], "sequence {seq}, step {step}: token");
            next.push((t, (prompts[seq].len() + step) as i32, seq as i32, true));
        }
        outputs = (0..4).collect();
        capture.expect_batch(&outputs, 4).unwrap();
        ctx.decode_entries(&next).unwrap();
    }
    unsafe {
        for c in clones {
            sys::llama_sampler_free(c);
        }
        sys::llama_sampler_free(base);
    }
}
