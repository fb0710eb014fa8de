//! `--trace FILE`: one JSON line per generated token.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use entropix_sampler::core::{TokenData, TokenId};
use entropix_sampler::ffi::sampler_ref;
use entropix_sampler::llama::{Model, SamplerChain};
use serde_json::json;

/// How many of the model's top candidates each line lists.
const TOP_N: usize = 5;

/// What the trace needs of the raw logits, taken before the chain runs.
pub struct RawView {
    log_z: f64,
    top: Vec<(TokenId, f32)>,
    logits: Vec<f32>,
}

impl RawView {
    /// Log-partition function and the top candidates of the raw logits.
    pub fn new(logits: &[f32]) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let k = TOP_N.min(idx.len());
        if k > 0 {
            idx.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
            idx.truncate(k);
            idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        }
        Self { log_z: max + sum.ln(), top: idx.iter().map(|&i| (i as TokenId, logits[i])).collect(), logits: logits.to_vec() }
    }

    fn p(&self, logit: f32) -> f64 {
        (logit as f64 - self.log_z).exp()
    }
}

/// Writes the trace lines.
pub struct TraceWriter {
    out: BufWriter<File>,
}

impl TraceWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { out: BufWriter::new(File::create(path)?) })
    }

    /// One line for the token chosen at `step`.
    pub fn record(&mut self, step: usize, token: TokenId, raw: &RawView, final_cands: &[TokenData], chain: &SamplerChain, model: &Model) {
        let p_model = raw.logits.get(token as usize).map_or(0.0, |&l| raw.p(l));
        let max = final_cands.iter().map(|t| t.logit).fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = final_cands.iter().filter(|t| t.logit > f32::NEG_INFINITY).map(|t| (t.logit as f64 - max).exp()).sum();
        let chosen = final_cands.iter().find(|t| t.id == token).map_or(f32::NEG_INFINITY, |t| t.logit);
        let p_sampled = if chosen > f32::NEG_INFINITY { (chosen as f64 - max).exp() / z } else { 0.0 };
        let top: Vec<_> = raw.top.iter().map(|&(id, l)| json!({"id": id, "text": model.token_text(id), "p": raw.p(l)})).collect();
        let samplers: Vec<_> = (0..chain.len())
            .filter_map(|i| {
                let s = unsafe { sampler_ref(chain.get(i)) }?;
                let state = s.state_json();
                (!state.is_null()).then(|| json!({"name": s.name(), "state": state}))
            })
            .collect();
        let line = json!({
            "step": step,
            "token": token,
            "text": model.token_text(token),
            "p_model": p_model,
            "p_sampled": p_sampled,
            "n_candidates": final_cands.len(),
            "top": top,
            "samplers": samplers,
        });
        let _ = writeln!(self.out, "{line}");
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
