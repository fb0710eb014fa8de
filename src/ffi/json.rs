//! `entropix_sampler_init_json`: any sampler of the library by name, its
//! parameters as a JSON object of the C field names. For hosts where the
//! params structs are awkward to lay out (Python's ctypes, Go, JavaScript)
//! and for configuration files; the CLI's `--sampler-config` uses it.

use std::ffi::{c_char, CStr};

use llama_cpp_sys_2::llama_sampler;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::guard;
use super::plugin::into_llama_sampler;
use crate::core::{ParamError, Sampler};
use crate::samplers::alpha::{AlphaParams, AlphaSampler};
use crate::samplers::dirichlet::{DirichletParams, DirichletSampler};
use crate::samplers::entropix::{Entropix, EntropixParams, FourMode, FourModeParams};
use crate::samplers::filters::*;
use crate::samplers::mirostat::{Mirostat, MirostatParams, MirostatV2, MirostatV2Params};
use crate::samplers::penalties::{
    LengthPenalty, LengthPenaltyParams, LogitBias, LogitBiasEntry, Penalties, PenaltiesParams, RepetitionDecay, RepetitionDecayParams, TokenBan,
};
use crate::samplers::*;

/// The names `entropix_sampler_init_json` accepts (a `-` may stand for `_`).
pub const JSON_SAMPLER_NAMES: &[&str] = &[
    "greedy",
    "dist",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical",
    "top_n_sigma",
    "temp_ext",
    "dynamic_temperature",
    "mirostat",
    "mirostat_v2",
    "penalties",
    "repetition_decay",
    "length_penalty",
    "token_ban",
    "logit_bias",
    "entropix",
    "four_mode",
    "alpha",
    "dirichlet",
];

/// `defaults` with the fields of `given` written over it (through serde,
/// by field name); unknown fields are an error that lists the known ones.
/// Ranges are checked later, by the sampler's constructor.
pub fn merge<P: Serialize + DeserializeOwned>(defaults: P, given: Map<String, Value>, name: &str) -> Result<P, String> {
    let mut value = serde_json::to_value(defaults).map_err(|e| e.to_string())?;
    let fields = value.as_object_mut().ok_or("parameters are not a struct")?;
    for (k, v) in given {
        let Some(slot) = fields.get_mut(&k) else {
            let mut known: Vec<&str> = fields.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!("{name}: unknown parameter `{k}` (known: {})", known.join(", ")));
        };
        *slot = v;
    }
    serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))
}

/// Takes `key` out of `given` as a list of `T`.
fn take_list<T: DeserializeOwned>(given: &mut Map<String, Value>, key: &str, name: &str) -> Result<Vec<T>, String> {
    match given.remove(key) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v).map_err(|e| format!("{name}: `{key}`: {e}")),
    }
}

/// Whether `given` asks for the reference preset (`"preset": "reference"`);
/// removes the key.
fn reference_preset(given: &mut Map<String, Value>, name: &str) -> Result<bool, String> {
    match given.remove("preset") {
        None => Ok(false),
        Some(Value::String(s)) if s == "default" => Ok(false),
        Some(Value::String(s)) if s == "reference" => Ok(true),
        Some(other) => Err(format!("{name}: `preset` must be \"default\" or \"reference\", not {other}")),
    }
}

fn boxed<S: Sampler + 'static>(r: Result<S, ParamError>, name: &str) -> Result<Box<dyn Sampler>, String> {
    r.map(|s| Box::new(s) as Box<dyn Sampler>).map_err(|e| format!("{name}: {e}"))
}

/// A sampler whose parameters are one plain struct: `given` over `base`,
/// then its validating constructor.
fn plain<P, S>(base: P, given: Map<String, Value>, name: &str, new: fn(P) -> Result<S, ParamError>) -> Result<Box<dyn Sampler>, String>
where
    P: Serialize + DeserializeOwned,
    S: Sampler + 'static,
{
    boxed(new(merge(base, given, name)?), name)
}

