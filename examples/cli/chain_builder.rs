//! Builds the sampler chain the flags describe, from entropix's samplers or
//! (with --sampler-impl llama) from llama.cpp's built-ins, in the same
//! order and with the same parameters, so the two can be compared.

use std::ffi::CString;

use entropix_sampler::ffi;
use entropix_sampler::llama::{Model, SamplerChain};
use entropix_sampler::samplers::filters::{MinPParams, TopNSigmaParams, TopPParams, TypicalParams};
use entropix_sampler::samplers::mirostat::{MirostatParams, MirostatV2Params};
use entropix_sampler::samplers::penalties::{DryParams, PenaltiesParams};
use entropix_sampler::samplers::{DistParams, TemperatureParams, TopKParams};
use entropix_sampler::sys;

use crate::args::{Args, SamplerImpl};

/// The sampler families `--sampler` accepts.
pub const FAMILIES: &[&str] = &["classic"];

/// A chain and what the context must provide for it.
pub struct BuiltChain {
    pub chain: SamplerChain,
    /// The chain reads attention: flash attention must be off.
    pub needs_attention: bool,
}

/// One stage of the classic chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Penalties,
    Dry,
    TopNSigma,
    TopK,
    Typical,
    TopP,
    MinP,
    Temperature,
}

/// Parses llama.cpp's --samplers string: ';'-separated names, or the
/// one-letter form ("edskypmt").
fn parse_order(spec: &str) -> Result<Vec<Stage>, String> {
    let by_name = |name: &str| -> Result<Stage, String> {
        Ok(match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "penalties" => Stage::Penalties,
            "dry" => Stage::Dry,
            "top_n_sigma" => Stage::TopNSigma,
            "top_k" => Stage::TopK,
            "typ_p" | "typical_p" | "typical" => Stage::Typical,
            "top_p" => Stage::TopP,
            "min_p" => Stage::MinP,
            "temperature" | "temp" => Stage::Temperature,
            "xtc" => return Err("the sampler `xtc` is not part of entropix-sampler; remove it from --samplers".into()),
            other => return Err(format!("unknown sampler `{other}` in --samplers (known: penalties dry top_n_sigma top_k typ_p top_p min_p temperature)")),
        })
    };
    if !spec.contains(';') && spec.len() > 1 && spec.chars().all(|c| "edskypmt".contains(c)) {
        return spec
            .chars()
            .map(|c| {
                by_name(match c {
                    'e' => "penalties",
                    'd' => "dry",
                    's' => "top_n_sigma",
                    'k' => "top_k",
                    'y' => "typ_p",
                    'p' => "top_p",
                    'm' => "min_p",
                    _ => "temperature",
                })
            })
            .collect();
    }
    spec.split(';').filter(|s| !s.trim().is_empty()).map(by_name).collect()
}

/// Builds the chain for `args.sampler`.
pub fn build(args: &Args, model: &Model) -> Result<BuiltChain, String> {
    match args.sampler.as_str() {
        "classic" => Ok(BuiltChain { chain: classic(args, model)?, needs_attention: false }),
        other => Err(format!("unknown sampler family `{other}` (known: {})", FAMILIES.join(", "))),
    }
}

