//! # entropix-sampler
//!
//! Entropy- and attention-aware LLM token samplers that plug into
//! llama.cpp's sampler chain through a C ABI.
//!
//! Layers (dependencies point down only):
//! - [`ffi`]: the C ABI, the only place with `extern "C"` exports;
//! - [`samplers`]: one module per sampler family, pure Rust;
//! - [`metrics`]: entropy, varentropy and attention statistics;
//! - [`core`]: the candidates view, math kernels, the RNG, the
//!   [`core::Sampler`] trait.
//!
//! The raw llama.cpp bindings are re-exported as [`sys`].

// `!(x > y)` is how this crate says "not greater, or NaN": the negation is
// the point (a NaN logit must fail every admission test), which
// `partial_cmp` would only spell out at length.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod attention;
pub mod core;
pub mod default_model;
pub mod ffi;
pub mod llama;
pub mod metrics;
pub mod samplers;

pub use llama_cpp_sys_2 as sys;

/// This crate's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
