//! `--sampler-config FILE`: a whole chain from a JSON file, one object per
//! sampler, in order, each `{"name": NAME, PARAM: VALUE, ...}` with the
//! library's names and C field names (those of
//! `entropix_sampler_init_json`), so that every sampler and every parameter
//! of the library is reachable from the CLI:
//!
//! ```json
//! {"samplers": [
//!   {"name": "repetition_decay", "factor": 1.3, "decay": 0.9},
//!   {"name": "top_k", "k": 40},
//!   {"name": "temperature", "temp": 0.7},
//!   {"name": "dist", "seed": 1}
//! ]}
//! ```
//!
//! A bare list works too. DRY needs the model's vocabulary: its `--dry-*`
//! flags build it (`{"name": "dry"}` in the file takes them; where they
//! are not given, entropix's loop guard: multiplier 0.8, allowed
//! length 2).

use std::path::Path;

use entropix_sampler::ffi;
use entropix_sampler::llama::{Model, SamplerChain};
use serde_json::{Map, Value};

use crate::args::Args;

/// The chain the file describes, and the AlphaSampler's lookahead size
/// when an `alpha` entry turns it on.
pub fn build(path: &Path, args: &Args, model: &Model) -> Result<(SamplerChain, Option<u32>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --sampler-config {}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("--sampler-config {}: not JSON: {e}", path.display()))?;
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("samplers") {
            Some(Value::Array(items)) => items,
            _ => return Err(format!("--sampler-config {}: expected a list of samplers or {{\"samplers\": [...]}}", path.display())),
        },
        _ => return Err(format!("--sampler-config {}: expected a list of samplers or {{\"samplers\": [...]}}", path.display())),
    };
    if items.is_empty() {
        return Err(format!("--sampler-config {}: the chain is empty", path.display()));
    }
    let mut chain = SamplerChain::new(true);
    let mut lookahead = None;
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut params) = item else {
            return Err(format!("--sampler-config {}: entry {i} is not an object", path.display()));
        };
        let name = match params.remove("name") {
            Some(Value::String(n)) => n,
            _ => return Err(format!("--sampler-config {}: entry {i} has no string `name`", path.display())),
        };
        let smpl = if name == "dry" {
            if !params.is_empty() {
                return Err(format!("--sampler-config: entry {i} (dry): set DRY with the --dry-* flags"));
            }
            crate::chain_builder::dry_sampler(args, model, crate::chain_builder::NEAR_MODE_LOOP_GUARD, true)?
        } else {
            if name == "alpha" && params.get("lookahead").and_then(Value::as_bool) == Some(true) {
                let k =
                    params.get("lookahead_k").and_then(Value::as_u64).unwrap_or(entropix_sampler::samplers::alpha::AlphaParams::default().lookahead_k as u64);
                lookahead = Some(k as u32);
            }
            from_json(&name, &params).map_err(|e| format!("--sampler-config {}: entry {i}: {e}", path.display()))?
        };
        // SAFETY: a fresh sampler, owned by the chain from here on.
        unsafe { chain.add(smpl) }.map_err(|e| e.to_string())?;
    }
    Ok((chain, lookahead))
}

/// One sampler through the C ABI's JSON constructor.
fn from_json(name: &str, params: &Map<String, Value>) -> Result<*mut entropix_sampler::sys::llama_sampler, String> {
    let name_c = std::ffi::CString::new(name).map_err(|_| "NUL in a name".to_string())?;
    let json = std::ffi::CString::new(Value::Object(params.clone()).to_string()).map_err(|_| "NUL in the parameters".to_string())?;
    // SAFETY: NUL-terminated strings.
    let smpl = unsafe { ffi::entropix_sampler_init_json(name_c.as_ptr(), json.as_ptr()) };
    if smpl.is_null() {
        // SAFETY: the library's thread-local message.
        return Err(unsafe { std::ffi::CStr::from_ptr(ffi::entropix_last_error()) }.to_string_lossy().into_owned());
    }
    Ok(smpl)
}
