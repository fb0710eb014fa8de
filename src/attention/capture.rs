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
    /// Scale applied to raw scores; 0 (the default) takes the scale the
    /// graph applied (the softmax op's parameter: 1/sqrt(d_head) for most
    /// models, 1 for those that scale Q beforehand, such as Gemma 3).
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
    /// The scale the softmax applied to `scores` (its op parameter), or the
    /// configured override.
    pub scale: f32,
    /// The token's position in its sequence, as the graph's RoPE read it
    /// (the `pos` the host put in the batch); `None` for models whose
    /// attention applies no RoPE.
    pub pos: Option<i32>,
}

#[derive(Debug, Default)]
struct State {
    /// Graph evaluations completed (counted at the output node).
    graphs_done: u64,
    /// The graph whose attention tensor we last saw.
    seen_graph: Option<u64>,
    /// The outputs of the decode the host announced, if it did.
    expected: Option<Expectation>,
    /// Scores of the current ubatch, waiting for the softmax of that ubatch.
    pending_scores: Vec<(usize, Vec<f32>)>,
    /// Buffers of earlier rows, reused for the next copies.
    spare: Vec<Vec<f32>>,
    rows: Vec<CapturedRow>,
    /// Batch index of the row the samplers read; `None`: the last row.
    selected: Option<usize>,
    /// Why the last observation was not usable, if it was not.
    problem: Option<String>,
}

/// One announced decode: which batch rows to keep, and how far its ubatches
/// have come.
#[derive(Debug)]
struct Expectation {
    /// Batch indices whose rows are kept, ascending.
    indices: Vec<usize>,
    /// Tokens in the host's batch.
    n_tokens: usize,
    /// Batch offset of the next ubatch.
    offset: usize,
    /// The graph that computed the last ubatch, once the decode is complete.
    completed_in: Option<u64>,
}