/// Builds the sampler `name` from the JSON object `params` (`None`: the
/// defaults).
pub fn sampler_from_json(name: &str, params: Option<&str>) -> Result<Box<dyn Sampler>, String> {
    let name = name.trim().replace('-', "_");
    let mut given: Map<String, Value> = match params.map(str::trim).filter(|s| !s.is_empty()) {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text).map_err(|e| format!("{name}: the parameters are not JSON: {e}"))? {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => return Err(format!("{name}: the parameters must be a JSON object")),
        },
    };
    let n = name.as_str();
    match n {
        "greedy" => {
            if !given.is_empty() {
                return Err("greedy: takes no parameters".into());
            }
            Ok(Box::new(Greedy))
        }
        "dist" => plain(DistParams::default(), given, n, Dist::new),
        "temperature" => plain(TemperatureParams::default(), given, n, Temperature::new),
        "top_k" => plain(TopKParams::default(), given, n, TopK::new),
        "top_p" => plain(TopPParams::default(), given, n, TopP::new),
        "min_p" => plain(MinPParams::default(), given, n, MinP::new),
        "typical" => plain(TypicalParams::default(), given, n, Typical::new),
        "top_n_sigma" => plain(TopNSigmaParams::default(), given, n, TopNSigma::new),
        "temp_ext" => plain(TempExtParams::default(), given, n, TempExt::new),
        "dynamic_temperature" => plain(DynamicTemperatureParams::default(), given, n, DynamicTemperature::new),
        "mirostat" => plain(MirostatParams::default(), given, n, Mirostat::new),
        "mirostat_v2" => plain(MirostatV2Params::default(), given, n, MirostatV2::new),
        "penalties" => plain(PenaltiesParams::default(), given, n, Penalties::new),
        "repetition_decay" => plain(RepetitionDecayParams::default(), given, n, RepetitionDecay::new),
        "length_penalty" => {
            let stops: Vec<i32> = take_list(&mut given, "stop_tokens", n)?;
            boxed(LengthPenalty::new(merge(LengthPenaltyParams::default(), given, n)?, stops), n)
        }
        "token_ban" => {
            let ids: Vec<i32> = take_list(&mut given, "ids", n)?;
            if let Some(k) = given.keys().next() {
                return Err(format!("token_ban: unknown parameter `{k}` (known: ids)"));
            }
            Ok(Box::new(TokenBan::new(ids)))
        }
        "logit_bias" => {
            let pairs: Vec<(i32, f32)> = take_list(&mut given, "biases", n)?;
            if let Some(k) = given.keys().next() {
                return Err(format!("logit_bias: unknown parameter `{k}` (known: biases, a list of [token, bias])"));
            }
            let entries = pairs.into_iter().map(|(token, bias)| LogitBiasEntry { token, bias }).collect();
            boxed(LogitBias::new(entries), n)
        }
        "entropix" => {
            let base = if reference_preset(&mut given, n)? { EntropixParams::reference() } else { EntropixParams::default() };
            plain(base, given, n, Entropix::new)
        }
        "four_mode" => {
            let base = if reference_preset(&mut given, n)? { FourModeParams::reference() } else { FourModeParams::default() };
            plain(base, given, n, FourMode::new)
        }
        "alpha" => {
            let base = if reference_preset(&mut given, n)? { AlphaParams::reference() } else { AlphaParams::default() };
            plain(base, given, n, AlphaSampler::new)
        }
        "dirichlet" => {
            let base = if reference_preset(&mut given, n)? { DirichletParams::reference() } else { DirichletParams::default() };
            plain(base, given, n, DirichletSampler::new)
        }
        "dry" => Err("dry needs the model's vocabulary: use entropix_sampler_init_dry".into()),
        other => Err(format!("unknown sampler `{other}` (known: {})", JSON_SAMPLER_NAMES.join(", "))),
    }
}

