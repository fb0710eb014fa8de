//! One candidate token, laid out exactly like llama.cpp's `llama_token_data`.

/// A token id in the model's vocabulary (llama.cpp's `llama_token`).
pub type TokenId = i32;

/// One candidate: token id, logit (log-odds, unnormalised, nats) and
/// probability.
///
/// `#[repr(C)]` with the field order of `llama_token_data`, so the C ABI can
/// hand llama.cpp's array to the samplers without copying. A layout test in
/// `tests/abi_layout.rs` checks this against the vendored llama.cpp.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct TokenData {
    /// Token id.
    pub id: TokenId,
    /// Logit (natural-log odds, unnormalised).
    pub logit: f32,
    /// Probability; only meaningful after a sampler that normalises
    /// (see [`crate::core::Candidates::softmax`]).
    pub p: f32,
}

impl TokenData {
    /// A candidate with probability 0.
    pub const fn new(id: TokenId, logit: f32) -> Self {
        Self { id, logit, p: 0.0 }
    }
}
