//! Attention capture through llama.cpp's graph eval callback: the only
//! place that reads ggml tensors.
//!
//! llama.cpp computes the attention probabilities of layer L as the graph
//! node `kq_soft_max-L`, shape `[n_kv, n_tokens, n_head, n_stream]`, F32,
//! masked cells exactly 0, heads broadcast for GQA; the raw scores are
//! `kq-L` (Q.K, unscaled, unmasked). Flash attention fuses the softmax away,
//! so a context that captures must have it off. See [`AttentionCapture`].

mod capture;

pub use capture::{eval_callback, AttentionCapture, CaptureConfig, CapturedRow, SetAside};
