//! C exports of the `entropix` samplers: the Entropix and four-mode
//! samplers, threshold profiles, a token resolver and the last-step
//! accessor.
//!
//! Every constructor returns a new `struct llama_sampler *` owned by the
//! caller: free it with `llama_sampler_free`, or hand it to a chain with
//! `llama_sampler_chain_add`, after which the chain owns it. NULL params
//! mean the defaults. Invalid params give NULL and a last error.

use std::ffi::{c_char, c_int, CStr};

use llama_cpp_sys_2::{llama_sampler, llama_token, llama_tokenize, llama_vocab};

use super::classic::init_from;
use super::error::{guard, guard_status, Failure, ENTROPIX_OK};
use super::plugin::sampler_ref;
use crate::samplers::entropix::{Entropix, EntropixParams, EntropixStep, FourMode, FourModeParams, Profile};

/// `entropix_entropix_step.strategy`: no step yet.
pub const ENTROPIX_STRATEGY_NONE: u32 = 0;
/// Low entropy, low varentropy: argmax (four-mode: top-5 sample).
pub const ENTROPIX_STRATEGY_FLOWING: u32 = 1;
/// High entropy, low varentropy: token insertion or boosted temperature.
pub const ENTROPIX_STRATEGY_TREADING: u32 = 2;
/// Low entropy, high varentropy: exploring forks.
pub const ENTROPIX_STRATEGY_EXPLORING: u32 = 3;
/// High entropy, high varentropy: resampling in the mist.
pub const ENTROPIX_STRATEGY_RESAMPLING: u32 = 4;
/// Everything else: adaptive parameters.
pub const ENTROPIX_STRATEGY_ADAPTIVE: u32 = 5;

/// Default parameters of the Entropix sampler (the reference
/// `SamplerConfig`: temp 0.666, top_p 0.90, top_k 27, min_p 0.03,
/// thresholds 0.1 / 0.1 / 3.0 / 5.0 bits(²) ..., no clarifying token,
/// variant 0, seed 0xFFFFFFFF = random).
#[no_mangle]
pub extern "C" fn entropix_entropix_default_params() -> EntropixParams {
    guard(EntropixParams::default(), || Ok(EntropixParams::default()))
}

/// The reference settings of the Entropix sampler (xjdr-alt/entropix, seed 002): its
/// reference implementation's exact values (the `reference` preset).
/// The defaults depart from them where `eval` measured better text.
#[no_mangle]
pub extern "C" fn entropix_entropix_reference_params() -> EntropixParams {
    guard(EntropixParams::reference(), || Ok(EntropixParams::reference()))
}

/// Entropix ("Shrek") sampler: flowing, treading (clarifying-token
/// insertion), exploring, resampling and adaptive multi-sample strategies
/// chosen from the logits entropy/varentropy and the model's attention.
/// Ends a chain (it selects a token). Its attention comes from the
/// attention capture (flash attention must be off); without it the
/// sampler runs on the logits alone (see `entropix_entropix_last_step`'s
/// `attention_available`).
///
/// Returns a new sampler owned by the caller (free it with
/// `llama_sampler_free`, or add it to a chain, which then owns it); NULL
/// with `entropix_last_error()` on invalid params.
///
/// # Safety
/// `params` is NULL (defaults) or points to a valid
/// `entropix_entropix_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_entropix(params: *const EntropixParams) -> *mut llama_sampler {
    init_from("entropix", params, |p| Ok(Box::new(Entropix::new(p)?)))
}

/// Default parameters of the four-mode sampler (same thresholds as
/// Entropix; HEHV temperature floor 1.5; no pause or clarifying token;
/// seed 0xFFFFFFFF = random).
#[no_mangle]
pub extern "C" fn entropix_four_mode_default_params() -> FourModeParams {
    guard(FourModeParams::default(), || Ok(FourModeParams::default()))
}

