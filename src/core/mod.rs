//! The foundation every sampler stands on: the candidates view, numeric
//! kernels, the seeded RNG, the [`Sampler`] trait and the error types.
//!
//! Nothing here knows about llama.cpp; everything is tested on plain slices.

pub mod candidates;
pub mod error;
pub mod fast_exp;
pub mod logit_scan;
pub mod math;
pub(crate) mod partition;
pub mod radix;
pub(crate) mod records;
pub mod rng;
pub mod sampler;
pub(crate) mod softmax_weights;
pub mod token;

pub use candidates::Candidates;
pub use error::{ParamError, SampleError};
pub use rng::{DrawStream, SeededRng, RANDOM_SEED};
pub use sampler::{AsAny, Attachments, Sampler};
pub use token::{TokenData, TokenId};
