//! Hyperparameter profiles (JSON) and the tuning objective.
//!
//! A profile file is
//! ```json
//! { "format": "entropix-dirichlet-profile", "version": 1,
//!   "params": { ...DirichletParams fields... },
//!   "meta": { ...anything: objective value, data, date... } }
//! ```
//! Missing params fields take their defaults; unknown fields are an error
//! (a typo must not silently fall back to a default). A bare params object
//! (no `format`) is accepted too. Every value is in nats (see
//! [`DirichletParams`]).
//!
//! [`cross_entropy_rate`] replays the sampler's state machine over a
//! recorded sequence of (logits, actual token) pairs and returns the
//! average of seed 003's `emwa_cross_ent` (nats), the quantity the seed
//! says all hyperparameters are tuned to minimise.

use std::path::Path;

use serde::Serialize;

use super::params::DirichletParams;
use super::sampler::{DirichletPath, DirichletSampler};
use crate::core::{Candidates, ParamError, Sampler, TokenData, TokenId};

/// The `format` tag of a profile file.
pub const PROFILE_FORMAT: &str = "entropix-dirichlet-profile";
/// The profile version this crate writes and reads.
pub const PROFILE_VERSION: u32 = 1;

/// A profile: the params plus free-form metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// Always [`PROFILE_FORMAT`].
    pub format: String,
    /// Always [`PROFILE_VERSION`].
    pub version: u32,
    /// The hyperparameters.
    #[serde(default)]
    pub params: DirichletParams,
    /// Anything the writer wants to keep with them (e.g. the objective's
    /// value, the data it was measured on).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

impl Profile {
    /// A profile of `params` with `meta` (`Null` for none).
    pub fn new(params: DirichletParams, meta: serde_json::Value) -> Self {
        Self { format: PROFILE_FORMAT.into(), version: PROFILE_VERSION, params, meta }
    }

    /// Parses a profile (or a bare params object) and validates the params;
    /// fields it does not name take their defaults.
    pub fn from_json(text: &str) -> Result<Self, ProfileError> {
        Self::from_json_over(text, &DirichletParams::default())
    }

    /// As [`Profile::from_json`], but fields the profile does not name keep
    /// their values in `base`.
    pub fn from_json_over(text: &str, base: &DirichletParams) -> Result<Self, ProfileError> {
        let json_err = |e: serde_json::Error| ProfileError::Json(e.to_string());
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
        let serde_json::Value::Object(mut top) = value else {
            return Err(ProfileError::Json("the profile is not a JSON object".into()));
        };
        let (params_obj, meta) = if top.contains_key("format") {
            let format = top.remove("format");
            if format.as_ref().and_then(|f| f.as_str()) != Some(PROFILE_FORMAT) {
                return Err(ProfileError::Format(format!("format is {}, expected {PROFILE_FORMAT:?}", format.unwrap_or_default())));
            }
            let version = top.remove("version").and_then(|v| v.as_u64());
            if version != Some(PROFILE_VERSION as u64) {
                return Err(ProfileError::Format(format!("version {version:?} is not supported (expected {PROFILE_VERSION})")));
            }
            let params = match top.remove("params") {
                Some(serde_json::Value::Object(o)) => o,
                None => serde_json::Map::new(),
                Some(_) => return Err(ProfileError::Json("`params` is not an object".into())),
            };
            let meta = top.remove("meta").unwrap_or(serde_json::Value::Null);
            if let Some(key) = top.keys().next() {
                return Err(ProfileError::Json(format!("unknown top-level field `{key}`")));
            }
            (params, meta)
        } else {
            (top, serde_json::Value::Null)
        };
        // Overlay the named fields on `base`, then parse strictly (unknown
        // fields are an error).
        let serde_json::Value::Object(mut merged) = serde_json::to_value(base).map_err(json_err)? else {
            return Err(ProfileError::Json("internal: params do not serialise to an object".into()));
        };
        for (k, v) in params_obj {
            merged.insert(k, v);
        }
        let params: DirichletParams = serde_json::from_value(serde_json::Value::Object(merged)).map_err(json_err)?;
        params.validate()?;
        Ok(Profile::new(params, meta))
    }

    /// Pretty JSON of the profile.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading or writing the file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The text is not valid JSON for a profile.
    #[error("invalid profile JSON: {0}")]
    Json(String),
    /// Wrong format tag or version.
    #[error("not a dirichlet profile: {0}")]
    Format(String),
    /// The params are out of range.
    #[error(transparent)]
    Param(#[from] ParamError),
}

/// Reads and validates the params of the profile at `path`; fields it
/// does not name take their defaults.
pub fn load_profile(path: &Path) -> Result<DirichletParams, ProfileError> {
    load_profile_over(path, &DirichletParams::default())
}

/// As [`load_profile`], but fields the profile does not name keep their
/// values in `base`.
pub fn load_profile_over(path: &Path, base: &DirichletParams) -> Result<DirichletParams, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Io { path: path.display().to_string(), message: e.to_string() })?;
    Ok(Profile::from_json_over(&text, base)?.params)
}