/// The reference settings of the four-mode sampler (seed 001): its
/// reference implementation's exact values (the `reference` preset).
/// The defaults depart from them where `eval` measured better text.
#[no_mangle]
pub extern "C" fn entropix_four_mode_reference_params() -> FourModeParams {
    guard(FourModeParams::reference(), || Ok(FourModeParams::reference()))
}

/// Entropy-based four-mode sampler (seed 001): LELV top-5 sample (or
/// argmax), HELV pause token then clarifying-question token then boosted
/// temperature, LEHV exploring, HEHV resampling, adaptive otherwise. Ends
/// a chain.
///
/// Returns a new sampler owned by the caller (free it with
/// `llama_sampler_free`, or add it to a chain, which then owns it); NULL
/// with `entropix_last_error()` on invalid params.
///
/// # Safety
/// `params` is NULL (defaults) or points to a valid
/// `entropix_four_mode_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_four_mode(params: *const FourModeParams) -> *mut llama_sampler {
    init_from("four_mode", params, |p| Ok(Box::new(FourMode::new(p)?)))
}

/// Reads a NUL-terminated path.
unsafe fn path_arg<'a>(path: *const c_char, function: &str) -> Result<&'a str, Failure> {
    if path.is_null() {
        return Err(Failure::null(format!("{function}: path is NULL")));
    }
    CStr::from_ptr(path).to_str().map_err(|_| Failure::invalid(format!("{function}: path is not valid UTF-8")))
}

/// Loads a threshold profile (JSON, see the Rust `Profile` docs) and
/// writes its thresholds, converted to bits / bits², into `*inout`;
/// fields the profile does not name keep their values. Returns
/// `ENTROPIX_OK` (0), or `ENTROPIX_ERR_NULL` / `ENTROPIX_ERR_INVALID` with
/// `entropix_last_error()` (unreadable file, invalid JSON, unknown
/// threshold, wrong unit, invalid result); `*inout` is unchanged on error.
/// Nothing is retained: `path` and `inout` stay the caller's.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `inout` is NULL or points to
/// a valid, writable `entropix_entropix_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_entropix_params_load_profile(path: *const c_char, inout: *mut EntropixParams) -> c_int {
    const F: &str = "entropix_entropix_params_load_profile";
    guard_status(|| {
        if inout.is_null() {
            return Err(Failure::null(format!("{F}: params pointer is NULL")));
        }
        let path = path_arg(path, F)?;
        let profile = Profile::load(path).map_err(|e| format!("{F}: {e}"))?;
        let mut params = *inout;
        profile.apply_to(&mut params).map_err(|e| format!("{F}: {e}"))?;
        *inout = params;
        Ok(ENTROPIX_OK)
    })
}

/// As `entropix_entropix_params_load_profile`, for the four-mode sampler:
/// sets its logits thresholds (low_ent, med_ent, high_ent, low_vent,
/// high_vent); attention-selection thresholds in the profile are ignored.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `inout` is NULL or points to
/// a valid, writable `entropix_four_mode_params`.
#[no_mangle]
pub unsafe extern "C" fn entropix_four_mode_params_load_profile(path: *const c_char, inout: *mut FourModeParams) -> c_int {
    const F: &str = "entropix_four_mode_params_load_profile";
    guard_status(|| {
        if inout.is_null() {
            return Err(Failure::null(format!("{F}: params pointer is NULL")));
        }
        let path = path_arg(path, F)?;
        let profile = Profile::load(path).map_err(|e| format!("{F}: {e}"))?;
        let mut params = *inout;
        profile.apply_to_four_mode(&mut params).map_err(|e| format!("{F}: {e}"))?;
        *inout = params;
        Ok(ENTROPIX_OK)
    })
}