/// What [`AttentionCapture::set_aside`] moved out of the capture, for
/// [`AttentionCapture::restore`].
#[derive(Debug)]
pub struct SetAside {
    /// Whether the rows were fresh (from the latest decode) when set aside.
    fresh: bool,
    expected: Option<Expectation>,
    rows: Vec<CapturedRow>,
    selected: Option<usize>,
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
/// Batches: without [`AttentionCapture::expect_batch`] the capture keeps
/// the last token's row of the last ubatch, which is the row being sampled
/// for one sequence decoded with `logits` on its last token. For several
/// sequences or output rows, name the batch indices that carry logits
/// before each `llama_decode`; this needs a single KV stream (`n_seq_max ==
/// 1` or `kv_unified == true`), where llama.cpp splits batches into ubatches
/// in order. An announcement covers one decode: rows are served only for
/// the decode and the output they came from. A later decode that was not
/// announced falls back to the last token's row (so a sampler that selects
/// a batch index gets no attention then, not an earlier step's).
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
        if !(config.attention_scale >= 0.0) || !config.attention_scale.is_finite() {
            return Err(format!("attention_scale must be finite and >= 0 (0: the graph's own scale), got {}", config.attention_scale));
        }
        Ok(Self::with_layer(layer, config.capture_scores, config.attention_scale))
    }

    /// A capture of layer `layer`; `scale` > 0 overrides the score scale the
    /// graph applied (0: use the graph's).
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

    /// The score scale of the last captured row: the configured override,
    /// else the one the graph applied; `None` before the first capture
    /// without an override.
    pub fn scale(&self) -> Option<f32> {
        if self.scale > 0.0 {
            return Some(self.scale);
        }
        self.lock().rows.last().map(|r| r.scale)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces the next `llama_decode`: a batch of `n_tokens` tokens whose
    /// rows `batch_indices` will be sampled. Their rows are captured, and
    /// served until the next decode. Errors (and changes nothing) when an
    /// index is not below `n_tokens`.
    pub fn expect_batch(&self, batch_indices: &[usize], n_tokens: usize) -> Result<(), String> {
        if let Some(&bad) = batch_indices.iter().find(|&&i| i >= n_tokens) {
            return Err(format!("batch index {bad} is outside the batch of {n_tokens} tokens"));
        }
        let mut indices = batch_indices.to_vec();
        indices.sort_unstable();
        indices.dedup();
        let mut s = self.lock();
        s.expected = Some(Expectation { indices, n_tokens, offset: 0, completed_in: None });
        s.recycle_rows();
        s.selected = None;
        Ok(())
    }

    /// [`AttentionCapture::expect_batch`] for a batch that ends with its
    /// last output (`n_tokens` = the largest index + 1). A batch with tokens
    /// after its last output needs `expect_batch`: here its last ubatch
    /// would count as an unannounced decode (no rows, never stale ones).
    pub fn expect_outputs(&self, batch_indices: &[usize]) {
        let n_tokens = batch_indices.iter().max().map_or(0, |m| m + 1);
        self.expect_batch(batch_indices, n_tokens).expect("every index is below the largest + 1");
    }

    /// Back to the default: capture the last token of each ubatch.
    pub fn expect_last_token(&self) {
        let mut s = self.lock();
        s.expected = None;
        s.selected = None;
    }

    /// Chooses which captured row (by batch index) the samplers read next;
    /// `None`: the last captured row. A batch index the last decode did not
    /// capture gives no attention (never another row).
    pub fn select_output(&self, batch_index: Option<usize>) {
        self.lock().selected = batch_index;
    }

    /// True when the rows come from the most recent decode.
    pub fn is_fresh(&self) -> bool {
        let s = self.lock();
        fresh(&s)
    }

    /// The rows of the last decode, if fresh.
    pub fn rows(&self) -> Option<Vec<CapturedRow>> {
        let s = self.lock();
        fresh(&s).then(|| s.rows.clone())
    }

    /// The position (in its sequence) of the token whose row the samplers
    /// read now (the row [`AttentionCapture::select_output`] chose, else
    /// the last): `Ok(Some(pos))` from the graph's RoPE positions,
    /// `Ok(None)` when the model applies no RoPE, `Err` when no fresh row
    /// is there to read.
    pub fn selected_position(&self) -> Result<Option<i32>, String> {
        let s = self.lock();
        if !fresh(&s) {
            return Err(s.problem.clone().unwrap_or_else(|| "no attention captured from the last decode".into()));
        }
        let row = s.selected_row().ok_or_else(|| format!("the last decode captured no row for batch index {:?}", s.selected))?;
        Ok(row.pos)
    }

    /// Graph evaluations seen so far (a stamp: it changes with every
    /// decode).
    pub fn graphs_done(&self) -> u64 {
        self.lock().graphs_done
    }

    /// Moves out what the samplers read (the rows, the announcement, the
    /// selection), leaving the capture empty, for a decode of one's own
    /// such as the AlphaSampler's lookahead; [`AttentionCapture::restore`]
    /// puts it back, so the host and the other samplers then read the
    /// host's rows as if that decode had not happened. Moves, never copies.
    pub fn set_aside(&self) -> SetAside {
        let mut s = self.lock();
        let was_fresh = fresh(&s);
        SetAside { fresh: was_fresh, expected: s.expected.take(), rows: std::mem::take(&mut s.rows), selected: s.selected.take(), problem: s.problem.take() }
    }

    /// Puts back what [`AttentionCapture::set_aside`] moved out; the rows
    /// of the decodes since are recycled. Rows that were fresh then are
    /// fresh again until the next decode.
    pub fn restore(&self, saved: SetAside) {
        let mut s = self.lock();
        s.recycle_rows();
        s.recycle_pending_scores();
        s.expected = saved.expected;
        s.rows = saved.rows;
        s.selected = saved.selected;
        s.problem = saved.problem;
        // Re-stamp: the restored rows stand for the latest graph (or stay
        // stale, as they were).
        let last_graph = s.graphs_done.checked_sub(1);
        s.seen_graph = if saved.fresh { last_graph } else { None };
        if let (true, Some(e)) = (saved.fresh, s.expected.as_mut()) {
            e.completed_in = last_graph;
        }
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
        if t.type_ != sys::GGML_TYPE_F32 || t.nb[0] != std::mem::size_of::<f32>() {
            s.recycle_rows();
            return Err(format!("attention tensor has ggml type {} and element stride {}: not contiguous F32", t.type_, t.nb[0]));
        }
        let [n_kv, n_tokens, n_head, n_stream] = t.ne.map(|x| x.max(0) as usize);
        if n_stream != 1 {
            s.recycle_rows();
            return Err(format!("the KV cache has {n_stream} streams; capture needs one (n_seq_max = 1 or kv_unified)"));
        }
        let graph = s.graphs_done;
        let new_graph = s.seen_graph != Some(graph);
        let mut unannounced = false;
        if is_softmax {
            s.seen_graph = Some(graph);
            if new_graph {
                unannounced = s.start_ubatch(graph);
            }
        } else {
            // Scores of an earlier ubatch that never met their softmax.
            s.recycle_pending_scores();
        }
        // The softmax op's first parameter is the scale it applied to the
        // scores (ggml_soft_max_ext).
        let scale = if self.scale > 0.0 {
            self.scale
        } else if t.op == sys::GGML_OP_SOFT_MAX {
            f32::from_bits(t.op_params[0] as u32)
        } else {
            1.0
        };
        // SAFETY: `t` is a node of the graph being computed: its sources
        // are live tensors.
        let positions = if is_softmax { unsafe { rope_positions(t) } } else { None };
        let State { expected, spare, pending_scores, rows, .. } = s;
        // Rows of this ubatch to keep: (row in the ubatch, batch index).
        let wanted: Vec<(usize, Option<usize>)> = match expected.as_ref() {
            Some(e) => e.indices.iter().filter(|&&i| (e.offset..e.offset + n_tokens).contains(&i)).map(|&i| (i - e.offset, Some(i))).collect(),
            None => vec![(n_tokens.saturating_sub(1), None)],
        };
        for (r, b) in wanted {
            // Buffers are recycled from earlier steps: no allocation per step
            // once the shapes have been seen.
            let mut buf = spare.pop().unwrap_or_default();
            buf.resize(n_head * n_kv, 0.0);
            for h in 0..n_head {
                let offset = r * t.nb[1] + h * t.nb[2];
                // SAFETY: offset + n_kv floats lies inside the tensor (row r
                // of head h, contiguous along ne0: nb[0] is checked above);
                // the destination holds n_kv floats. Works for CPU, CUDA and
                // Metal buffers.
                unsafe {
                    sys::ggml_backend_tensor_get(t, buf[h * n_kv..].as_mut_ptr().cast(), offset, n_kv * std::mem::size_of::<f32>());
                }
            }
            if is_softmax {
                let scores = pending_scores.iter().position(|(pr, _)| *pr == r).map(|i| pending_scores.swap_remove(i).1);
                // SAFETY: the positions tensor is the graph's, checked in
                // `rope_positions` (I32 with a buffer); r is below its ne[0].
                let pos = positions.filter(|p| r < p.ne[0].max(0) as usize).map(|p| unsafe { read_i32(p, r) });
                rows.push(CapturedRow { batch_index: b, n_kv, n_head, probs: buf, scores, scale, pos });
            } else {
                pending_scores.push((r, buf));
            }
        }
        if is_softmax {
            if let Some(e) = expected.as_mut() {
                e.offset += n_tokens;
                if e.offset > e.n_tokens {
                    let (offset, n) = (e.offset, e.n_tokens);
                    s.expected = None;
                    s.recycle_rows();
                    return Err(format!("the decode had more tokens than announced ({offset} seen, {n} announced)"));
                }
                if e.offset == e.n_tokens {
                    e.completed_in = Some(graph);
                }
            }
            if !unannounced {
                s.problem = None;
            }
        }
        Ok(())
    }
}

