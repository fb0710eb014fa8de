//! `tune`: searches the adaptive Dirichlet sampler's hyperparameters on a
//! prompt set to minimise the average cross-entropy rate (seed 003's
//! `emwa_cross_ent`, nats), and writes a profile the CLI (`--profile`) and
//! the C ABI (`entropix_dirichlet_load_profile`) load.
//!
//! The model's own continuations (sampled at T = 1 from its distribution)
//! are recorded once; every candidate setting is then scored by replaying
//! the sampler's state machine over those (logits, token) steps.

use entropix_sampler::core::{DrawStream, TokenId};
use entropix_sampler::llama::{ChatMessage, Context, Model};
use entropix_sampler::samplers::dirichlet::{cross_entropy_rate, save_profile, DirichletParams};

/// One recorded continuation: the logits before each token and the token.
pub struct Recording {
    pub logits: Vec<Vec<f32>>,
    pub tokens: Vec<TokenId>,
}

/// Generates `n` tokens per prompt at T = 1, recording logits and tokens.
pub fn record(model: &Model, ctx: &mut Context<'_>, prompts: &[String], n: usize, seed: u64) -> Result<Vec<Recording>, String> {
    let mut out = Vec::new();
    let mut rng = DrawStream::from_state(seed);
    for prompt in prompts {
        ctx.clear();
        let messages = [ChatMessage { role: "user".into(), content: prompt.clone() }];
        let (text, special) = match model.apply_chat_template(&messages, true) {
            Ok(t) => (t, true),
            Err(_) => (prompt.clone(), false),
        };
        let tokens = model.tokenize(&text, true, special).map_err(|e| e.to_string())?;
        ctx.decode(&tokens, 0, 0, false).map_err(|e| e.to_string())?;
        let mut rec = Recording { logits: Vec::new(), tokens: Vec::new() };
        let start = tokens.len() as i32;
        for pos in start..start + n as i32 {
            let logits = ctx.logits(-1).to_vec();
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
            let target = rng.next_f64() * z;
            let mut run = 0.0;
            let mut token = (logits.len() - 1) as TokenId;
            for (i, &l) in logits.iter().enumerate() {
                run += (l as f64 - max).exp();
                if run > target {
                    token = i as TokenId;
                    break;
                }
            }
            rec.logits.push(logits);
            rec.tokens.push(token);
            if model.is_eog(token) || pos as usize + 1 >= ctx.n_ctx() {
                break;
            }
            ctx.decode(&[token], pos, 0, false).map_err(|e| e.to_string())?;
        }
        out.push(rec);
    }
    Ok(out)
}

/// The objective: mean cross-entropy rate over the recordings, nats. A
/// parameter set that fails on any recording (the replay errs) scores
/// +inf: dropping that recording would compare averages over different
/// texts.
pub fn objective(params: &DirichletParams, recordings: &[Recording]) -> f64 {
    let mut sum = 0.0;
    for r in recordings {
        match cross_entropy_rate(params, &r.logits, &r.tokens) {
            Ok(rate) if rate.is_finite() => sum += rate,
            _ => return f64::INFINITY,
        }
    }
    if recordings.is_empty() {
        f64::INFINITY
    } else {
        sum / recordings.len() as f64
    }
}

/// The hyperparameters searched, with their ranges.
fn perturb(base: &DirichletParams, rng: &mut DrawStream, scale: f64) -> DirichletParams {
    let mut p = *base;
    let mut nudge = |x: f32, lo: f32, hi: f32| -> f32 {
        let span = (hi - lo) as f64;
        (x as f64 + (rng.next_f64() * 2.0 - 1.0) * span * scale).clamp(lo as f64, hi as f64) as f32
    };
    p.target_cross_ent_weight = nudge(p.target_cross_ent_weight, 0.0, 1.0);
    p.target_bias_nats = nudge(p.target_bias_nats, 0.0, 4.0);
    p.emwa_cross_ent_coeff = nudge(p.emwa_cross_ent_coeff, 0.05, 0.95);
    p.emwa_temp_coeff = nudge(p.emwa_temp_coeff, 0.05, 0.95);
    p.emwa_ent_scaffold_coeff = nudge(p.emwa_ent_scaffold_coeff, 0.05, 0.95);
    p
}

/// Random local search from `start`: `budget` candidates, the step shrinking
/// as the search goes; keeps the best. Returns (best, its objective, the
/// start's objective).
pub fn search(start: DirichletParams, recordings: &[Recording], budget: usize, seed: u64, quiet: bool) -> (DirichletParams, f64, f64) {
    let mut rng = DrawStream::from_state(seed ^ 0x7E57);
    let start_value = objective(&start, recordings);
    let (mut best, mut best_value) = (start, start_value);
    for i in 0..budget {
        let scale = 0.25 * (1.0 - i as f64 / budget.max(1) as f64) + 0.03;
        let candidate = perturb(&best, &mut rng, scale);
        if candidate.validate().is_err() {
            continue;
        }
        let value = objective(&candidate, recordings);
        if value < best_value {
            best = candidate;
            best_value = value;
        }
        if !quiet {
            eprintln!("tune: {}/{budget}: candidate {value:.4} nats, best {best_value:.4} nats", i + 1);
        }
    }
    (best, best_value, start_value)
}

/// Writes the tuned profile with what the search saw.
pub fn write(path: &std::path::Path, params: &DirichletParams, best: f64, start: f64, n_steps: usize, n_prompts: usize) -> Result<(), String> {
    let meta = serde_json::json!({
        "objective": "mean emwa_cross_ent (nats) over recorded T=1 continuations",
        "objective_start_nats": start,
        "objective_best_nats": best,
        "n_prompts": n_prompts,
        "n_steps": n_steps,
    });
    save_profile(path, params, meta).map_err(|e| e.to_string())
}
