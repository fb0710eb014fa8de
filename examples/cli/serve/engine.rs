//! The generation engine: one thread owns the context; up to `--parallel`
//! requests (slots) decode together in one batch per step, each with its
//! own sequence, sampler chain, seed and attention rows. A request that
//! arrives joins the running batch at the next step (continuous batching);
//! one whose client went away is dropped at the next step.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use entropix_sampler::attention::AttentionCapture;
use entropix_sampler::core::{TokenData, TokenId};
use entropix_sampler::ffi::sampler_ref;
use entropix_sampler::llama::{Context, SamplerChain, Utf8Stream};
use entropix_sampler::metrics::{logit_moments, AttentionSource};
use entropix_sampler::sys;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::stop::{StopWatch, Watched};

/// One request, ready to run.
pub struct Job {
    /// The request id of the logs.
    pub id: u64,
    pub prompt: Vec<TokenId>,
    /// The request's chain; the prompt is already accepted into it.
    pub chain: SamplerChain,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub logprobs: Option<usize>,
    pub logit_bias: Vec<(TokenId, f32)>,
    pub ignore_eos: bool,
    pub telemetry: bool,
    /// Where the tokens go; closed when the client goes away.
    pub events: UnboundedSender<Event>,
}

/// What the engine sends back for a job.
#[derive(Debug)]
pub enum Event {
    /// One sampled token and the text it released (possibly empty: held
    /// back by a stop string or an incomplete UTF-8 sequence).
    Token(TokenOut),
    /// The last event of a job that ran to its end.
    Done(Finish),
    /// The last event of a job that failed.
    Failed(String),
}

/// A sampled token.
#[derive(Debug)]
pub struct TokenOut {
    /// The text this token releases to the client.
    pub text: String,
    /// The token's own text (`logprobs.content[].token`); empty without
    /// `logprobs`.
    pub piece: String,
    /// Its log-probability under the model (T 1, no filtering), nats;
    /// with `logprobs`.
    pub logprob: Option<f32>,
    /// The most likely tokens of that distribution and their
    /// log-probabilities; with `logprobs`.
    pub top: Vec<(String, f32)>,
    /// Per-token telemetry; with `telemetry`.
    pub telemetry: Option<Value>,
}

/// Why a job ended, and its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of generation or a stop string.
    Stop,
    /// `max_tokens`, or the slot's context is full.
    Length,
}

#[derive(Debug)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// From the slot's start to the first token's logits (prompt
    /// decoding, shared batches included), milliseconds.
    pub prompt_ms: f64,
    /// From then to the last token, milliseconds.
    pub predicted_ms: f64,
}

/// Counters for `/metrics`, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests_total: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_cancelled: AtomicU64,
    pub prompt_tokens_total: AtomicU64,
    pub completion_tokens_total: AtomicU64,
    pub decode_microseconds_total: AtomicU64,
    pub sample_microseconds_total: AtomicU64,
    pub slots_busy: AtomicUsize,
    /// Jobs sent to the engine and not yet in a slot.
    pub queued: AtomicUsize,
    /// Jobs accepted and not yet ended (in a slot or queued): what the
    /// HTTP side checks against `--parallel` + `--queue`.
    pub admitted: AtomicUsize,
}

/// A request being served.
struct Slot {
    job: Job,
    seq: i32,
    /// Tokens of the prompt decoded so far.
    prompt_done: usize,
    /// Position of the next token in the sequence.
    n_past: i32,
    /// The token sampled last, to decode in the next batch.
    pending: Option<TokenId>,
    generated: usize,
    text: Utf8Stream,
    stop: StopWatch,
    /// Index of this slot's output in the batch being decoded.
    output: Option<usize>,
    started: Instant,
    prompt_time: Option<Duration>,
}

/// The engine's fixed settings.
pub struct EngineConfig {
    pub parallel: usize,
    /// The model's end-of-generation tokens, listed once: masked for
    /// `ignore_eos` requests.
    pub eog: Vec<TokenId>,
    /// Tokens each slot may hold (prompt and generated).
    pub slot_ctx: usize,
}