/// The single token that `text` tokenizes to in `vocab` (no BOS or other
/// added special tokens; special-token text such as `<|im_end|>` is
/// recognised), e.g. to set `clarifying_token_id` from " ...". Returns -1
/// with `entropix_last_error()` when `vocab` or `text` is NULL, `text` is
/// empty, or it is not exactly one token (the error says how many, and
/// which). Nothing is retained.
///
/// # Safety
/// `vocab` is NULL or a live `struct llama_vocab *` (from
/// `llama_model_get_vocab`); `text` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn entropix_token_from_text(vocab: *const llama_vocab, text: *const c_char) -> llama_token {
    const F: &str = "entropix_token_from_text";
    guard(-1, || {
        if vocab.is_null() {
            return Err(format!("{F}: vocab is NULL"));
        }
        if text.is_null() {
            return Err(format!("{F}: text is NULL"));
        }
        let bytes = CStr::from_ptr(text).to_bytes();
        if bytes.is_empty() {
            return Err(format!("{F}: text is empty"));
        }
        let len = i32::try_from(bytes.len()).map_err(|_| format!("{F}: text too long"))?;
        let mut tokens = [0 as llama_token; 8];
        let n = llama_tokenize(vocab, text, len, tokens.as_mut_ptr(), tokens.len() as i32, false, true);
        let shown = String::from_utf8_lossy(bytes);
        match n {
            1 => Ok(tokens[0]),
            0 => Err(format!("{F}: {shown:?} tokenizes to no token")),
            n if n > 1 => Err(format!("{F}: {shown:?} tokenizes to {n} tokens {:?}, not one", &tokens[..n as usize])),
            i32::MIN => Err(format!("{F}: tokenization of {shown:?} failed (overflow)")),
            n => Err(format!("{F}: {shown:?} tokenizes to {} tokens, not one", -n)),
        }
    })
}