/// The names `entropix_sampler_init_json` accepts, comma-separated, in a
/// static NUL-terminated string (not to be freed).
#[no_mangle]
pub extern "C" fn entropix_sampler_json_names() -> *const c_char {
    static NAMES: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    guard(std::ptr::null(), || Ok(NAMES.get_or_init(|| std::ffi::CString::new(JSON_SAMPLER_NAMES.join(",")).expect("no NUL")).as_ptr()))
}

/// Any sampler of the library by `name` (`top_k`, `entropix`,
/// `repetition_decay`, ...; see the README), with `params_json` a JSON
/// object of its parameters by their C field names; missing fields keep
/// the defaults, NULL or `""` means all defaults. Lists:
/// `length_penalty`'s `stop_tokens`, `token_ban`'s `ids`, `logit_bias`'s
/// `biases` (`[[token, bias], ...]`). The entropix, four-mode, alpha and
/// dirichlet samplers accept `"preset": "reference"` (the seeds' values,
/// before the other fields). DRY needs the vocabulary: use
/// `entropix_sampler_init_dry`.
///
/// Returns a new sampler owned by the caller, or NULL with a last error
/// naming the problem (unknown sampler or field, a value of the wrong type
/// or out of range, malformed JSON).
///
/// # Safety
/// `name` is a NUL-terminated string; `params_json` is NULL or one.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_init_json(name: *const c_char, params_json: *const c_char) -> *mut llama_sampler {
    guard(std::ptr::null_mut(), || {
        if name.is_null() {
            return Err("entropix_sampler_init_json: name is NULL".into());
        }
        let name = CStr::from_ptr(name).to_str().map_err(|_| "entropix_sampler_init_json: name is not UTF-8".to_string())?;
        let params = if params_json.is_null() {
            None
        } else {
            Some(CStr::from_ptr(params_json).to_str().map_err(|_| "entropix_sampler_init_json: params_json is not UTF-8".to_string())?)
        };
        let sampler = sampler_from_json(name, params).map_err(|e| format!("entropix_sampler_init_json: {e}"))?;
        Ok(into_llama_sampler(sampler))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_reach_the_sampler_and_defaults_fill_the_rest() {
        let s = sampler_from_json("top-k", Some(r#"{"k": 3}"#)).unwrap();
        assert_eq!(s.name(), "top-k");
        let mut logits: Vec<crate::core::TokenData> = (0..10).map(|i| crate::core::TokenData::new(i, i as f32)).collect();
        let mut c = crate::core::Candidates::new(&mut logits);
        let mut s = s;
        s.apply(&mut c).unwrap();
        assert_eq!(c.len(), 3);
    }

    /// The error of a build that must fail.
    fn error(name: &str, params: Option<&str>) -> String {
        match sampler_from_json(name, params) {
            Ok(s) => panic!("{name} {params:?} built {}", s.name()),
            Err(e) => e,
        }
    }

    #[test]
    fn unknown_names_fields_and_bad_values_are_errors_that_say_so() {
        assert!(error("nucleus", None).contains("unknown sampler `nucleus`"));
        let e = error("top_p", Some(r#"{"pp": 0.9}"#));
        assert!(e.contains("unknown parameter `pp`") && e.contains("known: "), "{e}");
        assert!(sampler_from_json("top_p", Some(r#"{"p": "high"}"#)).is_err());
        assert!(error("entropix", Some(r#"{"temp": -1}"#)).contains("temp"));
        assert!(error("entropix", Some("[1]")).contains("JSON object"));
        assert!(error("entropix", Some("{")).contains("not JSON"));
        assert!(sampler_from_json("greedy", Some(r#"{"x": 1}"#)).is_err());
    }

    #[test]
    fn every_listed_name_builds_with_its_defaults() {
        for name in JSON_SAMPLER_NAMES {
            sampler_from_json(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(sampler_from_json("alpha", Some(r#"{"preset": "reference", "seed": 3}"#)).is_ok());
        assert!(sampler_from_json("token_ban", Some(r#"{"ids": [1, 2]}"#)).is_ok());
        assert!(sampler_from_json("logit_bias", Some(r#"{"biases": [[1, -2.5]]}"#)).is_ok());
    }
}
