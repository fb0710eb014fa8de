//! The capture object and its eval callback.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use llama_cpp_sys_2 as sys;

use crate::llama::Model;
use crate::metrics::{attention_metrics, AttentionMetrics, AttentionSource};

/// Which attention to capture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureConfig {
    /// Layer index; -1 (the default) is the last layer.
    pub layer: i32,
    /// Also capture the pre-softmax scores `kq-L` (for interaction
    /// strength and checks). Costs one more copy per step.
    pub capture_scores: bool,
    /// Scale applied to raw scores; 0 derives 1/sqrt(d_head) from the model.
    pub attention_scale: f32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self { layer: -1, capture_scores: true, attention_scale: 0.0 }
    }
}

/// One captured row: the attention of one token over the KV cells.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedRow {
    /// Index of the token in the `llama_batch` (when the host named its
    /// output rows with [`AttentionCapture::expect_outputs`]), else `None`
    /// (the last token of the ubatch).
    pub batch_index: Option<usize>,
    /// Number of KV cells (columns), padded by llama.cpp.
    pub n_kv: usize,
    /// Number of heads.
    pub n_head: usize,
    /// `probs[h * n_kv + j]`: head h's weight on KV cell j.
    pub probs: Vec<f32>,
    /// Raw Q.K scores, same layout, when captured.
    pub scores: Option<Vec<f32>>,
}

#[derive(Debug, Default)]
struct State {
    /// Graph evaluations completed (counted at the output node).
    graphs_done: u64,
    /// The graph whose attention tensor we last saw.
    seen_graph: Option<u64>,
    /// Rows of the current decode (batch indices), when the host named them.
    expected: Option<Vec<usize>>,
    /// Offset of the current ubatch in the host's batch.
    batch_offset: usize,
    /// Scores of the current ubatch, waiting for the softmax of that ubatch.
    pending_scores: Vec<(usize, Vec<f32>)>,
    /// Buffers of earlier rows, reused for the next copies.
    spare: Vec<Vec<f32>>,
    rows: Vec<CapturedRow>,
    /// Row the samplers read (index into `rows`); `None`: the last.
    current: Option<usize>,
    /// Why the last observation was not usable, if it was not.
    problem: Option<String>,
}

/// Captures the attention rows of the tokens being sampled, for
/// attention-aware samplers. Install [`entropix_attention_eval_callback`]
/// as the context's `cb_eval` with the capture as user data
/// ([`AttentionCapture::user_data`]), with flash attention off.
///
/// Each capture is stamped with the graph evaluation it came from: after a
/// decode in which no attention arrived (flash attention on, callback not
/// installed), [`AttentionSource::metrics`] returns `None` and never an
/// earlier step's attention; the first such step is reported once on
/// stderr.
///
/// Batches: without [`AttentionCapture::expect_outputs`] the capture keeps
/// the last token's row of the last ubatch, which is the row being sampled
/// for one sequence decoded with `logits` on its last token. For several
/// sequences or output rows, name the batch indices that carry logits
/// before `llama_decode`; this needs a single KV stream (`n_seq_max == 1` or
/// `kv_unified == true`), where llama.cpp splits batches into ubatches in
/// order.
#[derive(Debug)]
pub struct AttentionCapture {
    softmax_name: String,
    scores_name: String,
    capture_scores: bool,
    scale: f32,
    state: Mutex<State>,
    warned: AtomicBool,
}

/// The node llama.cpp names at the end of each graph (the logits).
const OUTPUT_NODE: &str = "result_output";

impl AttentionCapture {
    /// A capture for `model`'s layer `config.layer`. Errors when the layer
    /// is out of range.
    pub fn new(model: &Model, config: CaptureConfig) -> Result<Arc<Self>, String> {
        // SAFETY: the wrapper's pointer is a live model.
        unsafe { Self::for_model_ptr(model.as_ptr(), config) }
    }

