//! Builds the sampler chain the flags describe, from entropix's samplers or
//! (with --sampler-impl llama) from llama.cpp's built-ins, in the same
//! order and with the same parameters, so the two can be compared.

use std::ffi::CString;

use entropix_sampler::core::TokenId;
use entropix_sampler::ffi;
use entropix_sampler::llama::{Model, SamplerChain};
use entropix_sampler::samplers::alpha::AlphaParams;
use entropix_sampler::samplers::dirichlet::DirichletParams;
use entropix_sampler::samplers::entropix::{EntropixParams, FourModeParams};
use entropix_sampler::samplers::filters::{MinPParams, TopNSigmaParams, TopPParams, TypicalParams};
use entropix_sampler::samplers::mirostat::{MirostatParams, MirostatV2Params};
use entropix_sampler::samplers::penalties::{DryParams, PenaltiesParams};
use entropix_sampler::samplers::{DistParams, TemperatureParams, TopKParams};
use entropix_sampler::sys;

use crate::args::{Args, DryScope, SamplerImpl};

/// The sampler families `--sampler` accepts.
pub const FAMILIES: &[&str] = &["classic", "entropix", "four-mode", "dirichlet", "alpha"];

/// A chain and what the context must provide for it.
pub struct BuiltChain {
    pub chain: SamplerChain,
    /// The chain reads attention: flash attention must be off.
    pub needs_attention: bool,
    /// The AlphaSampler's COLD lookahead: the number of candidates it
    /// decodes ahead (the context then needs that many spare sequences).
    pub lookahead_k: Option<u32>,
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
    build_with(args, model, true)
}

/// Like [`build`], ignoring shipped profiles (for calibration).
pub fn build_without_profile(args: &Args, model: &Model) -> Result<BuiltChain, String> {
    build_with(args, model, false)
}

fn build_with(args: &Args, model: &Model, use_shipped_profile: bool) -> Result<BuiltChain, String> {
    let (chain, lookahead_k) = match (&args.sampler_config, args.sampler.as_str()) {
        (Some(path), _) => crate::sampler_config::build(path, args, model)?,
        (None, family) => by_family(family, args, model, use_shipped_profile)?,
    };
    let needs_attention = (0..chain.len()).any(|i| unsafe { ffi::entropix_sampler_needs_attention(chain.get(i)) });
    Ok(BuiltChain { chain, needs_attention, lookahead_k })
}

/// The chain of `--sampler FAMILY`, and the lookahead size of an
/// AlphaSampler that looks ahead.
fn by_family(family: &str, args: &Args, model: &Model, use_shipped_profile: bool) -> Result<(SamplerChain, Option<u32>), String> {
    Ok(match family {
        "classic" => (classic(args, model)?, None),
        "entropix" | "four-mode" => (entropy_family(args, model, use_shipped_profile)?, None),
        "dirichlet" => (dirichlet(args, model)?, None),
        "alpha" => {
            let (chain, p) = alpha(args, model)?;
            (chain, p.lookahead.then_some(p.lookahead_k as u32))
        }
        other => return Err(format!("unknown sampler family `{other}` (known: {})", FAMILIES.join(", "))),
    })
}

/// DRY's settings where the `--dry-*` flags leave them out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DryDefaults {
    /// Multiplier; 0 leaves DRY out.
    pub multiplier: f32,
    /// Repeats shorter than this many tokens go unpenalised.
    pub allowed_length: i32,
}

/// The classic chain's: llama.cpp's (DRY off; allowed length 2).
pub const CLASSIC_DRY: DryDefaults = DryDefaults { multiplier: 0.0, allowed_length: 2 };