/// Runs jobs from `jobs` until every sender is gone and the slots are
/// empty.
pub fn run(ctx: &mut Context<'_>, capture: &Arc<AttentionCapture>, jobs: Receiver<Job>, config: &EngineConfig, counters: &Counters) {
    let mut slots: Vec<Option<Slot>> = (0..config.parallel).map(|_| None).collect();
    let n_batch = ctx.n_batch();
    let mut entries: Vec<(TokenId, i32, i32, bool)> = Vec::with_capacity(n_batch);
    let mut outputs: Vec<usize> = Vec::with_capacity(config.parallel);
    let mut candidates: Vec<TokenData> = Vec::new();
    let mut open = true;
    loop {
        // Admit: wait when idle, otherwise take what has arrived.
        while let Some(free) = slots.iter().position(Option::is_none) {
            let busy = slots.iter().any(Option::is_some);
            counters.slots_busy.store(slots.iter().filter(|s| s.is_some()).count(), Ordering::Relaxed);
            let job = if busy || !open {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            };
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            let seq = free as i32;
            ctx.remove_positions(seq, -1, -1);
            let stop = StopWatch::new(job.stop.clone());
            slots[free] = Some(Slot {
                job,
                seq,
                prompt_done: 0,
                n_past: 0,
                pending: None,
                generated: 0,
                text: Utf8Stream::default(),
                stop,
                output: None,
                started: Instant::now(),
                prompt_time: None,
            });
        }
        // Clients that went away free their slot.
        for slot in slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| s.job.events.is_closed()) {
                let s = slot.take().expect("checked");
                log::info!("request {}: client disconnected after {} tokens; slot {} freed", s.job.id, s.generated, s.seq);
                counters.requests_cancelled.fetch_add(1, Ordering::Relaxed);
                counters.admitted.fetch_sub(1, Ordering::Relaxed);
                ctx.remove_positions(s.seq, -1, -1);
            }
        }
        counters.slots_busy.store(slots.iter().filter(|s| s.is_some()).count(), Ordering::Relaxed);
        if slots.iter().all(Option::is_none) {
            if open {
                continue;
            }
            return;
        }

        // One batch: each generating slot's last token, then prompt chunks.
        entries.clear();
        outputs.clear();
        for slot in slots.iter_mut().flatten() {
            slot.output = None;
            if let Some(t) = slot.pending.take() {
                entries.push((t, slot.n_past, slot.seq, true));
                slot.n_past += 1;
                slot.output = Some(entries.len() - 1);
                outputs.push(entries.len() - 1);
            }
        }
        for slot in slots.iter_mut().flatten() {
            let left = slot.job.prompt.len() - slot.prompt_done;
            if left == 0 || slot.output.is_some() {
                continue;
            }
            let take = left.min(n_batch - entries.len());
            for i in 0..take {
                let last = slot.prompt_done + i + 1 == slot.job.prompt.len();
                entries.push((slot.job.prompt[slot.prompt_done + i], slot.n_past, slot.seq, last));
                slot.n_past += 1;
                if last {
                    slot.output = Some(entries.len() - 1);
                    outputs.push(entries.len() - 1);
                }
            }
            slot.prompt_done += take;
            if entries.len() == n_batch {
                break;
            }
        }
        if entries.is_empty() {
            continue;
        }
        capture.expect_batch(&outputs, entries.len()).expect("outputs index the batch");
        let t_decode = Instant::now();
        let decoded = ctx.decode_entries(&entries);
        counters.decode_microseconds_total.fetch_add(t_decode.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = decoded {
            // Fail the slots of this batch; the others keep generating.
            let seqs: Vec<i32> = entries.iter().map(|e| e.2).collect();
            for slot in slots.iter_mut() {
                if slot.as_ref().is_some_and(|s| seqs.contains(&s.seq)) {
                    let s = slot.take().expect("checked");
                    log::error!("request {}: decode failed: {e}", s.job.id);
                    counters.requests_failed.fetch_add(1, Ordering::Relaxed);
                    let _ = s.job.events.send(Event::Failed(format!("decode failed: {e}")));
                    counters.admitted.fetch_sub(1, Ordering::Relaxed);
                    ctx.remove_positions(s.seq, -1, -1);
                }
            }
            continue;
        }

        // Sample each slot that has an output in this batch.
        for slot_ref in slots.iter_mut() {
            let Some(slot) = slot_ref.as_mut() else { continue };
            let Some(idx) = slot.output else { continue };
            if slot.prompt_time.is_none() {
                slot.prompt_time = Some(slot.started.elapsed());
            }
            let t_sample = Instant::now();
            let step = sample(ctx, capture, slot, idx, &config.eog, &mut candidates);
            counters.sample_microseconds_total.fetch_add(t_sample.elapsed().as_micros() as u64, Ordering::Relaxed);
            let finished = match step {
                Err(e) => {
                    counters.requests_failed.fetch_add(1, Ordering::Relaxed);
                    log::error!("request {}: {e}", slot.job.id);
                    let _ = slot.job.events.send(Event::Failed(e));
                    true
                }
                Ok(step) => advance(ctx, slot, step, config),
            };
            if finished {
                let s = slot_ref.take().expect("present");
                counters.prompt_tokens_total.fetch_add(s.job.prompt.len() as u64, Ordering::Relaxed);
                counters.completion_tokens_total.fetch_add(s.generated as u64, Ordering::Relaxed);
                let total = s.started.elapsed();
                let prompt = s.prompt_time.unwrap_or_default();
                let gen = total.saturating_sub(prompt).as_secs_f64();
                log::info!(
                    "request {}: slot {}: {} prompt tokens in {:.1} ms, {} tokens in {:.1} ms ({:.1} tokens/s)",
                    s.job.id,
                    s.seq,
                    s.job.prompt.len(),
                    prompt.as_secs_f64() * 1e3,
                    s.generated,
                    gen * 1e3,
                    if gen > 0.0 { s.generated as f64 / gen } else { 0.0 }
                );
                counters.admitted.fetch_sub(1, Ordering::Relaxed);
                ctx.remove_positions(s.seq, -1, -1);
            }
        }
        counters.slots_busy.store(slots.iter().filter(|s| s.is_some()).count(), Ordering::Relaxed);
    }
}

