//! A safe wrapper over llama-cpp-sys-2 for Rust hosts: model, context,
//! batch, tokenizer, chat template, sampler chain and the generation loop.
//!
//! Exactly one llama.cpp lives in the process (the shared libraries this
//! crate links); the C ABI in [`crate::ffi`] does not depend on this module.

mod backend;
mod chain;
mod context;
mod error;
mod model;
mod rpc;
mod utf8;

pub use backend::{init_backend, set_log_level, LogLevel};
pub use chain::SamplerChain;
pub use context::{Context, ContextOptions, FlashAttention};
pub use error::LlamaError;
pub use model::{ChatMessage, Model, ModelOptions};
pub use rpc::{add_rpc_servers, run_rpc_worker};
pub use utf8::Utf8Stream;
