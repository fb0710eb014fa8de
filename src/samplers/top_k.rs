//! Top-k truncation: keep the k highest logits, sorted descending.
//!
//! Source: Fan et al. 2018, "Hierarchical Neural Story Generation"; same
//! behaviour as llama.cpp's `llama_sampler_init_top_k`. O(n) expected time:
//! for k <= 128 a single scan that compares the logits with the k-th best
//! so far (an AVX2 or AVX-512 register at a time,
//! [`crate::core::logit_scan::scan_top_k`], where the CPU has them),
//! quickselect above; never a full sort.

use serde::{Deserialize, Serialize};

use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenData};

/// Parameters of [`TopK`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopKParams {
    /// Number of candidates kept. `k <= 0` disables. Default 40.
    pub k: i32,
}

impl Default for TopKParams {
    fn default() -> Self {
        Self { k: 40 }
    }
}

impl TopKParams {
    /// Every k is valid (k <= 0 disables).
    pub fn validate(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

/// Keeps the k best candidates.
#[derive(Debug, Clone)]
pub struct TopK {
    params: TopKParams,
    scratch: Vec<TokenData>,
}

impl TopK {
    /// A top-k sampler.
    pub fn new(params: TopKParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self { params, scratch: Vec::new() })
    }
}

/// Keeps the `k` highest logits (k <= 0: no change).
pub fn apply_top_k(candidates: &mut Candidates<'_>, k: i32, scratch: &mut Vec<TokenData>) {
    if k <= 0 || candidates.is_empty() {
        return;
    }
    let k = (k as usize).min(candidates.len());
    candidates.keep_top_k(k, scratch);
}

impl Sampler for TopK {
    fn name(&self) -> &'static str {
        "top-k"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        apply_top_k(candidates, self.params.k, &mut self.scratch);
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