/// The positions the RoPE of `softmax`'s queries read (the graph's
/// `inp_pos`, one I32 per token of the ubatch, more for multi-section
/// RoPE): found by walking the sources from the softmax back to a ROPE
/// node (a few steps: kq, the permuted Q, norms and scales, the RoPE).
/// `None` when no ROPE is within reach or its positions are not a readable
/// I32 tensor.
///
/// # Safety
/// `softmax` is a node of the graph being computed.
unsafe fn rope_positions(softmax: &sys::ggml_tensor) -> Option<&sys::ggml_tensor> {
    const MAX_DEPTH: usize = 8;
    const MAX_NODES: usize = 64;
    // A fixed stack (this runs once per decode): a full one skips sources.
    let mut stack = [(std::ptr::null::<sys::ggml_tensor>(), 0usize); MAX_NODES];
    stack[0] = (softmax, 0);
    let mut len = 1;
    let mut visited = 0;
    while len > 0 {
        len -= 1;
        let (t, depth) = stack[len];
        let t = &*t;
        visited += 1;
        if t.op == sys::GGML_OP_ROPE {
            let pos = t.src[1].cast_const().as_ref()?;
            let has_buffer = !pos.buffer.is_null() || pos.view_src.as_ref().is_some_and(|v| !v.buffer.is_null());
            return (pos.type_ == sys::GGML_TYPE_I32 && has_buffer && pos.nb[0] == 4).then_some(pos);
        }
        if depth == MAX_DEPTH || visited == MAX_NODES {
            continue;
        }
        // Q is the second source of kq = mul_mat(k, q): push sources in
        // reverse so the first is explored first, as a path to Q is short.
        for &src in t.src.iter().rev() {
            if !src.is_null() && len < MAX_NODES {
                stack[len] = (src, depth + 1);
                len += 1;
            }
        }
    }
    None
}