/// The adaptive families' loop guard: DRY in front of the sampler, at
/// llama.cpp's recommended base (1.75) and allowed length (2), matching
/// repeats within the reply only (see [`dry_scope`]).
///
/// The adaptive samplers stay near the model's mode where it is confident,
/// so a model that loops (a base model on open prompts) loops through them
/// nearly as it does under greedy: `eval` on Gemma 3 270M's 12 dev prompts
/// gave seq-rep-4 0.697 for entropix against greedy's 0.783. DRY penalises
/// only the token that would extend a repeat of `allowed_length` or more
/// tokens. Entropix, alpha and four-mode take llama.cpp's multiplier, 0.8
/// (Gemma seq-rep-4 0.369 and 0.313 for entropix and alpha at NLL 0.71
/// and 0.62, against min-p's 0.69; allowed lengths 3 and 4 left entropix
/// looping at 0.49). Dirichlet, whose draw cuts the tail
/// (`draw_min_p`), loops more and takes 1.5: at 0.8 Gemma's seq-rep-4 was
/// 0.470, at 1.5 0.355 (NLL 0.669). A guard that also matched the prompt
/// penalised a reply for restating its question: SmolLM2 tokenises digits
/// one by one, and "71 + 76 = ..." after "What is 71 + 76?" extends a
/// match at every digit. At 0.8 that cost about an item in 100 on SmolLM2's
/// dev questions; at 1.5 it cost dirichlet 4 in 10 (4/100 against 10/100
/// on the reply only). `--dry-multiplier 0` turns the guard off.
pub fn loop_guard(family: &str) -> DryDefaults {
    match family {
        "dirichlet" => CUT_TAIL_LOOP_GUARD,
        _ => NEAR_MODE_LOOP_GUARD,
    }
}

/// The loop guard of entropix, four-mode and alpha (see [`loop_guard`]);
/// also DRY's defaults for `{"name": "dry"}` in `--sampler-config`.
pub const NEAR_MODE_LOOP_GUARD: DryDefaults = DryDefaults { multiplier: 0.8, allowed_length: 2 };

/// The loop guard of dirichlet (see [`loop_guard`]).
const CUT_TAIL_LOOP_GUARD: DryDefaults = DryDefaults { multiplier: 1.5, allowed_length: 2 };

/// What DRY matches repeats against: `--dry-scope`, or where it is not
/// given, the reply for the adaptive families (their loop guard stops
/// loops in the reply; a restated question is not one) and everything for
/// the classic chain and `--sampler-config` (llama.cpp's semantics).
fn dry_scope(args: &Args) -> DryScope {
    args.sampling.dry_scope.unwrap_or(if args.sampler_config.is_none() && args.sampler != "classic" { DryScope::Reply } else { DryScope::All })
}

/// Accepts the prompt into the chain as history (penalties and DRY see
/// it, as in llama.cpp's tools), then, when DRY's scope ([`dry_scope`])
/// is the reply, clears the history of the chain's DRY stages.
pub fn accept_prompt(chain: &mut SamplerChain, prompt: &[TokenId], args: &Args) {
    for &t in prompt {
        chain.accept(t);
    }
    if dry_scope(args) == DryScope::Reply {
        chain.reset_stages("dry");
    }
}

/// llama.cpp's penalties from the `--repeat-*`, `--frequency-penalty` and
/// `--presence-penalty` flags.
fn penalties_params(args: &Args) -> PenaltiesParams {
    let s = &args.sampling;
    PenaltiesParams {
        penalty_last_n: s.repeat_last_n,
        penalty_repeat: s.repeat_penalty,
        penalty_freq: s.frequency_penalty,
        penalty_present: s.presence_penalty,
    }
}

/// A chain holding the repetition stages, for the adaptive families to
/// append their sampler to: llama.cpp's penalties (`--repeat-penalty`,
/// `--frequency-penalty`, `--presence-penalty` over `--repeat-last-n`) when
/// any is not neutral, then DRY (the family's [`loop_guard`] where the
/// `--dry-*` flags leave it; `--dry-multiplier 0` leaves it out). They run
/// on the raw logits, before the adaptive sampler measures entropy, as they
/// run before the filters in llama.cpp's chain.
fn repetition_stages(args: &Args, model: &Model) -> Result<SamplerChain, String> {
    let s = &args.sampling;
    let mut chain = SamplerChain::new(true);
    let p = penalties_params(args);
    if p.penalty_last_n != 0 && (p.penalty_repeat != 1.0 || p.penalty_freq != 0.0 || p.penalty_present != 0.0) {
        unsafe { chain.add(ffi::entropix_sampler_init_penalties(&p)) }.map_err(|e| e.to_string())?;
    }
    let guard = loop_guard(&args.sampler);
    if s.dry_multiplier.unwrap_or(guard.multiplier) > 0.0 {
        unsafe { chain.add(dry_sampler(args, model, guard, true)?) }.map_err(|e| e.to_string())?;
    }
    Ok(chain)
}

