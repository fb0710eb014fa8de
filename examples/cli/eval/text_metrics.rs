//! Repetition and diversity metrics on token-id sequences: seq-rep-n
//! (Welleck et al. 2019, "Neural Text Generation with Unlikelihood
//! Training") and distinct-n (Li et al. 2016, "A Diversity-Promoting
//! Objective Function for Neural Conversation Models"), per sequence and
//! over a corpus. N-grams are contiguous windows of token ids; all results
//! are fractions in [0, 1]. Each call is O(total tokens · n) with hashing.

use std::collections::HashSet;

/// seq-rep-n: the fraction of repeated n-grams in one sequence,
/// `1 - unique n-grams / total n-grams`. 0.0 means no n-gram repeats;
/// values near 1 mean degenerate looping. 0.0 when the sequence has no
/// n-grams (`tokens.len() < n` or `n == 0`).
pub fn seq_rep_n(tokens: &[i32], n: usize) -> f64 {
    match ngram_counts(tokens, n) {
        (0, _) => 0.0,
        (total, unique) => 1.0 - unique as f64 / total as f64,
    }
}

/// distinct-n of one sequence: `unique n-grams / total n-grams`. 0.0 when
/// the sequence has no n-grams (`tokens.len() < n` or `n == 0`).
pub fn distinct_n(tokens: &[i32], n: usize) -> f64 {
    match ngram_counts(tokens, n) {
        (0, _) => 0.0,
        (total, unique) => unique as f64 / total as f64,
    }
}

/// Corpus-level distinct-n: n-grams unique across all sequences divided by
/// the total number of n-grams in all sequences. N-grams never span two
/// sequences. 0.0 when there are no n-grams at all.
pub fn distinct_n_corpus(seqs: &[Vec<i32>], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let mut seen: HashSet<&[i32]> = HashSet::new();
    let mut total = 0usize;
    for s in seqs {
        for w in s.windows(n) {
            total += 1;
            seen.insert(w);
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

/// (total n-grams, unique n-grams) of one sequence.
fn ngram_counts(tokens: &[i32], n: usize) -> (usize, usize) {
    if n == 0 || tokens.len() < n {
        return (0, 0);
    }
    let total = tokens.len() - n + 1;
    let unique: HashSet<&[i32]> = tokens.windows(n).collect();
    (total, unique.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats() {
        // [1,2,1,2,1] bigrams: 12 21 12 21 → 4 total, 2 unique.
        let t = [1, 2, 1, 2, 1];
        assert_eq!(distinct_n(&t, 2), 0.5);
        assert_eq!(seq_rep_n(&t, 2), 0.5);
        // Unigrams: 5 total, 2 unique → 0.4 distinct, 0.6 repeated.
        assert!((distinct_n(&t, 1) - 0.4).abs() < 1e-12);
        assert!((seq_rep_n(&t, 1) - 0.6).abs() < 1e-12);
        // Trigrams: 121 212 121 → 3 total, 2 unique.
        assert!((distinct_n(&t, 3) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn no_ngrams() {
        assert_eq!(seq_rep_n(&[1, 2], 3), 0.0);
        assert_eq!(distinct_n(&[1, 2], 3), 0.0);
        assert_eq!(distinct_n(&[], 1), 0.0);
        assert_eq!(seq_rep_n(&[1, 2, 3], 0), 0.0);
        // Exactly one n-gram: unique.
        assert_eq!(distinct_n(&[4, 5], 2), 1.0);
        assert_eq!(seq_rep_n(&[4, 5], 2), 0.0);
    }

    #[test]
    fn corpus() {
        // Bigrams: [1,2,3] → 12 23; [2,3,1] → 23 31; [9] → none.
        // Total 4; unique {12, 23, 31} = 3 → 0.75. The boundary pair 3|2
        // is not counted.
        let seqs = vec![vec![1, 2, 3], vec![2, 3, 1], vec![9]];
        assert_eq!(distinct_n_corpus(&seqs, 2), 0.75);
        assert_eq!(distinct_n_corpus(&[], 2), 0.0);
        assert_eq!(distinct_n_corpus(&[vec![1]], 2), 0.0);
    }

    #[test]
    fn long_sequence() {
        // 100000 tokens cycling through 0..100: 100 distinct 4-grams out of
        // 99997 → seq-rep-4 = 1 - 100/99997.
        let t: Vec<i32> = (0..100_000).map(|i| i % 100).collect();
        assert!((seq_rep_n(&t, 4) - (1.0 - 100.0 / 99_997.0)).abs() < 1e-12);
        // All-distinct tokens: no repeats.
        let u: Vec<i32> = (0..100_000).collect();
        assert_eq!(seq_rep_n(&u, 4), 0.0);
        assert_eq!(distinct_n(&u, 1), 1.0);
    }
}