    /// Like [`AttentionCapture::new`] for a raw model pointer.
    ///
    /// # Safety
    /// `model` must point to a live `llama_model`.
    pub unsafe fn for_model_ptr(model: *const sys::llama_model, config: CaptureConfig) -> Result<Arc<Self>, String> {
        if model.is_null() {
            return Err("the model is NULL".into());
        }
        let n_layer = sys::llama_model_n_layer(model);
        let layer = if config.layer < 0 { n_layer + config.layer } else { config.layer };
        if layer < 0 || layer >= n_layer {
            return Err(format!("attention layer {} out of range: the model has {n_layer} layers", config.layer));
        }
        let (n_embd, n_head) = (sys::llama_model_n_embd(model), sys::llama_model_n_head(model));
        let scale = if config.attention_scale > 0.0 {
            config.attention_scale
        } else if n_head > 0 && n_embd > 0 {
            1.0 / ((n_embd / n_head) as f32).sqrt()
        } else {
            1.0
        };
        Ok(Self::with_layer(layer, config.capture_scores, scale))
    }

    /// A capture of layer `layer` with the given score scale, for hosts that
    /// know their model's shape.
    pub fn with_layer(layer: i32, capture_scores: bool, scale: f32) -> Arc<Self> {
        Arc::new(Self {
            softmax_name: format!("kq_soft_max-{layer}"),
            scores_name: format!("kq-{layer}"),
            capture_scores,
            scale,
            state: Mutex::new(State::default()),
            warned: AtomicBool::new(false),
        })
    }

    /// The user data to pass with [`entropix_attention_eval_callback`]:
    /// valid while this capture lives (keep the `Arc` alive as long as the
    /// context).
    pub fn user_data(self: &Arc<Self>) -> *mut c_void {
        Arc::as_ptr(self).cast_mut().cast()
    }

