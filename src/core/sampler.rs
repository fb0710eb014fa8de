//! The contract every sampler follows (see DESIGN.md, "Layers").

use std::any::Any;
use std::sync::Arc;

use super::candidates::Candidates;
use crate::metrics::AttentionSource;
use super::error::SampleError;
use super::token::TokenId;

/// A token sampler: one stage of a sampler chain.
///
/// The contract, checked for every sampler by `tests/contract.rs`:
/// - [`Sampler::apply`] may reorder, shrink and rescale the candidates and
///   may select a token, but does not change persistent state: calling it
///   twice on the same input gives the same result. (Scratch buffers reused
///   between calls are not persistent state.)
/// - [`Sampler::accept`] is the only thing that advances state (histories,
///   mu, moving averages, the RNG step).
/// - [`Sampler::reset`] returns to the freshly constructed state.
/// - [`Sampler::box_clone`] copies all state.
/// - On bad input (empty array, no finite logit) `apply` returns an error
///   and leaves the candidates as they were, never panics.
///
/// A `dyn Sampler` can be turned back into its concrete type with
/// [`downcast_ref`](trait.Sampler.html#method.downcast_ref) and
/// [`downcast_mut`](trait.Sampler.html#method.downcast_mut) (through the
/// [`AsAny`] supertrait, implemented for every sized type): layers that
/// hold a sampler behind a pointer use that for typed access to
/// sampler-specific methods.
pub trait Sampler: AsAny + Send {
    /// Short name, as llama.cpp samplers report theirs (e.g. `"top-k"`).
    fn name(&self) -> &'static str;

    /// Transforms the candidates of one step.
    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError>;

    /// Records the token that was finally chosen for this step.
    fn accept(&mut self, _token: TokenId) {}

    /// Returns to the fresh state (histories cleared, RNG rewound).
    fn reset(&mut self) {}

    /// A deep copy, state included.
    fn box_clone(&self) -> Box<dyn Sampler>;

    /// True for samplers that select a token (greedy, dist, mirostat, ...),
    /// false for filters that only transform the candidates.
    fn selects(&self) -> bool {
        false
    }

    /// True for samplers that read the model's attention (and so need
    /// flash attention off and a capture attached).
    fn needs_attention(&self) -> bool {
        false
    }

    /// Gives an attention-aware sampler its attention source (`None`
    /// detaches it). Returns false for samplers that do not use attention.
    fn set_attention_source(&mut self, _source: Option<Arc<dyn AttentionSource>>) -> bool {
        false
    }

    /// Initialises state from the logits of every prompt position
    /// (`logits.len() == n_positions * n_vocab`, row-major by position).
    /// Counts as state, like `accept`. Returns false for samplers that
    /// have no use for it.
    fn observe_prompt_logits(&mut self, _logits: &[f32], _n_vocab: usize) -> bool {
        false
    }

    /// The sampler's observable state and last-step metrics, for traces and
    /// the C accessors. `Null` when it has none.
    fn state_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Detaches and returns what the host attached (attention source,
    /// lookahead), leaving the sampler without them. With
    /// [`Sampler::put_attachments`] this lets `copy_state` copy the state
    /// but keep the destination's own attachments, as llama.h asks.
    fn take_attachments(&mut self) -> Attachments {
        Attachments::default()
    }

    /// Re-attaches what [`Sampler::take_attachments`] returned.
    fn put_attachments(&mut self, _attachments: Attachments) {}
}

/// Access to a value as [`Any`], for [`Sampler`]'s downcasts. Implemented
/// for every `'static` type; nothing to implement by hand.
pub trait AsAny {
    /// `self` as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
    /// `self` as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl dyn Sampler {
    /// The sampler as its concrete type `T`, if it is one.
    pub fn downcast_ref<T: Sampler + 'static>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }

    /// The sampler as its concrete type `T`, if it is one.
    pub fn downcast_mut<T: Sampler + 'static>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut()
    }
}

/// What a host attaches to a sampler, as opposed to its state.
#[derive(Default)]
pub struct Attachments {
    /// The attention source of an attention-aware sampler.
    pub attention: Option<Arc<dyn AttentionSource>>,
    /// A sampler-specific attachment (the AlphaSampler's lookahead backend).
    pub other: Option<Box<dyn std::any::Any + Send>>,
}

impl Clone for Box<dyn Sampler> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

/// Fails with [`SampleError::EmptyCandidates`] on an empty array.
pub(crate) fn require_candidates(c: &Candidates<'_>) -> Result<(), SampleError> {
    if c.is_empty() {
        Err(SampleError::EmptyCandidates)
    } else {
        Ok(())
    }
}
