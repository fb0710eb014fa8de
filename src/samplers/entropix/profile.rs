//! Threshold profiles: a named set of strategy thresholds with their
//! units, calibrated for one model and stored as JSON.
//!
//! ```json
//! {
//!   "model": "SmolLM2-135M-Instruct Q4_1",
//!   "description": "percentiles of 2000 decode steps",
//!   "thresholds": {
//!     "low_ent":  {"value": 0.1, "unit": "bits"},
//!     "low_vent": {"value": 0.1, "unit": "bits^2"},
//!     "high_ent": {"value": 3.4, "unit": "nats"}
//!   },
//!   "meta": {"n_steps": 2000}
//! }
//! ```
//!
//! Keys are the threshold fields of [`EntropixParams`]: `low_ent`,
//! `med_ent`, `high_ent`, `low_attn_ent`, `high_attn_ent` (entropies:
//! unit `bits` or `nats`), `low_vent`, `high_vent`, `low_attn_vent`,
//! `high_attn_vent` (varentropies: `bits^2` or `nats^2`, also written
//! `bits2`/`bits²`), `low_agree`, `high_agree`, `low_interaction`,
//! `high_interaction` (`dimensionless`). Values in nats are converted to
//! bits on loading (bits = nats / ln 2, bits² = nats² / (ln 2)²). A key
//! may be left out (the parameter keeps its value). An unknown key, a
//! wrong unit, an unknown top-level field or a non-finite value is an
//! error that names it. `meta` is free-form (for the calibration's own
//! record) and ignored when applying.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::four_mode::FourModeParams;
use super::shrek::EntropixParams;
use crate::core::ParamError;

/// The unit of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// An entropy, bits.
    Bits,
    /// A varentropy, bits².
    Bits2,
    /// A plain number.
    Dimensionless,
}

impl Unit {
    /// The canonical spelling written by [`Profile::save`].
    pub fn canonical(self) -> &'static str {
        match self {
            Unit::Bits => "bits",
            Unit::Bits2 => "bits^2",
            Unit::Dimensionless => "dimensionless",
        }
    }

    /// The spellings accepted on loading, each with the factor that turns
    /// the value into this unit.
    fn accepted(self) -> &'static [(&'static str, f64)] {
        const LN2: f64 = std::f64::consts::LN_2;
        match self {
            Unit::Bits => &[("bits", 1.0), ("bit", 1.0), ("nats", 1.0 / LN2), ("nat", 1.0 / LN2)],
            Unit::Bits2 => &[
                ("bits^2", 1.0),
                ("bits2", 1.0),
                ("bits²", 1.0),
                ("nats^2", 1.0 / (LN2 * LN2)),
                ("nats2", 1.0 / (LN2 * LN2)),
                ("nats²", 1.0 / (LN2 * LN2)),
            ],
            Unit::Dimensionless => &[("dimensionless", 1.0), ("", 1.0), ("1", 1.0)],
        }
    }

    /// The factor to convert a value in `unit` to this unit.
    fn factor(self, unit: &str) -> Option<f64> {
        let u = unit.trim().to_ascii_lowercase();
        self.accepted().iter().find(|(name, _)| *name == u).map(|&(_, f)| f)
    }
}

/// The thresholds a profile may set, with their units (private: a `pub
/// const` would be exported to the C header by cbindgen).
const PROFILE_KEYS: &[(&str, Unit)] = &[
    ("low_ent", Unit::Bits),
    ("med_ent", Unit::Bits),
    ("high_ent", Unit::Bits),
    ("low_vent", Unit::Bits2),
    ("high_vent", Unit::Bits2),
    ("low_attn_ent", Unit::Bits),
    ("high_attn_ent", Unit::Bits),
    ("low_attn_vent", Unit::Bits2),
    ("high_attn_vent", Unit::Bits2),
    ("low_agree", Unit::Dimensionless),
    ("high_agree", Unit::Dimensionless),
    ("low_interaction", Unit::Dimensionless),
    ("high_interaction", Unit::Dimensionless),
];