    /// The score scale (1/sqrt(d_head) unless configured).
    pub fn scale(&self) -> f32 {
        self.scale
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names the batch indices whose logits will be sampled in the next
    /// `llama_decode` (in batch order); their rows are captured.
    pub fn expect_outputs(&self, batch_indices: &[usize]) {
        let mut s = self.lock();
        s.expected = Some(batch_indices.to_vec());
        s.batch_offset = 0;
        s.recycle_rows();
        s.current = None;
    }

    /// Back to the default: capture the last token of each ubatch.
    pub fn expect_last_token(&self) {
        let mut s = self.lock();
        s.expected = None;
        s.batch_offset = 0;
    }

    /// Chooses which captured row (by batch index) the samplers read next;
    /// `None`: the last captured row.
    pub fn select_output(&self, batch_index: Option<usize>) {
        let mut s = self.lock();
        s.current = batch_index.and_then(|b| s.rows.iter().position(|r| r.batch_index == Some(b)));
    }

    /// True when the rows come from the most recent graph evaluation.
    pub fn is_fresh(&self) -> bool {
        let s = self.lock();
        fresh(&s)
    }

    /// The rows of the last decode, if fresh.
    pub fn rows(&self) -> Option<Vec<CapturedRow>> {
        let s = self.lock();
        fresh(&s).then(|| s.rows.clone())
    }

    /// Graph evaluations seen so far (a stamp for tests and traces).
    pub fn graphs_done(&self) -> u64 {
        self.lock().graphs_done
    }

    /// The reason the last observation was unusable, if any.
    pub fn problem(&self) -> Option<String> {
        self.lock().problem.clone()
    }

    /// The eval callback's body.
    fn on_tensor(&self, t: &sys::ggml_tensor, ask: bool) -> bool {
        let name = unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_bytes();
        let is_softmax = name == self.softmax_name.as_bytes();
        let is_scores = self.capture_scores && name == self.scores_name.as_bytes();
        if ask {
            if name == OUTPUT_NODE.as_bytes() {
                self.lock().graphs_done += 1;
            }
            return is_softmax || is_scores;
        }
        if !(is_softmax || is_scores) {
            return true;
        }
        let mut s = self.lock();
        if let Err(problem) = self.copy_rows(t, is_softmax, &mut s) {
            s.problem = Some(problem);
        }
        true
    }

    fn copy_rows(&self, t: &sys::ggml_tensor, is_softmax: bool, s: &mut State) -> Result<(), String> {
        if t.type_ != sys::GGML_TYPE_F32 {
            return Err(format!("attention tensor has ggml type {}, not F32", t.type_));
        }
        let [n_kv, n_tokens, n_head, n_stream] = t.ne.map(|x| x.max(0) as usize);
        if n_stream != 1 {
            return Err(format!("the KV cache has {n_stream} streams; capture needs one (n_seq_max = 1 or kv_unified)"));
        }
        let graph = s.graphs_done;
        let new_graph = s.seen_graph != Some(graph);
        if is_softmax {
            s.seen_graph = Some(graph);
            if s.expected.is_none() && new_graph {
                s.recycle_rows();
            }
        } else {
            // Scores of an earlier ubatch that never met their softmax.
            let stale: Vec<Vec<f32>> = s.pending_scores.drain(..).map(|(_, v)| v).collect();
            s.spare.extend(stale);
        }
        let State { expected, batch_offset, spare, pending_scores, rows, .. } = s;
        let n_wanted = expected.as_ref().map_or(1, Vec::len);
        for w in 0..n_wanted {
            // Which row of this ubatch, and its index in the host's batch.
            let (r, b) = match expected.as_ref() {
                Some(list) if (*batch_offset..*batch_offset + n_tokens).contains(&list[w]) => (list[w] - *batch_offset, Some(list[w])),
                Some(_) => continue,
                None => (n_tokens.saturating_sub(1), None),
            };
            // Buffers are recycled from earlier steps: no allocation per step
            // once the shapes have been seen.
            let mut buf = spare.pop().unwrap_or_default();
            buf.resize(n_head * n_kv, 0.0);
            for h in 0..n_head {
                let offset = r * t.nb[1] + h * t.nb[2];
                // SAFETY: offset + n_kv floats lies inside the tensor (row r
                // of head h, contiguous along ne0); the destination holds n_kv
                // floats. Works for CPU, CUDA and Metal buffers.
                unsafe {
                    sys::ggml_backend_tensor_get(t, buf[h * n_kv..].as_mut_ptr().cast(), offset, n_kv * std::mem::size_of::<f32>());
                }
            }
            if is_softmax {
                let scores = pending_scores.iter().position(|(pr, _)| *pr == r).map(|i| pending_scores.swap_remove(i).1);
                rows.push(CapturedRow { batch_index: b, n_kv, n_head, probs: buf, scores });
            } else {
                pending_scores.push((r, buf));
            }
        }
        if is_softmax {
            if expected.is_some() {
                *batch_offset += n_tokens;
            }
            s.problem = None;
        }
        Ok(())
    }
}

impl State {
    /// Moves the rows' buffers to the spare pool and empties `rows`.
    fn recycle_rows(&mut self) {
        for row in self.rows.drain(..) {
            self.spare.push(row.probs);
            self.spare.extend(row.scores);
        }
    }
}

/// Rows are fresh when the last completed graph computed our tensor.
fn fresh(s: &State) -> bool {
    !s.rows.is_empty() && s.graphs_done > 0 && s.seen_graph == Some(s.graphs_done - 1)
}

impl AttentionSource for AttentionCapture {
    fn metrics(&self) -> Option<AttentionMetrics> {
        let s = self.lock();
        if !fresh(&s) {
            drop(s);
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "entropix: no fresh attention for this step (flash attention on, or the eval callback not installed); \
                     attention metrics are unavailable, samplers fall back to logits metrics"
                );
            }
            return None;
        }
        let row = match s.current {
            Some(i) => s.rows.get(i)?,
            None => s.rows.last()?,
        };
        attention_metrics(&row.probs, row.n_head, row.n_kv, row.scores.as_deref().map(|sc| (sc, self.scale)))
    }
}

/// The body of the eval callback (`entropix_attention_eval_callback` in the
/// C ABI): asks only for the captured layer's tensors and copies only the
/// rows being sampled. With NULL arguments it asks for nothing.
///
/// # Safety
/// `user_data` is NULL or the capture's [`AttentionCapture::user_data`],
/// alive for as long as the context uses it; `t` is NULL or a valid tensor.
pub unsafe fn eval_callback(t: *mut sys::ggml_tensor, ask: bool, user_data: *mut c_void) -> bool {
    if t.is_null() || user_data.is_null() {
        return !ask;
    }
    let capture = &*(user_data as *const AttentionCapture);
    capture.on_tensor(&*t, ask)
}