/// One sampled token and what came with it.
struct Step {
    token: TokenId,
    logprob: Option<f32>,
    top: Vec<(TokenId, f32)>,
    telemetry: Option<Value>,
}

/// Applies the slot's chain to output `idx` of the last batch, as
/// `llama_sampler_sample` does, with the request's logit bias and EOG ban
/// first; reads logprobs and telemetry.
fn sample(
    ctx: &Context<'_>,
    capture: &Arc<AttentionCapture>,
    slot: &mut Slot,
    idx: usize,
    eog: &[TokenId],
    candidates: &mut Vec<TokenData>,
) -> Result<Step, String> {
    let model = ctx.model();
    // SAFETY: a live context; `idx` is an output of the last decode.
    let ptr = unsafe { sys::llama_get_logits_ith(ctx.as_ptr(), idx as i32) };
    if ptr.is_null() {
        return Err(format!("no logits for batch index {idx}"));
    }
    let logits = unsafe { std::slice::from_raw_parts(ptr, model.n_vocab()) };
    candidates.clear();
    candidates.extend(logits.iter().enumerate().map(|(id, &l)| TokenData::new(id as TokenId, l)));
    for &(id, bias) in &slot.job.logit_bias {
        if let Some(c) = candidates.get_mut(id as usize) {
            c.logit += bias;
        }
    }
    if slot.job.ignore_eos {
        for &t in eog {
            if let Some(c) = candidates.get_mut(t as usize) {
                c.logit = f32::NEG_INFINITY;
            }
        }
    }
    let moments = if slot.job.telemetry { logit_moments(candidates) } else { None };
    // The raw distribution, read before the chain runs and reorders it.
    let log_z = slot.job.logprobs.map(|_| log_partition(logits));
    let top = match slot.job.logprobs {
        Some(k) if k > 0 => top_k_logprobs(logits, k, log_z.unwrap_or(0.0)),
        _ => Vec::new(),
    };

    capture.select_output(Some(idx));
    let mut arr = sys::llama_token_data_array { data: candidates.as_mut_ptr().cast(), size: candidates.len(), selected: -1, sorted: false };
    // SAFETY: the array points at `candidates`, alive for the call.
    unsafe { sys::llama_sampler_apply(slot.job.chain.as_ptr(), &mut arr) };
    let sel = usize::try_from(arr.selected).ok().filter(|&s| s < arr.size).ok_or_else(|| format!("the sampler chain selected no token: {}", chain_error()))?;
    // SAFETY: samplers may point `data` elsewhere; read from where it points.
    let token = unsafe { (*arr.data.add(sel)).id };
    slot.job.chain.accept(token);

    let telemetry = slot.job.telemetry.then(|| telemetry(token, &slot.job.chain, capture, moments));
    let logprob = log_z.map(|z| logits.get(token as usize).map_or(f32::NEG_INFINITY, |&l| (l as f64 - z) as f32));
    Ok(Step { token, logprob, top, telemetry })
}