/// The thresholds a profile may set, with their units.
pub fn profile_keys() -> &'static [(&'static str, Unit)] {
    PROFILE_KEYS
}

/// The unit of profile key `key`.
pub fn unit_of(key: &str) -> Option<Unit> {
    PROFILE_KEYS.iter().find(|(k, _)| *k == key).map(|&(_, u)| u)
}

/// One threshold: a value and its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The value, in `unit`.
    pub value: f64,
    /// `bits`, `nats`, `bits^2`, `nats^2` or `dimensionless`.
    pub unit: String,
}

/// A named set of thresholds for one model (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The model the thresholds were calibrated on (free text).
    #[serde(default)]
    pub model: String,
    /// How they were obtained (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Threshold name -> value with unit.
    pub thresholds: BTreeMap<String, Threshold>,
    /// Free-form record of the calibration; ignored when applying.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
}

/// Why a profile could not be loaded, saved or applied.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// Reading or writing the file failed.
    #[error("profile {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid profile JSON (includes unknown top-level
    /// fields).
    #[error("profile {origin}: invalid JSON: {message}")]
    Parse {
        /// The file (or `<string>`).
        origin: String,
        /// serde's message, with line and column.
        message: String,
    },
    /// A threshold name that no parameter has.
    #[error("profile {origin}: unknown threshold `{key}` (known: {known})")]
    UnknownKey {
        /// The file (or `<string>`).
        origin: String,
        /// The unknown name.
        key: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A unit that does not fit the threshold.
    #[error("profile {origin}: threshold `{key}` has unit `{unit}`, expected {expected}")]
    Unit {
        /// The file (or `<string>`).
        origin: String,
        /// The threshold.
        key: String,
        /// The unit given.
        unit: String,
        /// The accepted units.
        expected: String,
    },
    /// A NaN or infinite value (or one that overflows f32 in bits).
    #[error("profile {origin}: threshold `{key}` = {value} is not a finite number")]
    NotFinite {
        /// The file (or `<string>`).
        origin: String,
        /// The threshold.
        key: String,
        /// The value.
        value: f64,
    },
    /// The parameters with the profile applied are invalid.
    #[error("profile {origin}: {source}")]
    Invalid {
        /// The file (or `<string>`).
        origin: String,
        /// The parameter error.
        source: ParamError,
    },
}

/// Mutable access to the profile-settable fields of Entropix params.
fn entropix_field<'a>(p: &'a mut EntropixParams, key: &str) -> Option<&'a mut f32> {
    Some(match key {
        "low_ent" => &mut p.low_ent,
        "med_ent" => &mut p.med_ent,
        "high_ent" => &mut p.high_ent,
        "low_vent" => &mut p.low_vent,
        "high_vent" => &mut p.high_vent,
        "low_attn_ent" => &mut p.low_attn_ent,
        "high_attn_ent" => &mut p.high_attn_ent,
        "low_attn_vent" => &mut p.low_attn_vent,
        "high_attn_vent" => &mut p.high_attn_vent,
        "low_agree" => &mut p.low_agree,
        "high_agree" => &mut p.high_agree,
        "low_interaction" => &mut p.low_interaction,
        "high_interaction" => &mut p.high_interaction,
        _ => return None,
    })
}

/// Mutable access to the profile-settable fields of four-mode params
/// (the logits thresholds; it has no attention thresholds).
fn four_mode_field<'a>(p: &'a mut FourModeParams, key: &str) -> Option<&'a mut f32> {
    Some(match key {
        "low_ent" => &mut p.low_ent,
        "med_ent" => &mut p.med_ent,
        "high_ent" => &mut p.high_ent,
        "low_vent" => &mut p.low_vent,
        "high_vent" => &mut p.high_vent,
        _ => return None,
    })
}

