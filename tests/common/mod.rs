//! Shared test support: random candidate arrays, running a sampler through
//! llama.cpp's own `llama_sampler_apply`, and tie-tolerant comparison.
#![allow(dead_code)]

pub mod cases;
pub mod compare;
pub mod llama;
pub mod python;