/// Element `i` of a contiguous I32 tensor, from any backend's memory.
///
/// # Safety
/// `t` is a live I32 tensor with a buffer, `i < ne[0]`.
unsafe fn read_i32(t: &sys::ggml_tensor, i: usize) -> i32 {
    let mut v: i32 = 0;
    sys::ggml_backend_tensor_get(t, (&mut v as *mut i32).cast(), i * 4, 4);
    v
}

impl State {
    /// The first attention tensor of graph `graph`: a new ubatch, of the
    /// announced decode or of a new one. True when it is a decode after
    /// the announced one that was not announced (recorded as the problem).
    fn start_ubatch(&mut self, graph: u64) -> bool {
        match &self.expected {
            // The announced decode goes on (its rows are kept).
            Some(e) if e.completed_in.is_none() => {}
            // A decode after the announced one, not announced itself: back
            // to the default, whose samplers read the last row.
            Some(_) => {
                // The selection stays: a host that reads a batch index gets
                // no attention for this decode, never another row.
                self.expected = None;
                self.recycle_rows();
                self.problem = Some(format!("graph {graph}: a decode after the announced one was not announced; capturing its last token"));
                return true;
            }
            None => self.recycle_rows(),
        }
        false
    }

    /// Moves the buffers of scores still waiting for their softmax to the
    /// spare pool.
    fn recycle_pending_scores(&mut self) {
        let State { pending_scores, spare, .. } = self;
        spare.extend(pending_scores.drain(..).map(|(_, v)| v));
    }

    /// The row the samplers read: the selected batch index's, else the
    /// last captured; `None` when the last decode captured no such row.
    fn selected_row(&self) -> Option<&CapturedRow> {
        match self.selected {
            Some(b) => self.rows.iter().find(|r| r.batch_index == Some(b)),
            None => self.rows.last(),
        }
    }

    /// Moves the rows' buffers to the spare pool and empties `rows`.
    fn recycle_rows(&mut self) {
        for row in self.rows.drain(..) {
            self.spare.push(row.probs);
            self.spare.extend(row.scores);
        }
    }
}

/// Rows are fresh when the last completed graph computed our tensor and,
/// for an announced decode, completed it.
fn fresh(s: &State) -> bool {
    let last_graph = s.graphs_done.checked_sub(1);
    let complete = match &s.expected {
        Some(e) => e.completed_in.is_some() && e.completed_in == last_graph,
        None => true,
    };
    !s.rows.is_empty() && last_graph.is_some() && s.seen_graph == last_graph && complete
}

impl AttentionSource for AttentionCapture {
    fn metrics(&self) -> Option<AttentionMetrics> {
        let s = self.lock();
        if !fresh(&s) {
            let problem = s.problem.clone();
            drop(s);
            log::debug!(target: "entropix_sampler", "attention: no fresh row for this step{}", problem.map_or(String::new(), |p| format!(": {p}")));
            if !self.warned.swap(true, Ordering::Relaxed) {
                let message = "no fresh attention for this step (flash attention on, or the eval callback not installed); \
                               attention metrics are unavailable, samplers fall back to logits metrics";
                // Through the host's logger when it has one, else stderr
                // (C hosts), once.
                if log::max_level() != log::LevelFilter::Off {
                    log::warn!(target: "entropix_sampler", "{message}");
                } else {
                    eprintln!("entropix: {message}");
                }
            }
            return None;
        }
        let Some(row) = s.selected_row() else {
            log::debug!(target: "entropix_sampler", "attention: the selected batch index {:?} was not captured in the last decode", s.selected);
            return None;
        };
        attention_metrics(&row.probs, row.n_head, row.n_kv, row.scores.as_deref().map(|sc| (sc, row.scale)))
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