/// Writes the last step of an Entropix or four-mode sampler into `*out`:
/// strategy (`ENTROPIX_STRATEGY_*`), logits entropy (bits) and varentropy
/// (bits²), whether attention was available and the attention terms used,
/// the derived temperature / top-k / top-p / min-p, the inserted and
/// selected tokens, and the adaptive draws' count and best score.
/// `out->valid` is false before the first apply. Returns `ENTROPIX_OK`, or
/// `ENTROPIX_ERR_NULL` / `ENTROPIX_ERR_INVALID` (not an Entropix or
/// four-mode sampler of this library, e.g. a chain or llama.cpp's own)
/// with `entropix_last_error()`; `*out` is unchanged on error. The sampler
/// stays the caller's (or its chain's).
///
/// # Safety
/// `smpl` is NULL or a live `struct llama_sampler *` not used from another
/// thread during the call; `out` is NULL or points to a writable
/// `entropix_entropix_step`.
#[no_mangle]
pub unsafe extern "C" fn entropix_entropix_last_step(smpl: *const llama_sampler, out: *mut EntropixStep) -> c_int {
    const F: &str = "entropix_entropix_last_step";
    guard_status(|| {
        if out.is_null() || smpl.is_null() {
            return Err(Failure::null(format!("{F}: {} is NULL", if smpl.is_null() { "sampler" } else { "out" })));
        }
        let sampler = sampler_ref(smpl).ok_or_else(|| format!("{F}: not an entropix sampler"))?;
        let report = if let Some(e) = sampler.downcast_ref::<Entropix>() {
            e.last_step()
        } else if let Some(f) = sampler.downcast_ref::<FourMode>() {
            f.last_step()
        } else {
            return Err(format!("{F}: `{}` is not an entropix or four-mode sampler", sampler.name()).into());
        };
        *out = EntropixStep::from_report(report);
        Ok(ENTROPIX_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;
    use crate::ffi::{entropix_last_error, ENTROPIX_ERR_INVALID, ENTROPIX_ERR_NULL};

    fn last_error() -> String {
        unsafe { CStr::from_ptr(entropix_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn constructors_and_last_step() {
        unsafe {
            let bad = EntropixParams { temp: -1.0, ..entropix_entropix_default_params() };
            assert!(entropix_sampler_init_entropix(&bad).is_null());
            assert!(last_error().contains("temp"));
            let s = entropix_sampler_init_entropix(std::ptr::null());
            assert!(!s.is_null());
            let mut out = EntropixStep { valid: true, ..Default::default() };
            assert_eq!(entropix_entropix_last_step(s, &mut out), ENTROPIX_OK);
            assert!(!out.valid);
            let mut data: Vec<TokenData> = (0..64).map(|i| TokenData::new(i, 0.0)).collect();
            let mut arr = llama_cpp_sys_2::llama_token_data_array { data: data.as_mut_ptr().cast(), size: data.len(), selected: -1, sorted: false };
            llama_cpp_sys_2::llama_sampler_apply(s, &mut arr);
            assert!(arr.selected >= 0);
            assert_eq!(entropix_entropix_last_step(s, &mut out), ENTROPIX_OK);
            assert!(out.valid);
            assert_eq!(out.strategy, ENTROPIX_STRATEGY_TREADING);
            assert!((out.entropy_bits - 6.0).abs() < 1e-9);
            assert!(!out.attention_available);
            assert_eq!(out.selected_token, data[arr.selected as usize].id);
            assert_eq!(out.inserted_token, -1);
            assert!(entropix_entropix_last_step(s, std::ptr::null_mut()) == ENTROPIX_ERR_NULL);
            llama_cpp_sys_2::llama_sampler_free(s);

            let f = entropix_sampler_init_four_mode(std::ptr::null());
            assert!(!f.is_null());
            assert_eq!(entropix_entropix_last_step(f, &mut out), ENTROPIX_OK);
            assert!(!out.valid);
            llama_cpp_sys_2::llama_sampler_free(f);

            let g = crate::ffi::entropix_sampler_init_greedy();
            assert_eq!(entropix_entropix_last_step(g, &mut out), ENTROPIX_ERR_INVALID);
            assert!(last_error().contains("not an entropix or four-mode sampler"));
            llama_cpp_sys_2::llama_sampler_free(g);
            let foreign = llama_cpp_sys_2::llama_sampler_init_greedy();
            assert_eq!(entropix_entropix_last_step(foreign, &mut out), ENTROPIX_ERR_INVALID);
            llama_cpp_sys_2::llama_sampler_free(foreign);
        }
    }

    #[test]
    fn load_profile_checks_pointers_and_files() {
        unsafe {
            let mut p = entropix_entropix_default_params();
            assert_eq!(entropix_entropix_params_load_profile(std::ptr::null(), &mut p), ENTROPIX_ERR_NULL);
            let path = std::ffi::CString::new("/nonexistent/profile.json").unwrap();
            assert_eq!(entropix_entropix_params_load_profile(path.as_ptr(), std::ptr::null_mut()), ENTROPIX_ERR_NULL);
            assert_eq!(entropix_entropix_params_load_profile(path.as_ptr(), &mut p), ENTROPIX_ERR_INVALID);
            assert!(last_error().contains("/nonexistent/profile.json"));
            assert_eq!(p, EntropixParams::default());

            let dir = std::env::temp_dir().join(format!("entropix-ffi-profile-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("p.json");
            std::fs::write(&file, r#"{"model": "x", "thresholds": {"high_ent": {"value": 4.0, "unit": "bits"}}}"#).unwrap();
            let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
            assert_eq!(entropix_entropix_params_load_profile(c.as_ptr(), &mut p), ENTROPIX_OK);
            assert_eq!(p.high_ent, 4.0);
            let mut f = entropix_four_mode_default_params();
            assert_eq!(entropix_four_mode_params_load_profile(c.as_ptr(), &mut f), ENTROPIX_OK);
            assert_eq!(f.high_ent, 4.0);
            std::fs::write(&file, r#"{"thresholds": {"hi_ent": {"value": 4.0, "unit": "bits"}}}"#).unwrap();
            assert_eq!(entropix_entropix_params_load_profile(c.as_ptr(), &mut p), ENTROPIX_ERR_INVALID);
            assert!(last_error().contains("unknown threshold `hi_ent`"), "{}", last_error());
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn token_from_text_rejects_null() {
        unsafe {
            let text = std::ffi::CString::new("?").unwrap();
            assert_eq!(entropix_token_from_text(std::ptr::null(), text.as_ptr()), -1);
            assert!(last_error().contains("vocab is NULL"));
        }
    }
}
