//! The generation loop: decode, sample through the chain, stream text,
//! write the trace, count time.

use std::io::Write;
use std::time::{Duration, Instant};

use entropix_sampler::core::{TokenData, TokenId};
use entropix_sampler::llama::{Context, LlamaError, SamplerChain, Utf8Stream};
use entropix_sampler::sys;

use crate::trace::{RawView, TraceWriter};

/// Time and token counts of one generation.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub n_prompt: usize,
    pub prompt_time: Duration,
    pub n_generated: usize,
    pub generation_time: Duration,
    /// Filling the candidate array from the logits and applying the chain
    /// (what llama_sampler_sample does): `fill_time + chain_time`.
    pub sampling_time: Duration,
    /// Filling the candidate array (one pass over the vocabulary).
    pub fill_time: Duration,
    /// The chain's apply and accept.
    pub chain_time: Duration,
    /// `llama_decode` of the generated tokens.
    pub decode_time: Duration,
    pub stopped_by_eog: bool,
    /// Generation ended at one of [`Generator::stop`]'s strings.
    pub stopped_by_string: bool,
    pub context_full: bool,
}

/// Everything one generation needs.
pub struct Generator<'c, 'm> {
    pub ctx: &'c mut Context<'m>,
    pub chain: &'c mut SamplerChain,
    pub trace: Option<&'c mut TraceWriter>,
    /// Position of the next token in the KV cache.
    pub n_past: i32,
    /// End-of-generation tokens to mask before sampling (`--ignore-eos`).
    pub banned_eog: Vec<TokenId>,
    /// Colour tokens by the strategy that chose them (`--color`).
    pub color: bool,
    /// Give the chain's samplers the logits of every prompt position
    /// (the adaptive Dirichlet sampler initialises its state from them).
    pub observe_prompt: bool,
    /// Stop once the generated text contains one of these strings (the
    /// token that completes it is kept; the caller trims the text).
    pub stop: Vec<String>,
    /// When set, the log-probability (nats) of every generated token under
    /// the raw model (temperature 1, no filtering) is pushed here: what
    /// `eval` reports as the NLL of the produced tokens. Costs one pass
    /// over the logits and a copy of them per token, outside the sampling
    /// time.
    pub raw_logprobs: Option<Vec<f64>>,
    candidates: Vec<TokenData>,
    /// The raw logits of the step, kept for `raw_logprobs` (reused: no
    /// allocation per token).
    raw_logits: Vec<f32>,
}

impl<'c, 'm> Generator<'c, 'm> {
    pub fn new(ctx: &'c mut Context<'m>, chain: &'c mut SamplerChain, trace: Option<&'c mut TraceWriter>) -> Self {
        Self {
            ctx,
            chain,
            trace,
            n_past: 0,
            banned_eog: Vec::new(),
            color: false,
            observe_prompt: false,
            stop: Vec::new(),
            raw_logprobs: None,
            candidates: Vec::new(),
            raw_logits: Vec::new(),
        }
    }