impl Profile {
    /// An empty profile for `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self { model: model.into(), ..Default::default() }
    }

    /// Every threshold of `params`, in canonical units.
    pub fn from_entropix_params(model: impl Into<String>, params: &EntropixParams) -> Self {
        let mut profile = Self::new(model);
        let mut p = *params;
        for &(key, _) in PROFILE_KEYS {
            let v = *entropix_field(&mut p, key).expect("every key is a field");
            profile.set(key, v as f64).expect("known key");
        }
        profile
    }

    /// Sets threshold `key` to `value` in its canonical unit (bits, bits²
    /// or dimensionless). Errors on an unknown key or a non-finite value.
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), ProfileError> {
        let unit = unit_of(key).ok_or_else(|| unknown(&"<profile>", key))?;
        if !value.is_finite() {
            return Err(ProfileError::NotFinite { origin: "<profile>".into(), key: key.into(), value });
        }
        self.thresholds.insert(key.to_string(), Threshold { value, unit: unit.canonical().to_string() });
        Ok(())
    }

    /// Threshold `key` in its canonical unit, converted from the unit it
    /// is stored in; `None` when absent. Errors as [`Profile::check`].
    pub fn get(&self, key: &str) -> Result<Option<f64>, ProfileError> {
        self.resolved("<profile>").map(|all| all.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
    }

    /// Parses a profile from JSON text and checks it.
    pub fn from_json_str(text: &str) -> Result<Self, ProfileError> {
        Self::parse(text, "<string>")
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ProfileError> {
        let profile: Profile =
            serde_json::from_str(text).map_err(|e| ProfileError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        profile.resolved(origin)?;
        Ok(profile)
    }

    /// Reads and checks a profile file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ProfileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Writes the profile as pretty JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ProfileError> {
        let path = path.as_ref();
        let mut text = serde_json::to_string_pretty(self).map_err(|e| ProfileError::Parse { origin: path.display().to_string(), message: e.to_string() })?;
        text.push('\n');
        std::fs::write(path, text).map_err(|source| ProfileError::Io { path: path.to_path_buf(), source })
    }

    /// Checks every key, unit and value (done by `load` and
    /// `from_json_str`).
    pub fn check(&self) -> Result<(), ProfileError> {
        self.resolved("<profile>").map(|_| ())
    }

    /// The thresholds as (key, value in canonical unit).
    fn resolved(&self, origin: &str) -> Result<Vec<(String, f64)>, ProfileError> {
        let mut out = Vec::with_capacity(self.thresholds.len());
        for (key, t) in &self.thresholds {
            let unit = unit_of(key).ok_or_else(|| unknown(&origin, key))?;
            let factor = unit.factor(&t.unit).ok_or_else(|| ProfileError::Unit {
                origin: origin.to_string(),
                key: key.clone(),
                unit: t.unit.clone(),
                expected: unit.accepted().iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            })?;
            let v = t.value * factor;
            if !v.is_finite() || v.abs() > f32::MAX as f64 {
                return Err(ProfileError::NotFinite { origin: origin.to_string(), key: key.clone(), value: t.value });
            }
            out.push((key.clone(), v));
        }
        Ok(out)
    }

    /// Sets the profile's thresholds in `params` (converted to bits/bits²)
    /// and validates the result; on any error `params` is left unchanged.
    pub fn apply_to(&self, params: &mut EntropixParams) -> Result<(), ProfileError> {
        let origin = self.origin();
        let mut p = *params;
        for (key, v) in self.resolved(&origin)? {
            *entropix_field(&mut p, &key).expect("resolved keys are known") = v as f32;
        }
        p.validate().map_err(|source| ProfileError::Invalid { origin, source })?;
        *params = p;
        Ok(())
    }

    /// Sets the logits thresholds (`low_ent`, `med_ent`, `high_ent`,
    /// `low_vent`, `high_vent`) in four-mode params and validates; the
    /// attention-selection thresholds, which that sampler does not have,
    /// are ignored. On any error `params` is left unchanged.
    pub fn apply_to_four_mode(&self, params: &mut FourModeParams) -> Result<(), ProfileError> {
        let origin = self.origin();
        let mut p = *params;
        for (key, v) in self.resolved(&origin)? {
            if let Some(f) = four_mode_field(&mut p, &key) {
                *f = v as f32;
            }
        }
        p.validate().map_err(|source| ProfileError::Invalid { origin, source })?;
        *params = p;
        Ok(())
    }

    fn origin(&self) -> String {
        if self.model.is_empty() {
            "<profile>".to_string()
        } else {
            format!("for `{}`", self.model)
        }
    }
}

fn unknown(origin: &dyn std::fmt::Display, key: &str) -> ProfileError {
    ProfileError::UnknownKey {
        origin: origin.to_string(),
        key: key.to_string(),
        known: PROFILE_KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_converts_nats_and_applies() {
        let text = r#"{"model": "m", "thresholds": {
            "low_ent": {"value": 0.2, "unit": "bits"},
            "high_ent": {"value": 2.0, "unit": "nats"},
            "high_vent": {"value": 1.0, "unit": "nats^2"},
            "low_agree": {"value": 0.001, "unit": "dimensionless"}
        }, "meta": {"n_steps": 10}}"#;
        let profile = Profile::from_json_str(text).unwrap();
        let mut p = EntropixParams::default();
        profile.apply_to(&mut p).unwrap();
        assert_eq!(p.low_ent, 0.2);
        assert!((p.high_ent as f64 - 2.0 / std::f64::consts::LN_2).abs() < 1e-5);
        assert!((p.high_vent as f64 - 1.0 / (std::f64::consts::LN_2 * std::f64::consts::LN_2)).abs() < 1e-5);
        assert_eq!(p.low_agree, 0.001);
        assert_eq!(p.med_ent, 3.0);
        let mut f = FourModeParams::default();
        profile.apply_to_four_mode(&mut f).unwrap();
        assert_eq!(f.low_ent, 0.2);
        assert_eq!(profile.get("low_ent").unwrap(), Some(0.2f64));
    }

    #[test]
    fn unknown_keys_and_wrong_units_are_errors() {
        let e = Profile::from_json_str(r#"{"thresholds": {"low_entropy": {"value": 1, "unit": "bits"}}}"#).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown threshold `low_entropy`") && msg.contains("low_ent"), "{msg}");
        let e = Profile::from_json_str(r#"{"thresholds": {"low_vent": {"value": 1, "unit": "bits"}}}"#).unwrap_err();
        assert!(e.to_string().contains("expected `bits^2`"), "{e}");
        let e = Profile::from_json_str(r#"{"thresholds": {}, "modle": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `modle`"), "{e}");
        let e = Profile::from_json_str(r#"{"thresholds": {"low_ent": {"value": 1, "unit": "bits", "x": 1}}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `x`"), "{e}");
        let e = Profile::from_json_str(r#"{"thresholds": {"low_ent": {"value": 1e300, "unit": "bits"}}}"#).unwrap_err();
        assert!(matches!(e, ProfileError::NotFinite { .. }), "{e}");
    }

    #[test]
    fn invalid_result_leaves_params_unchanged() {
        let profile = Profile { thresholds: BTreeMap::new(), ..Profile::new("m") };
        let mut p = EntropixParams { temp: -1.0, ..Default::default() };
        let before = p;
        assert!(matches!(profile.apply_to(&mut p), Err(ProfileError::Invalid { .. })));
        assert_eq!(p, before);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("entropix-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        let params = EntropixParams { high_ent: 3.25, low_vent: 0.5, ..Default::default() };
        let profile = Profile::from_entropix_params("test-model", &params);
        profile.save(&path).unwrap();
        let loaded = Profile::load(&path).unwrap();
        assert_eq!(loaded, profile);
        let mut p = EntropixParams::default();
        loaded.apply_to(&mut p).unwrap();
        assert_eq!(p, params);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"unit\": \"bits^2\""), "{text}");
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(Profile::load(dir.join("missing.json")), Err(ProfileError::Io { .. })));
    }
}
