//! `calibrate`: runs a prompt set through a model with an entropix-family
//! sampler, records the distribution of every metric, and writes a
//! threshold profile from percentiles (each threshold with its unit).
//!
//! The reference thresholds came from another model and from an unmasked,
//! zero-padded attention: they do not transfer. Percentiles put each
//! strategy's region where this model's metrics actually fall.

use std::path::Path;

use entropix_sampler::llama::{ChatMessage, Context, Model, SamplerChain};
use entropix_sampler::samplers::entropix::Profile;
use serde_json::Value;

use crate::generate::Generator;
use crate::trace::TraceWriter;

/// Which percentile of which metric becomes which threshold.
const RULES: &[(&str, &str, f64)] = &[
    ("low_ent", "entropy_bits", 0.15),
    ("med_ent", "entropy_bits", 0.50),
    ("high_ent", "entropy_bits", 0.85),
    ("low_vent", "varentropy_bits2", 0.15),
    ("high_vent", "varentropy_bits2", 0.85),
    ("low_attn_ent", "attn_entropy_bits", 0.25),
    ("high_attn_ent", "attn_entropy_bits", 0.75),
    ("low_attn_vent", "attn_varentropy_bits2", 0.25),
    ("high_attn_vent", "attn_varentropy_bits2", 0.75),
    ("low_agree", "agreement", 0.25),
    ("high_agree", "agreement", 0.75),
    ("low_interaction", "interaction_strength", 0.25),
    ("high_interaction", "interaction_strength", 0.75),
];

/// The metrics of every generated token, by name.
#[derive(Debug, Default)]
pub struct MetricSamples {
    values: std::collections::BTreeMap<String, Vec<f64>>,
    pub n_tokens: usize,
}

impl MetricSamples {
    fn add_trace(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let Some(step) = v["samplers"].as_array().and_then(|s| s.iter().find_map(|s| s["state"]["last_step"].as_object().cloned())) else {
                continue;
            };
            self.n_tokens += 1;
            for (_, metric, _) in RULES {
                if let Some(x) = step.get(*metric).and_then(Value::as_f64) {
                    self.values.entry((*metric).to_string()).or_default().push(x);
                }
            }
        }
        Ok(())
    }

    /// The q-quantile (linear interpolation) of `metric`.
    pub fn quantile(&self, metric: &str, q: f64) -> Option<f64> {
        let mut v = self.values.get(metric)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let x = q * (v.len() - 1) as f64;
        let (i, f) = (x.floor() as usize, x - x.floor());
        Some(v[i] + f * (v[(i + 1).min(v.len() - 1)] - v[i]))
    }
}

/// Generates `n_predict` tokens for each prompt with `chain` (which must
/// hold an entropix-family sampler, attention attached), collecting metrics.
pub fn collect(model: &Model, ctx: &mut Context<'_>, chain: &mut SamplerChain, prompts: &[String], n_predict: i32, quiet: bool) -> Result<MetricSamples, String> {
    let mut samples = MetricSamples::default();
    let tmp = std::env::temp_dir().join(format!("entropix-calibrate-{}.jsonl", std::process::id()));
    for (i, prompt) in prompts.iter().enumerate() {
        ctx.clear();
        chain.reset();
        let messages = [ChatMessage { role: "user".into(), content: prompt.clone() }];
        let (text, special) = match model.apply_chat_template(&messages, true) {
            Ok(t) => (t, true),
            Err(_) => (prompt.clone(), false),
        };
        let tokens = model.tokenize(&text, true, special).map_err(|e| e.to_string())?;
        let mut trace = TraceWriter::create(&tmp).map_err(|e| e.to_string())?;
        let mut generator = Generator::new(ctx, chain, Some(&mut trace));
        generator.run(&tokens, n_predict, &mut std::io::sink()).map_err(|e| e.to_string())?;
        trace.flush().map_err(|e| e.to_string())?;
        samples.add_trace(&tmp)?;
        if !quiet {
            eprintln!("calibrate: prompt {}/{} done ({} tokens so far)", i + 1, prompts.len(), samples.n_tokens);
        }
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(samples)
}

/// The profile the percentile rules give.
pub fn profile_from(samples: &MetricSamples, model_name: &str, n_prompts: usize) -> Result<Profile, String> {
    let mut profile = Profile::new(model_name);
    profile.description = Some(format!(
        "calibrated by `cli calibrate` on {n_prompts} prompts, {} generated tokens; thresholds are percentiles of each metric",
        samples.n_tokens
    ));
    for (key, metric, q) in RULES {
        if let Some(v) = samples.quantile(metric, *q) {
            profile.set(key, v).map_err(|e| e.to_string())?;
            profile.meta.insert(format!("{key}_source"), Value::String(format!("p{:.0} of {metric}", q * 100.0)));
        }
    }
    profile.meta.insert("n_tokens".into(), Value::from(samples.n_tokens));
    Ok(profile)
}
