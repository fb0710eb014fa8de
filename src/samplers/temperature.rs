//! Temperature scaling: logit / T.
//!
//! Source: the classic softmax temperature; same behaviour as llama.cpp's
//! `llama_sampler_init_temp` (T <= 0 keeps only the highest logit).

use serde::{Deserialize, Serialize};

use crate::core::{Candidates, ParamError, SampleError, Sampler};

/// Parameters of [`Temperature`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemperatureParams {
    /// Temperature T (dimensionless). 1.0 disables (logits unchanged);
    /// T <= 0 keeps only the best token (all others set to -inf).
    /// Default 0.8.
    pub temp: f32,
}

impl Default for TemperatureParams {
    fn default() -> Self {
        Self { temp: 0.8 }
    }
}

impl TemperatureParams {
    /// Rejects a NaN or infinite temperature.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.temp.is_finite() {
            Ok(())
        } else {
            Err(ParamError::new("temp", self.temp, "must be a finite number (<= 0 means greedy)"))
        }
    }
}

/// Divides every logit by T.
#[derive(Debug, Clone)]
pub struct Temperature {
    params: TemperatureParams,
}

impl Temperature {
    /// A validated temperature sampler.
    pub fn new(params: TemperatureParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params })
    }
}

/// Scales all logits by 1/T; T <= 0 sets all but the first maximum to -inf.
pub fn apply_temperature(candidates: &mut Candidates<'_>, temp: f32) {
    if temp <= 0.0 {
        if let Some(best) = candidates.argmax() {
            for (i, t) in candidates.as_mut_slice().iter_mut().enumerate() {
                if i != best {
                    t.logit = f32::NEG_INFINITY;
                }
            }
        }
        return;
    }
    if temp == 1.0 {
        return;
    }
    // Divide rather than multiply by 1/T: bit-identical to llama.cpp, so
    // ties stay ties exactly as they do there.
    for t in candidates.as_mut_slice() {
        t.logit /= temp;
    }
}

impl Sampler for Temperature {
    fn name(&self) -> &'static str {
        "temp"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        apply_temperature(candidates, self.params.temp);
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TokenData;

    #[test]
    fn scales_logits_and_zero_is_greedy() {
        let mut a = vec![TokenData::new(0, 1.0), TokenData::new(1, 3.0), TokenData::new(2, -2.0)];
        let mut s = Temperature::new(TemperatureParams { temp: 0.5 }).unwrap();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        assert_eq!(a.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![2.0, 6.0, -4.0]);
        let mut g = Temperature::new(TemperatureParams { temp: 0.0 }).unwrap();
        g.apply(&mut Candidates::new(&mut a)).unwrap();
        assert_eq!(a[1].logit, 6.0);
        assert!(a[0].logit == f32::NEG_INFINITY && a[2].logit == f32::NEG_INFINITY);
        assert!(Temperature::new(TemperatureParams { temp: f32::NAN }).is_err());
    }
}