    /// Decodes `prompt` after what is already in the cache, then generates up
    /// to `n_predict` tokens (-1: until end of generation or a full
    /// context), writing text to `out` as it comes. Returns the generated
    /// tokens and the timings.
    pub fn run(&mut self, prompt: &[TokenId], n_predict: i32, out: &mut dyn Write) -> Result<(Vec<TokenId>, Stats), LlamaError> {
        let n_ctx = self.ctx.n_ctx();
        if self.n_past as usize + prompt.len() >= n_ctx {
            return Err(LlamaError::PromptTooLong { n_prompt: self.n_past as usize + prompt.len(), n_ctx });
        }
        let mut stats = Stats { n_prompt: prompt.len(), ..Stats::default() };
        let t0 = Instant::now();
        if self.observe_prompt {
            self.decode_prompt_observed(prompt)?;
        } else {
            self.ctx.decode(prompt, self.n_past, 0, false)?;
        }
        self.n_past += prompt.len() as i32;
        stats.prompt_time = t0.elapsed();
        let model = self.ctx.model();

        let mut text = Utf8Stream::default();
        // Reused every token: the loop allocates nothing per token (beyond
        // `generated` growing, and the trace or stop strings when asked for).
        let (mut piece_bytes, mut piece) = (Vec::with_capacity(64), String::with_capacity(64));
        let mut generated = Vec::with_capacity(if n_predict > 0 { n_predict as usize } else { 256 });
        // The text so far, kept only when stop strings are watched.
        let mut so_far = String::new();
        let t_gen = Instant::now();
        while n_predict < 0 || generated.len() < n_predict as usize {
            // Read before the chain runs (and outside its time): a sampler
            // may decode (the AlphaSampler's lookahead), which reuses the
            // logits buffer.
            let lse = self.raw_logprobs.is_some().then(|| copy_with_log_sum_exp(self.ctx.logits(-1), &mut self.raw_logits));
            let (token, fill, chain) = self.sample_next(generated.len())?;
            stats.fill_time += fill;
            stats.chain_time += chain;
            stats.sampling_time += fill + chain;
            if let (Some(lp), Some(lse)) = (self.raw_logprobs.as_mut(), lse) {
                lp.push(self.raw_logits.get(token as usize).map_or(f64::NEG_INFINITY, |&l| l as f64 - lse));
            }
            if model.is_eog(token) {
                stats.stopped_by_eog = true;
                break;
            }
            generated.push(token);
            model.token_bytes_into(token, false, &mut piece_bytes);
            piece.clear();
            text.push_into(&piece_bytes, &mut piece);
            if !self.stop.is_empty() {
                so_far.push_str(&piece);
            }
            if !piece.is_empty() {
                let colour = if self.color { strategy_colour(self.chain) } else { None };
                match colour {
                    Some(code) => {
                        let _ = write!(out, "\x1b[{code}m{piece}\x1b[0m");
                    }
                    None => {
                        let _ = out.write_all(piece.as_bytes());
                    }
                }
                let _ = out.flush();
            }
            if !self.stop.is_empty() && self.stop.iter().any(|s| so_far.contains(s.as_str())) {
                stats.stopped_by_string = true;
                break;
            }
            if self.n_past as usize + 1 >= n_ctx {
                stats.context_full = true;
                break;
            }
            let t_decode = Instant::now();
            self.ctx.decode(&[token], self.n_past, 0, false)?;
            stats.decode_time += t_decode.elapsed();
            self.n_past += 1;
        }
        let rest = text.finish();
        let _ = out.write_all(rest.as_bytes());
        let _ = out.flush();
        stats.generation_time = t_gen.elapsed();
        stats.n_generated = generated.len();
        Ok((generated, stats))
    }

    /// Decodes the prompt chunk by chunk with logits at every position
    /// (llama.cpp keeps only the last call's outputs) and hands them all to
    /// the samplers that want them.
    fn decode_prompt_observed(&mut self, prompt: &[TokenId]) -> Result<(), LlamaError> {
        let n_vocab = self.ctx.model().n_vocab();
        let mut all = Vec::with_capacity(prompt.len() * n_vocab);
        let step = self.ctx.n_batch();
        for (c, chunk) in prompt.chunks(step).enumerate() {
            self.ctx.decode(chunk, self.n_past + (c * step) as i32, 0, true)?;
            for i in 0..chunk.len() {
                all.extend_from_slice(self.ctx.logits(i as i32));
            }
        }
        for i in 0..self.chain.len() {
            // Samplers without a use for prompt logits answer with an error
            // code; that is expected and ignored.
            unsafe { entropix_sampler::ffi::entropix_sampler_observe_prompt_logits(self.chain.get(i), all.as_ptr(), prompt.len() as i32, n_vocab as i32) };
        }
        Ok(())
    }

