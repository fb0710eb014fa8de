//! A seeded, counter-based random number generator.
//!
//! The sampler contract says `apply` must not change persistent state and
//! calling it twice gives the same result, while `accept` advances state. So
//! the random draws of one step come from a stream keyed by (seed, step):
//! `apply` reads the stream of the current step, `accept` moves to the next
//! step. Same seed and same inputs give the same tokens on every run.
//!
//! The stream is SplitMix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014), seeded by mixing the seed
//! with the step counter.

/// The seed value that asks for a seed from the system clock and process
/// entropy (llama.cpp's `LLAMA_DEFAULT_SEED`).
pub const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// The generator a sampler owns: a seed and the number of accepted steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededRng {
    seed: u64,
    step: u64,
}

impl SeededRng {
    /// A generator for `seed`; [`RANDOM_SEED`] picks a fresh random seed.
    pub fn new(seed: u32) -> Self {
        let seed = if seed == RANDOM_SEED { entropy_seed() } else { seed as u64 };
        Self { seed, step: 0 }
    }

    /// The effective seed (after resolving [`RANDOM_SEED`]).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The draws of the current step. Reading them changes nothing.
    pub fn stream(&self) -> DrawStream {
        DrawStream { state: mix64(self.seed ^ mix64(self.step.wrapping_add(0x5EED))) }
    }

    /// The draws of a sub-stream `lane` of the current step, for samplers
    /// that need independent sequences (e.g. Dirichlet noise vs. selection).
    pub fn lane(&self, lane: u64) -> DrawStream {
        DrawStream { state: mix64(self.seed ^ mix64(self.step.wrapping_add(0x5EED)) ^ mix64(lane.wrapping_add(1) << 32)) }
    }

    /// Moves to the next step (called from `accept`).
    pub fn advance(&mut self) {
        self.step = self.step.wrapping_add(1);
    }

    /// Back to step 0 (called from `reset`).
    pub fn rewind(&mut self) {
        self.step = 0;
    }
}

/// A SplitMix64 stream of draws.
#[derive(Debug, Clone)]
pub struct DrawStream {
    state: u64,
}

impl DrawStream {
    /// A stream from a raw 64-bit state, for tests and tools.
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1), 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Exponential(1): -ln(1 - U), U uniform in [0, 1); always finite.
    pub fn next_exp(&mut self) -> f64 {
        -(1.0 - self.next_f64()).ln()
    }

    /// Standard normal by the Box-Muller transform.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The SplitMix64 finaliser: a bijective 64-bit mix.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn entropy_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(now);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_pure_and_advance_changes_it() {
        let mut rng = SeededRng::new(42);
        let a = rng.stream().next_u64();
        assert_eq!(a, rng.stream().next_u64());
        rng.advance();
        assert_ne!(a, rng.stream().next_u64());
        rng.rewind();
        assert_eq!(a, rng.stream().next_u64());
        assert_ne!(rng.stream().next_u64(), rng.lane(1).next_u64());
    }

    #[test]
    fn uniform_mean_is_about_half() {
        let mut s = SeededRng::new(7).stream();
        let mean: f64 = (0..100_000).map(|_| s.next_f64()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let mean_exp: f64 = (0..100_000).map(|_| s.next_exp()).sum::<f64>() / 100_000.0;
        assert!((mean_exp - 1.0).abs() < 0.02, "{mean_exp}");
    }
}