/// The AlphaSampler (it selects), after the [`repetition_stages`]. Its
/// lookahead is attached to the context by [`attach_lookahead`] once the
/// context exists.
/// Returns the parameters too: the context needs `lookahead_k` spare
/// sequences when the lookahead is on.
fn alpha(args: &Args, model: &Model) -> Result<(SamplerChain, AlphaParams), String> {
    let mut chain = repetition_stages(args, model)?;
    let mut p = if args.reference_preset() { AlphaParams::reference() } else { AlphaParams::default() };
    p.seed = args.seed;
    if args.no_lookahead {
        p.lookahead = false;
    }
    if let Some(k) = args.lookahead_k {
        p.lookahead_k = i32::try_from(k).unwrap_or(i32::MAX);
    }
    if let Some(c) = args.cold_point {
        p.cold_point = c;
    }
    if let Some(h) = args.hot_point {
        p.hot_point = h;
    }
    let p = with_overrides(p, &args.sampler_params)?;
    unsafe { chain.add(ffi::entropix_sampler_init_alpha(&p)) }.map_err(|e| e.to_string())?;
    Ok((chain, p))
}

/// Lends the context and capture to the chain's AlphaSampler for its COLD
/// lookahead (sequence 0 is the main sequence).
pub fn attach_lookahead(
    chain: &SamplerChain,
    ctx: &entropix_sampler::llama::Context<'_>,
    capture: &std::sync::Arc<entropix_sampler::attention::AttentionCapture>,
) -> Result<(), String> {
    for i in 0..chain.len() {
        let s = chain.get(i);
        let name = unsafe { std::ffi::CStr::from_ptr(sys::llama_sampler_name(s)) }.to_string_lossy().into_owned();
        if name == "alpha" && unsafe { ffi::entropix_alpha_set_lookahead(s, ctx.as_ptr(), std::sync::Arc::as_ptr(capture), 0) } != 0 {
            return Err(last_error());
        }
    }
    Ok(())
}

/// Resolves a token given as text through the vocabulary (one token).
fn token_from_text(model: &Model, text: &str, flag: &str) -> Result<i32, String> {
    let c = CString::new(text).map_err(|_| format!("{flag}: the text contains a NUL byte"))?;
    let id = unsafe { ffi::entropix_token_from_text(model.vocab_ptr(), c.as_ptr()) };
    if id < 0 {
        return Err(format!("{flag} {text:?}: {}", unsafe { std::ffi::CStr::from_ptr(ffi::entropix_last_error()) }.to_string_lossy()));
    }
    Ok(id)
}

fn last_error() -> String {
    unsafe { std::ffi::CStr::from_ptr(ffi::entropix_last_error()) }.to_string_lossy().into_owned()
}