    /// Applies the chain to the last logits, accepts and returns the token,
    /// with the time of the fill and of the chain. Does what
    /// llama_sampler_sample does, keeping the final candidates for the
    /// trace.
    fn sample_next(&mut self, step: usize) -> Result<(TokenId, Duration, Duration), LlamaError> {
        let t_fill = Instant::now();
        let logits = self.ctx.logits(-1);
        self.candidates.clear();
        self.candidates.extend(logits.iter().enumerate().map(|(id, &l)| TokenData::new(id as TokenId, l)));
        for &t in &self.banned_eog {
            if let Some(c) = self.candidates.get_mut(t as usize) {
                c.logit = f32::NEG_INFINITY;
            }
        }
        let fill = t_fill.elapsed();
        let raw = self.trace.is_some().then(|| RawView::new(logits));
        let t_chain = Instant::now();
        let mut arr = sys::llama_token_data_array { data: self.candidates.as_mut_ptr().cast(), size: self.candidates.len(), selected: -1, sorted: false };
        unsafe { sys::llama_sampler_apply(self.chain.as_ptr(), &mut arr) };
        let n = arr.size;
        let sel = usize::try_from(arr.selected).ok().filter(|&s| s < n).ok_or_else(|| LlamaError::Sampler("the sampler chain selected no token".into()))?;
        // Samplers may point `data` elsewhere; read from where it points.
        let final_cands: &[TokenData] = unsafe { std::slice::from_raw_parts(arr.data.cast::<TokenData>(), n) };
        let token = final_cands[sel].id;
        let mut chain = t_chain.elapsed();
        if let (Some(trace), Some(raw)) = (self.trace.as_deref_mut(), raw) {
            trace.record(step, token, &raw, final_cands, self.chain, self.ctx.model());
        }
        let t_accept = Instant::now();
        self.chain.accept(token);
        chain += t_accept.elapsed();
        Ok((token, fill, chain))
    }
}

/// Copies `logits` into `into` and returns ln sum exp(logits) (f64,
/// relative to the largest logit): a token's log-probability under the
/// raw model (T 1, no filtering) is then `into[token] - lse`.
fn copy_with_log_sum_exp(logits: &[f32], into: &mut Vec<f32>) -> f64 {
    into.clear();
    into.extend_from_slice(logits);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln()
}

/// The ANSI colour of the strategy the chain's entropix-family sampler
/// used last, if any.
fn strategy_colour(chain: &SamplerChain) -> Option<&'static str> {
    (0..chain.len()).find_map(|i| {
        let s = unsafe { entropix_sampler::ffi::sampler_ref(chain.get(i)) }?;
        let state = s.state_json();
        let name = state["last_step"]["strategy"].as_str()?.to_owned();
        Some(match name.as_str() {
            "flowing" => "32",    // green
            "treading" => "33",   // yellow
            "exploring" => "36",  // cyan
            "resampling" => "31", // red
            _ => "35",            // adaptive: magenta
        })
    })
}

/// Prints the timing summary to stderr.
pub fn print_summary(stats: &Stats, chain: &SamplerChain) {
    let per_s = |n: usize, d: Duration| {
        if d.as_secs_f64() > 0.0 {
            n as f64 / d.as_secs_f64()
        } else {
            0.0
        }
    };
    eprintln!();
    eprintln!("chain: {}", chain.names().join(" -> "));
    eprintln!(
        "prompt:     {:5} tokens in {:8.1} ms ({:8.1} tokens/s)",
        stats.n_prompt,
        stats.prompt_time.as_secs_f64() * 1e3,
        per_s(stats.n_prompt, stats.prompt_time)
    );
    eprintln!(
        "generation: {:5} tokens in {:8.1} ms ({:8.1} tokens/s)",
        stats.n_generated,
        stats.generation_time.as_secs_f64() * 1e3,
        per_s(stats.n_generated, stats.generation_time)
    );
    let n_samples = stats.n_generated + usize::from(stats.stopped_by_eog);
    if n_samples > 0 {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n_samples as f64;
        // The rest of the generation time: streaming the text, stop checks,
        // the loop itself (and the trace or colours when asked for).
        let rest = stats.generation_time.saturating_sub(stats.decode_time + stats.sampling_time);
        eprintln!(
            "per token:  chain {:.1} µs, candidate fill {:.1} µs, loop {:.1} µs (outside decode, fill and chain), decode {:.1} µs",
            us(stats.chain_time),
            us(stats.fill_time),
            us(rest),
            us(stats.decode_time)
        );
    }
    if stats.context_full {
        eprintln!("stopped: the context is full (raise -c/--ctx-size)");
    }
}
