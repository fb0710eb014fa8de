//! Errors of the llama.cpp wrapper.

use std::path::PathBuf;

/// What went wrong talking to llama.cpp, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// The model file does not exist or cannot be read.
    #[error("cannot read model file {path}: {reason}")]
    ModelUnreadable { path: PathBuf, reason: String },
    /// The file does not start with the GGUF magic.
    #[error("{path} is not a GGUF model file (it does not start with \"GGUF\")")]
    NotGguf { path: PathBuf },
    /// llama.cpp refused the file (truncated, corrupt, unsupported).
    #[error("llama.cpp could not load {path}: the file is truncated, corrupt or of an unsupported architecture")]
    ModelLoad { path: PathBuf },
    /// Context creation failed.
    #[error("llama.cpp could not create a context (n_ctx {n_ctx}): {hint}")]
    Context { n_ctx: u32, hint: &'static str },
    /// The prompt does not fit the context.
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}: use a larger -c/--ctx-size or a shorter prompt")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    /// `llama_decode` returned an error code.
    #[error("llama_decode failed with code {0}")]
    Decode(i32),
    /// Tokenization failed.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The chat template could not be applied.
    #[error("cannot apply the chat template: {0}")]
    ChatTemplate(String),
    /// A sampler constructor returned NULL.
    #[error("cannot create sampler: {0}")]
    Sampler(String),
    /// llama.cpp's RPC backend: missing, or a worker out of reach.
    #[error("{0}")]
    Rpc(String),
}