/// The library's last error, for a chain that selected nothing.
fn chain_error() -> String {
    let p = entropix_sampler::ffi::entropix_last_error();
    if p.is_null() {
        return "no error recorded".into();
    }
    // SAFETY: a NUL-terminated string owned by the library's thread-local.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Streams the token, checks the stop conditions; true when the slot is
/// done (its last event sent).
fn advance(ctx: &Context<'_>, slot: &mut Slot, step: Step, config: &EngineConfig) -> bool {
    let model = ctx.model();
    let eog = model.is_eog(step.token);
    let out = |text: String, step: &Step| TokenOut {
        text,
        // Only `logprobs` shows the token's own text.
        piece: if step.logprob.is_some() { model.token_text(step.token) } else { String::new() },
        logprob: step.logprob,
        top: step.top.iter().map(|&(id, lp)| (model.token_text(id), lp)).collect(),
        telemetry: step.telemetry.clone(),
    };
    let finish = |slot: &Slot, reason| {
        let prompt = slot.prompt_time.unwrap_or_default();
        Event::Done(Finish {
            reason,
            prompt_tokens: slot.job.prompt.len(),
            completion_tokens: slot.generated,
            prompt_ms: prompt.as_secs_f64() * 1e3,
            predicted_ms: slot.started.elapsed().saturating_sub(prompt).as_secs_f64() * 1e3,
        })
    };
    if eog {
        // The end-of-generation token is not part of the text; it counts as
        // a completion token, as in llama-server.
        slot.generated += 1;
        let rest = slot.text.finish() + &slot.stop.finish();
        let _ = slot.job.events.send(Event::Token(out(rest, &step)));
        let _ = slot.job.events.send(finish(slot, FinishReason::Stop));
        return true;
    }
    slot.generated += 1;
    let piece = slot.text.push(&model.token_bytes(step.token, false));
    match slot.stop.push(&piece) {
        Watched::Stop(text) => {
            let _ = slot.job.events.send(Event::Token(out(text, &step)));
            let _ = slot.job.events.send(finish(slot, FinishReason::Stop));
            true
        }
        Watched::Go(text) => {
            let limit = slot.job.max_tokens.is_some_and(|m| slot.generated >= m);
            let full = slot.n_past as usize + 1 >= config.slot_ctx;
            if limit || full {
                let text = text + &slot.text.finish() + &slot.stop.finish();
                let _ = slot.job.events.send(Event::Token(out(text, &step)));
                let _ = slot.job.events.send(finish(slot, FinishReason::Length));
                return true;
            }
            let _ = slot.job.events.send(Event::Token(out(text, &step)));
            slot.pending = Some(step.token);
            false
        }
    }
}

/// ln sum exp(logits), in f64.
fn log_partition(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln()
}

/// The `k` largest logits as (token, log-probability), most likely first.
fn top_k_logprobs(logits: &[f32], k: usize, log_z: f64) -> Vec<(TokenId, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
    idx.truncate(k);
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.into_iter().map(|i| (i as TokenId, (logits[i] as f64 - log_z) as f32)).collect()
}

/// Per-token telemetry: the token id, the entropy and varentropy of the distribution the
/// chain received (bits, bits²), the attention metrics of this slot's row,
/// the strategy (entropix, four-mode), state (alpha) or path (dirichlet)
/// taken, and the name
/// and step report of the chain's adaptive sampler (null for a chain
/// without one).
fn telemetry(token: TokenId, chain: &SamplerChain, capture: &Arc<AttentionCapture>, moments: Option<entropix_sampler::metrics::LogitMoments>) -> Value {
    let mut strategy = Value::Null;
    let mut step = Value::Null;
    let mut name = Value::Null;
    for i in 0..chain.len() {
        // SAFETY: the chain's own samplers.
        let Some(s) = (unsafe { sampler_ref(chain.get(i)) }) else { continue };
        let state = s.state_json();
        // The adaptive samplers report their last step: `last_step`
        // (entropix, four-mode, alpha) or `last` (dirichlet).
        if let Some(last) = state.get("last_step").or_else(|| state.get("last")).filter(|v| !v.is_null()) {
            // Entropix and four-mode name a strategy, the AlphaSampler a
            // thermodynamic state (cold, mixed, hot), the Dirichlet sampler
            // the path it took.
            strategy = ["strategy", "state", "path"].iter().find_map(|k| last.get(*k)).cloned().unwrap_or(Value::Null);
            step = last.clone();
            name = json!(s.name());
        }
    }
    let attention = capture.metrics().map_or(Value::Null, |m| serde_json::to_value(m).unwrap_or(Value::Null));
    json!({
        "token": token,
        "entropy_bits": moments.map(|m| m.entropy_bits()),
        "varentropy_bits2": moments.map(|m| m.varentropy_bits2()),
        "attention": attention,
        "strategy": strategy,
        "sampler_name": name,
        "sampler": step,
    })
}
