//! The C ABI: the only place with `extern "C"` exports.
//!
//! Conventions (after rustls-ffi): every export runs inside [`guard`], so no
//! panic crosses into C; null pointers and invalid parameters give NULL or
//! an error code, and the reason is readable with `entropix_last_error()`.
//! Each sampler is an ordinary `struct llama_sampler *` made with the host's
//! `llama_sampler_init`, so `llama_sampler_free` (directly or through a
//! chain) frees it.

mod alpha;
mod attention;
mod classic;
mod dirichlet;
mod entropix;
mod error;
mod filters;
mod json;
mod mirostat;
mod penalties;
mod plugin;

pub use alpha::*;
pub use attention::*;
pub use classic::*;
#[allow(unused_imports)]
pub use dirichlet::*;
#[allow(unused_imports)]
pub use entropix::*;
pub use error::{
    entropix_last_error, entropix_last_error_copy, entropix_version, ENTROPIX_ERR_INTERNAL, ENTROPIX_ERR_INVALID, ENTROPIX_ERR_NULL, ENTROPIX_NO_ATTENTION,
    ENTROPIX_OK,
};
pub use filters::*;
pub use json::{entropix_sampler_init_json, entropix_sampler_json_names, merge as merge_params, sampler_from_json, JSON_SAMPLER_NAMES};
pub use mirostat::*;
pub use penalties::*;
pub use plugin::{entropix_sampler_is_ours, entropix_sampler_state_json, into_llama_sampler, sampler_ref, state_json_string};
