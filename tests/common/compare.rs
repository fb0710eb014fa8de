//! Comparing the survivors of two samplers, tolerant of tie order.

use entropix_sampler::core::TokenData;

/// Softmax (f64) of the surviving logits; -inf gives 0.
pub fn softmax64(tokens: &[TokenData]) -> Vec<f64> {
    let max = tokens.iter().map(|t| t.logit).fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return vec![0.0; tokens.len()];
    }
    let e: Vec<f64> = tokens.iter().map(|t| (t.logit as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    a == b || (a - b).abs() <= tol * 1f32.max(a.abs()).max(b.abs())
}

/// Asserts that `ours` and `theirs` keep the same candidates: same count,
/// same logits (relative tolerance `tol`) in descending order, the same ids
/// within every group of equal logits except a boundary group cut short,
/// and the same renormalised probabilities within `tol`.
pub fn assert_same_survivors(ours: &[TokenData], theirs: &[TokenData], tol: f32, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: survivor count differs");
    let mut a = ours.to_vec();
    let mut b = theirs.to_vec();
    let key = |x: &TokenData, y: &TokenData| y.logit.partial_cmp(&x.logit).unwrap().then(x.id.cmp(&y.id));
    a.sort_by(key);
    b.sort_by(key);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(close(x.logit, y.logit, tol), "{what}: logit #{i} differs: ours {x:?} theirs {y:?}");
    }
    // Ids: compare per group of equal logits; the last group may be a cut tie.
    let last_logit = a.last().map(|t| t.logit);
    let mut i = 0;
    while i < a.len() {
        let mut j = i;
        while j < a.len() && a[j].logit == a[i].logit {
            j += 1;
        }
        if Some(a[i].logit) != last_logit {
            let mut ia: Vec<i32> = a[i..j].iter().map(|t| t.id).collect();
            let mut ib: Vec<i32> = b[i..j].iter().map(|t| t.id).collect();
            ia.sort();
            ib.sort();
            assert_eq!(ia, ib, "{what}: ids with logit {} differ", a[i].logit);
        }
        i = j;
    }
    let (pa, pb) = (softmax64(&a), softmax64(&b));
    for (k, (x, y)) in pa.iter().zip(&pb).enumerate() {
        assert!((x - y).abs() <= tol as f64, "{what}: probability #{k} differs: {x} vs {y}");
    }
}