/// The entropix or four-mode sampler, after the [`repetition_stages`]: it
/// selects, and applies its own temperature, top-k, top-p and min-p per
/// strategy.
fn entropy_family(args: &Args, model: &Model, use_shipped_profile: bool) -> Result<SamplerChain, String> {
    let mut chain = repetition_stages(args, model)?;
    let clarify = args.clarify_token.as_deref().map(|t| token_from_text(model, t, "--clarify-token")).transpose()?.unwrap_or(-1);
    let profile_path = args.profile.clone().or_else(|| {
        if use_shipped_profile && !args.reference_preset() {
            shipped_profile(model).or_else(|| Some(crate::auto_profile::cached_path(model)).filter(|p| p.is_file()))
        } else {
            None
        }
    });
    match &profile_path {
        Some(p) if !args.quiet => eprintln!("entropix: thresholds from profile {}", p.display()),
        None if !args.quiet => {
            eprintln!("entropix: no threshold profile: using the reference thresholds")
        }
        _ => {}
    }
    let profile = profile_path.as_ref().map(|p| CString::new(p.to_string_lossy().as_bytes()).map_err(|_| "--profile: NUL in path".to_string())).transpose()?;
    if args.sampler == "entropix" {
        let mut p = if args.reference_preset() { EntropixParams::reference() } else { EntropixParams::default() };
        if let Some(path) = &profile {
            if unsafe { ffi::entropix_entropix_params_load_profile(path.as_ptr(), &mut p) } != 0 {
                return Err(last_error());
            }
        }
        p.seed = args.seed;
        p.variant = args.entropix_variant;
        p.clarifying_token_id = clarify;
        let p = with_overrides(p, &args.sampler_params)?;
        unsafe { chain.add(ffi::entropix_sampler_init_entropix(&p)) }.map_err(|e| e.to_string())?;
    } else {
        let mut p = if args.reference_preset() { FourModeParams::reference() } else { FourModeParams::default() };
        if let Some(path) = &profile {
            if unsafe { ffi::entropix_four_mode_params_load_profile(path.as_ptr(), &mut p) } != 0 {
                return Err(last_error());
            }
        }
        p.seed = args.seed;
        p.clarifying_token_id = clarify;
        p.pause_token_id = args.pause_token.as_deref().map(|t| token_from_text(model, t, "--pause-token")).transpose()?.unwrap_or(-1);
        let p = with_overrides(p, &args.sampler_params)?;
        unsafe { chain.add(ffi::entropix_sampler_init_four_mode(&p)) }.map_err(|e| e.to_string())?;
    }
    Ok(chain)
}

/// The adaptive Dirichlet sampler (it selects), after the
/// [`repetition_stages`]; hyperparameters from `--profile` when given. It is initialised from every prompt position's
/// logits by the generation loop.
fn dirichlet(args: &Args, model: &Model) -> Result<SamplerChain, String> {
    let mut chain = repetition_stages(args, model)?;
    let mut p = if args.reference_preset() { DirichletParams::reference() } else { DirichletParams::default() };
    if let Some(path) = &args.profile {
        let c = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| "--profile: NUL in path".to_string())?;
        if unsafe { ffi::entropix_dirichlet_load_profile(c.as_ptr(), &mut p) } != 0 {
            return Err(last_error());
        }
    }
    p.seed = args.seed;
    let p = with_overrides(p, &args.sampler_params)?;
    unsafe { chain.add(ffi::entropix_sampler_init_dirichlet(&p)) }.map_err(|e| e.to_string())?;
    Ok(chain)
}

/// `params` with each `NAME=VALUE` of `--sampler-param` written into the
/// field of that name (through serde: numbers, `true`/`false`). Unknown
/// names and values of the wrong type are errors that list what exists;
/// ranges are checked later by the sampler's constructor.
fn with_overrides<P: serde::Serialize + serde::de::DeserializeOwned>(params: P, overrides: &[String]) -> Result<P, String> {
    let mut given = serde_json::Map::new();
    for item in overrides {
        let (name, text) = item.split_once('=').ok_or_else(|| format!("--sampler-param {item:?}: expected NAME=VALUE"))?;
        let (name, text) = (name.trim(), text.trim());
        let value = serde_json::from_str(text).map_err(|_| format!("--sampler-param {name}={text}: not a number or true/false"))?;
        given.insert(name.to_string(), value);
    }
    ffi::merge_params(params, given, "--sampler-param")
}

/// The profile shipped in `profiles/` for the model's file name, if any.
pub fn shipped_profile(model: &Model) -> Option<std::path::PathBuf> {
    let name = model.path().file_name()?.to_string_lossy().into_owned();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles").join(format!("{}.json", name.trim_end_matches(".gguf")));
    path.is_file().then_some(path)
}

/// Attaches `capture` to every sampler of the chain that reads attention.
pub fn attach_attention(chain: &SamplerChain, capture: &std::sync::Arc<entropix_sampler::attention::AttentionCapture>) -> Result<(), String> {
    for i in 0..chain.len() {
        let s = chain.get(i);
        if unsafe { ffi::entropix_sampler_needs_attention(s) } {
            let rc = unsafe { ffi::entropix_sampler_set_attention(s, std::sync::Arc::as_ptr(capture)) };
            if rc != 0 {
                return Err(format!("cannot attach attention: {}", unsafe { std::ffi::CStr::from_ptr(ffi::entropix_last_error()) }.to_string_lossy()));
            }
        }
    }
    Ok(())
}