fn classic(args: &Args, model: &Model) -> Result<SamplerChain, String> {
    let s = &args.sampling;
    let ours = args.sampler_impl == SamplerImpl::Entropix;
    let n_vocab = model.n_vocab() as i32;
    let mut chain = SamplerChain::new(true);
    let mut add = |smpl: *mut sys::llama_sampler| chain.add(smpl).map_err(|e| e.to_string());
    let mirostat = s.mirostat;
    if mirostat > 2 {
        return Err(format!("--mirostat must be 0, 1 or 2, not {mirostat}"));
    }
    let greedy = mirostat == 0 && s.temp <= 0.0;
    if mirostat == 0 {
        // With greedy the filters still run (penalties and DRY move the
        // argmax); only temperature, which cannot, is left out.
        for stage in parse_order(&args.samplers)?.into_iter().filter(|&s| !(greedy && s == Stage::Temperature)) {
            match stage {
                Stage::Penalties => {
                    let p = PenaltiesParams {
                        penalty_last_n: s.repeat_last_n,
                        penalty_repeat: s.repeat_penalty,
                        penalty_freq: s.frequency_penalty,
                        penalty_present: s.presence_penalty,
                        ..PenaltiesParams::default()
                    };
                    add(if ours {
                        unsafe { ffi::entropix_sampler_init_penalties(&p) }
                    } else {
                        unsafe { sys::llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.penalty_repeat, p.penalty_freq, p.penalty_present) }
                    })?;
                }
                Stage::Dry => {
                    let last_n = if s.dry_penalty_last_n < 0 { args.ctx_size as i32 } else { s.dry_penalty_last_n };
                    let p = DryParams {
                        multiplier: s.dry_multiplier,
                        base: s.dry_base,
                        allowed_length: s.dry_allowed_length,
                        penalty_last_n: last_n,
                        ..DryParams::default()
                    };
                    let breakers: Vec<String> =
                        if s.dry_sequence_breaker.is_empty() { ["\n", ":", "\"", "*"].map(String::from).to_vec() } else { s.dry_sequence_breaker.clone() };
                    let c_breakers: Vec<CString> =
                        breakers.iter().map(|b| CString::new(b.as_str())).collect::<Result<_, _>>().map_err(|_| "a DRY sequence breaker contains a NUL byte")?;
                    let ptrs: Vec<*const std::ffi::c_char> = c_breakers.iter().map(|c| c.as_ptr()).collect();
                    add(if ours {
                        unsafe { ffi::entropix_sampler_init_dry(model.vocab_ptr(), model.n_ctx_train() as i32, &p, ptrs.as_ptr(), ptrs.len()) }
                    } else {
                        unsafe {
                            sys::llama_sampler_init_dry(
                                model.vocab_ptr(),
                                p.multiplier,
                                p.base,
                                p.allowed_length,
                                p.penalty_last_n,
                                ptrs.as_ptr().cast_mut(),
                                ptrs.len(),
                            )
                        }
                    })?;
                }
                Stage::TopNSigma => {
                    let p = TopNSigmaParams { n: s.top_n_sigma, ..TopNSigmaParams::default() };
                    add(if ours { unsafe { ffi::entropix_sampler_init_top_n_sigma(&p) } } else { unsafe { sys::llama_sampler_init_top_n_sigma(p.n) } })?;
                }
                Stage::TopK => {
                    let p = TopKParams { k: s.top_k };
                    add(if ours { unsafe { ffi::entropix_sampler_init_top_k(&p) } } else { unsafe { sys::llama_sampler_init_top_k(p.k) } })?;
                }
                Stage::Typical => {
                    let p = TypicalParams { p: s.typical, min_keep: 1, ..TypicalParams::default() };
                    add(if ours { unsafe { ffi::entropix_sampler_init_typical(&p) } } else { unsafe { sys::llama_sampler_init_typical(p.p, 1) } })?;
                }
                Stage::TopP => {
                    let p = TopPParams { p: s.top_p, min_keep: 1, ..TopPParams::default() };
                    add(if ours { unsafe { ffi::entropix_sampler_init_top_p(&p) } } else { unsafe { sys::llama_sampler_init_top_p(p.p, 1) } })?;
                }
                Stage::MinP => {
                    let p = MinPParams { p: s.min_p, min_keep: 1, ..MinPParams::default() };
                    add(if ours { unsafe { ffi::entropix_sampler_init_min_p(&p) } } else { unsafe { sys::llama_sampler_init_min_p(p.p, 1) } })?;
                }
                Stage::Temperature => add(temperature_stage(args, ours))?,
            }
        }
    }
    // The stage that selects.
    if greedy {
        add(if ours { ffi::entropix_sampler_init_greedy() } else { unsafe { sys::llama_sampler_init_greedy() } })?;
    } else if mirostat == 1 {
        add(temperature_stage(args, ours))?;
        let p = MirostatParams { n_vocab, seed: args.seed, tau: s.mirostat_ent, eta: s.mirostat_lr, m: 100 };
        add(if ours { unsafe { ffi::entropix_sampler_init_mirostat(&p) } } else { unsafe { sys::llama_sampler_init_mirostat(n_vocab, p.seed, p.tau, p.eta, p.m) } })?;
    } else if mirostat == 2 {
        add(temperature_stage(args, ours))?;
        let p = MirostatV2Params { seed: args.seed, tau: s.mirostat_ent, eta: s.mirostat_lr };
        add(if ours { unsafe { ffi::entropix_sampler_init_mirostat_v2(&p) } } else { unsafe { sys::llama_sampler_init_mirostat_v2(p.seed, p.tau, p.eta) } })?;
    } else {
        let p = DistParams { seed: args.seed };
        add(if ours { unsafe { ffi::entropix_sampler_init_dist(&p) } } else { unsafe { sys::llama_sampler_init_dist(p.seed) } })?;
    }
    Ok(chain)
}

/// Plain temperature, or llama.cpp's entropy-based dynamic temperature
/// when --dynatemp-range > 0.
fn temperature_stage(args: &Args, ours: bool) -> *mut sys::llama_sampler {
    let s = &args.sampling;
    if s.dynatemp_range > 0.0 {
        let p = entropix_sampler::samplers::filters::TempExtParams { temp: s.temp, delta: s.dynatemp_range, exponent: s.dynatemp_exp };
        if ours {
            unsafe { ffi::entropix_sampler_init_temp_ext(&p) }
        } else {
            unsafe { sys::llama_sampler_init_temp_ext(p.temp, p.delta, p.exponent) }
        }
    } else {
        let p = TemperatureParams { temp: s.temp };
        if ours {
            unsafe { ffi::entropix_sampler_init_temperature(&p) }
        } else {
            unsafe { sys::llama_sampler_init_temp(p.temp) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_order_forms() {
        assert_eq!(parse_order("top_k;temperature").unwrap(), vec![Stage::TopK, Stage::Temperature]);
        assert_eq!(parse_order("kt").unwrap(), vec![Stage::TopK, Stage::Temperature]);
        assert!(parse_order("top_k;bogus").unwrap_err().contains("unknown sampler `bogus`"));
    }
}