/// Validates `params` and writes them as a profile with `meta` (`Null` for
/// none) to `path`.
pub fn save_profile(path: &Path, params: &DirichletParams, meta: serde_json::Value) -> Result<(), ProfileError> {
    params.validate()?;
    let text = Profile::new(*params, meta).to_json() + "\n";
    std::fs::write(path, text).map_err(|e| ProfileError::Io { path: path.display().to_string(), message: e.to_string() })
}

/// Averages over a replayed sequence (nats).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReplayStats {
    /// Steps replayed.
    pub steps: usize,
    /// Mean of seed 003's `emwa_cross_ent` after each step (the objective).
    pub mean_emwa_cross_ent_nats: f64,
    /// Mean of `-ln p_scaffold[token]` (capped at 18.42): the log-loss of
    /// the distribution the seed's path draws from.
    pub mean_surprise_scaffold_nats: f64,
    /// Mean of `-ln p_model[token]` (capped at 18.42).
    pub mean_surprise_naked_nats: f64,
    /// Steps per path: dirichlet, pre_temp, argmax, topk.
    pub paths: [usize; 4],
}

/// Why a replay could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The params are out of range.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// Logits and tokens differ in count, or there are none.
    #[error("{0}")]
    Input(String),
}

/// Runs the sampler's state machine over recorded steps: for each step it
/// applies the sampler to `logits_sequence[i]` (ids 0..n_vocab) and accepts
/// `tokens[i]`, the token that actually followed (not the sampled one), so
/// the EMAs see the real text. `prompt` (row-major logits of every prompt
/// position and n_vocab) initialises the state as
/// `observe_prompt_logits` does; without it the first step does.
pub fn replay<L: AsRef<[f32]>>(
    params: &DirichletParams,
    prompt: Option<(&[f32], usize)>,
    logits_sequence: &[L],
    tokens: &[TokenId],
) -> Result<ReplayStats, ReplayError> {
    if logits_sequence.len() != tokens.len() {
        return Err(ReplayError::Input(format!("{} logit rows but {} tokens", logits_sequence.len(), tokens.len())));
    }
    if tokens.is_empty() {
        return Err(ReplayError::Input("nothing to replay".into()));
    }
    let mut sampler = DirichletSampler::new(*params)?;
    if let Some((logits, n_vocab)) = prompt {
        sampler.observe_prompt_logits(logits, n_vocab);
    }
    let mut buf: Vec<TokenData> = Vec::new();
    let mut stats = ReplayStats::default();
    let (mut sum_ce, mut sum_scaf, mut sum_naked) = (0.0, 0.0, 0.0);
    for (row, &token) in logits_sequence.iter().zip(tokens) {
        buf.clear();
        buf.extend(row.as_ref().iter().enumerate().map(|(id, &l)| TokenData::new(id as TokenId, l)));
        let ok = sampler.apply(&mut Candidates::new(&mut buf)).is_ok();
        sampler.accept(token);
        if !ok {
            continue;
        }
        stats.steps += 1;
        sum_ce += sampler.emwa_cross_ent_nats();
        let (naked, scaffold, _) = sampler.last_surprises_nats();
        sum_scaf += scaffold;
        sum_naked += naked;
        match sampler.last_path() {
            Some(DirichletPath::Dirichlet) => stats.paths[0] += 1,
            Some(DirichletPath::PreTemp) => stats.paths[1] += 1,
            Some(DirichletPath::Argmax) => stats.paths[2] += 1,
            Some(DirichletPath::TopK) => stats.paths[3] += 1,
            None => {}
        }
    }
    if stats.steps == 0 {
        return Err(ReplayError::Input("no step had a finite logit".into()));
    }
    let n = stats.steps as f64;
    stats.mean_emwa_cross_ent_nats = sum_ce / n;
    stats.mean_surprise_scaffold_nats = sum_scaf / n;
    stats.mean_surprise_naked_nats = sum_naked / n;
    Ok(stats)
}

/// The tuning objective: the average of seed 003's `emwa_cross_ent` (nats)
/// over a recorded sequence of (logits, actual token) pairs, the state
/// initialised from the first step (see [`replay`] to start from prompt
/// logits and for the other averages).
pub fn cross_entropy_rate<L: AsRef<[f32]>>(params: &DirichletParams, logits_sequence: &[L], tokens: &[TokenId]) -> Result<f64, ReplayError> {
    replay(params, None, logits_sequence, tokens).map(|s| s.mean_emwa_cross_ent_nats)
}