fn classic(args: &Args, model: &Model) -> Result<SamplerChain, String> {
    let s = &args.sampling;
    let ours = args.sampler_impl == SamplerImpl::Entropix;
    let n_vocab = model.n_vocab() as i32;
    let mut chain = SamplerChain::new(true);
    // SAFETY: every caller passes a fresh constructor's result.
    let mut add = |smpl: *mut sys::llama_sampler| unsafe { chain.add(smpl) }.map_err(|e| e.to_string());
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
                    let p = penalties_params(args);
                    add(if ours {
                        unsafe { ffi::entropix_sampler_init_penalties(&p) }
                    } else {
                        unsafe { sys::llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.penalty_repeat, p.penalty_freq, p.penalty_present) }
                    })?;
                }
                Stage::Dry => add(dry_sampler(args, model, CLASSIC_DRY, ours)?)?,
                Stage::TopNSigma => {
                    let p = TopNSigmaParams { n: s.top_n_sigma };
                    add(if ours { unsafe { ffi::entropix_sampler_init_top_n_sigma(&p) } } else { unsafe { sys::llama_sampler_init_top_n_sigma(p.n) } })?;
                }
                Stage::TopK => {
                    let p = TopKParams { k: s.top_k };
                    add(if ours { unsafe { ffi::entropix_sampler_init_top_k(&p) } } else { unsafe { sys::llama_sampler_init_top_k(p.k) } })?;
                }
                Stage::Typical => {
                    let p = TypicalParams { p: s.typical, min_keep: 1 };
                    add(if ours { unsafe { ffi::entropix_sampler_init_typical(&p) } } else { unsafe { sys::llama_sampler_init_typical(p.p, 1) } })?;
                }
                Stage::TopP => {
                    let p = TopPParams { p: s.top_p, min_keep: 1 };
                    add(if ours { unsafe { ffi::entropix_sampler_init_top_p(&p) } } else { unsafe { sys::llama_sampler_init_top_p(p.p, 1) } })?;
                }
                Stage::MinP => {
                    let p = MinPParams { p: s.min_p, min_keep: 1 };
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
        add(if ours {
            unsafe { ffi::entropix_sampler_init_mirostat(&p) }
        } else {
            unsafe { sys::llama_sampler_init_mirostat(n_vocab, p.seed, p.tau, p.eta, p.m) }
        })?;
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

/// DRY from the `--dry-*` flags, `defaults` where they are not given:
/// entropix's (`ours`) or llama.cpp's.
pub fn dry_sampler(args: &Args, model: &Model, defaults: DryDefaults, ours: bool) -> Result<*mut sys::llama_sampler, String> {
    let s = &args.sampling;
    let multiplier = s.dry_multiplier.unwrap_or(defaults.multiplier);
    let allowed_length = s.dry_allowed_length.unwrap_or(defaults.allowed_length);
    let last_n = if s.dry_penalty_last_n < 0 { args.ctx_size as i32 } else { s.dry_penalty_last_n };
    let p = DryParams { multiplier, base: s.dry_base, allowed_length, penalty_last_n: last_n };
    let breakers: Vec<String> =
        if s.dry_sequence_breaker.is_empty() { ["\n", ":", "\"", "*"].map(String::from).to_vec() } else { s.dry_sequence_breaker.clone() };
    let c_breakers: Vec<CString> =
        breakers.iter().map(|b| CString::new(b.as_str())).collect::<Result<_, _>>().map_err(|_| "a DRY sequence breaker contains a NUL byte")?;
    let ptrs: Vec<*const std::ffi::c_char> = c_breakers.iter().map(|c| c.as_ptr()).collect();
    // SAFETY: the model's vocabulary and `ptrs.len()` NUL-terminated strings,
    // copied by the constructors.
    Ok(if ours {
        unsafe { ffi::entropix_sampler_init_dry(model.vocab_ptr(), model.n_ctx_train() as i32, &p, ptrs.as_ptr(), ptrs.len()) }
    } else {
        unsafe {
            sys::llama_sampler_init_dry(model.vocab_ptr(), p.multiplier, p.base, p.allowed_length, p.penalty_last_n, ptrs.as_ptr().cast_mut(), ptrs.len())
        }
    })
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
