//! Random candidate arrays for oracle and contract tests.

use entropix_sampler::core::{DrawStream, TokenData};

/// Vocabulary sizes every oracle run covers, from 1 to Gemma-3's 262144.
pub const VOCAB_SIZES: &[usize] = &[1, 2, 3, 7, 40, 100, 1000, 32_000, 49_152, 151_936, 262_144];

/// How the logits of a case are drawn.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Normal(0, 3): a typical LM distribution.
    Normal,
    /// Few distinct values: many ties.
    Ties,
    /// Normal with 30% of logits at -inf (masked tokens).
    WithNegInf,
    /// Values up to +-1e30 and subnormal-small: huge and tiny logits.
    Extreme,
    /// One dominant logit: a peaked distribution.
    Peaked,
}

/// One oracle case.
#[derive(Debug, Clone)]
pub struct Case {
    pub tokens: Vec<TokenData>,
    /// Whether `tokens` is sorted by descending logit (and flagged so).
    pub sorted: bool,
    pub shape: Shape,
}

/// `count` cases drawn from `seed`: sizes cycle through [`VOCAB_SIZES`]
/// (large sizes less often), shapes cycle, a quarter are pre-sorted.
pub fn random_cases(seed: u64, count: usize) -> Vec<Case> {
    let mut rng = DrawStream::from_state(seed);
    let shapes = [Shape::Normal, Shape::Ties, Shape::WithNegInf, Shape::Extreme, Shape::Peaked];
    (0..count)
        .map(|i| {
            // Large vocabularies are expensive: use them for 1 case in 8.
            let size = if i % 8 == 0 {
                VOCAB_SIZES[(i / 8) % VOCAB_SIZES.len()]
            } else {
                1 + (rng.next_u64() % 3000) as usize
            };
            let shape = shapes[i % shapes.len()];
            let mut tokens: Vec<TokenData> =
                (0..size).map(|id| TokenData::new(id as i32, draw_logit(&mut rng, shape, id))).collect();
            let sorted = i % 4 == 3;
            if sorted {
                tokens.sort_by(|a, b| b.logit.partial_cmp(&a.logit).unwrap());
            } else {
                shuffle(&mut tokens, &mut rng);
            }
            Case { tokens, sorted, shape }
        })
        .collect()
}

fn draw_logit(rng: &mut DrawStream, shape: Shape, id: usize) -> f32 {
    match shape {
        Shape::Normal => (rng.next_normal() * 3.0) as f32,
        Shape::Ties => (rng.next_u64() % 5) as f32 * 0.5,
        Shape::WithNegInf => {
            if rng.next_f64() < 0.3 && id != 0 {
                f32::NEG_INFINITY
            } else {
                (rng.next_normal() * 2.0) as f32
            }
        }
        Shape::Extreme => match rng.next_u64() % 4 {
            0 => (rng.next_normal() * 1e30) as f32,
            1 => (rng.next_normal() * 1e-30) as f32,
            2 => (rng.next_normal() * 80.0) as f32,
            _ => (rng.next_normal()) as f32,
        },
        Shape::Peaked => {
            if id == 0 {
                20.0
            } else {
                (rng.next_normal() * 1.5) as f32
            }
        }
    }
}

fn shuffle(tokens: &mut [TokenData], rng: &mut DrawStream) {
    for i in (1..tokens.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        tokens.swap(i, j);
    }
}

/// Logits drawn like a language model's: Normal(0, 3), ids 0..n in order.
pub fn lm_logits(n: usize, seed: u64) -> Vec<TokenData> {
    let mut rng = DrawStream::from_state(seed);
    (0..n).map(|id| TokenData::new(id as i32, (rng.next_normal() * 3.0) as f32)).collect()
}
