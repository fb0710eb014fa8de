//! Oracle tests of the `penalties` family against llama.cpp's own samplers:
//! penalties, logit bias and DRY. Each case: reset both samplers, accept the
//! same random history (small alphabets and repeated n-grams, so the
//! penalties and DRY really trigger), then apply both to the same candidate
//! array, once as `random_cases` gives it (shuffled or sorted) and once in
//! vocabulary order (`data[i].id == i`, the layout where ours takes its fast
//! path), and compare the survivors.

mod common;

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use common::cases::{random_cases, Case};
use common::compare::assert_same_survivors;
use common::llama::{model_path, Applied, LlamaSampler};
use entropix_sampler::core::{DrawStream, TokenData};
use entropix_sampler::ffi::{
    entropix_length_penalty_default_params, entropix_sampler_init_dry, entropix_sampler_init_length_penalty,
    entropix_sampler_init_logit_bias, entropix_sampler_init_penalties, entropix_sampler_init_repetition_decay,
    entropix_sampler_init_token_ban,
};
use entropix_sampler::samplers::penalties::{DryParams, PenaltiesParams, RepetitionDecayParams};
use entropix_sampler::sys;

const TOL: f32 = 1e-5;

/// The test model's vocabulary, loaded once (the model is never freed: the
/// vocabulary must outlive every test).
struct Vocab {
    ptr: *const sys::llama_vocab,
    n_tokens: i32,
    n_ctx_train: i32,
}
unsafe impl Send for Vocab {}
unsafe impl Sync for Vocab {}

fn vocab() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| unsafe {
        unsafe extern "C" fn quiet(_: sys::ggml_log_level, _: *const c_char, _: *mut std::ffi::c_void) {}
        sys::llama_log_set(Some(quiet), std::ptr::null_mut());
        sys::llama_backend_init();
        let path = CString::new(model_path().to_str().expect("utf-8 model path")).unwrap();
        let mut mp = sys::llama_model_default_params();
        mp.n_gpu_layers = 0;
        let model = sys::llama_model_load_from_file(path.as_ptr(), mp);
        assert!(!model.is_null(), "could not load the test model");
        let ptr = sys::llama_model_get_vocab(model);
        Vocab { ptr, n_tokens: sys::llama_vocab_n_tokens(ptr), n_ctx_train: sys::llama_model_n_ctx_train(model) }
    })
}

fn tokenize(text: &str) -> Vec<i32> {
    let v = vocab();
    let mut buf = vec![0i32; 64];
    let n = unsafe {
        sys::llama_tokenize(v.ptr, text.as_ptr().cast(), text.len() as i32, buf.as_mut_ptr(), buf.len() as i32, false, false)
    };
    assert!(n >= 0);
    buf.truncate(n as usize);
    buf
}

/// A history of `len` tokens: ids from `alphabet`, earlier n-grams repeated,
/// and now and then one of `inserts` (e.g. a breaker's tokens).
fn history(rng: &mut DrawStream, alphabet: &[i32], len: usize, inserts: &[Vec<i32>]) -> Vec<i32> {
    let mut h: Vec<i32> = Vec::with_capacity(len + 16);
    while h.len() < len {
        let r = rng.next_f64();
        if h.len() >= 4 && r < 0.4 {
            let start = (rng.next_u64() % h.len() as u64) as usize;
            let n = 2 + (rng.next_u64() % 7) as usize;
            let end = (start + n).min(h.len());
            let chunk = h[start..end].to_vec();
            h.extend(chunk);
        } else if r < 0.47 && !inserts.is_empty() {
            h.extend(&inserts[(rng.next_u64() % inserts.len() as u64) as usize]);
        } else {
            h.push(alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]);
        }
    }
    h.truncate(len);
    h
}

/// `count` distinct ids below `n` (fewer when n is small).
fn alphabet(rng: &mut DrawStream, n: usize, count: usize) -> Vec<i32> {
    let mut a: Vec<i32> = (0..count).map(|_| (rng.next_u64() % n as u64) as i32).collect();
    a.sort();
    a.dedup();
    a
}

/// The case's tokens in vocabulary order (unsorted flag).
fn identity_layout(case: &Case) -> Vec<TokenData> {
    let mut t = case.tokens.clone();
    t.sort_by_key(|x| x.id);
    t
}

/// True when some logit differs from the input.
fn changed(before: &[TokenData], after: &Applied) -> bool {
    let mut a = before.to_vec();
    let mut b = after.tokens.clone();
    a.sort_by_key(|t| t.id);
    b.sort_by_key(|t| t.id);
    a.iter().zip(&b).any(|(x, y)| x.logit.to_bits() != y.logit.to_bits())
}

/// Resets both, accepts `hist` into both, applies both to the case in both
/// layouts and compares. Returns whether llama.cpp changed any logit.
fn compare_case(ours: &LlamaSampler, theirs: &LlamaSampler, hist: &[i32], case: &Case, what: &str) -> bool {
    ours.reset();
    theirs.reset();
    for &t in hist {
        ours.accept(t);
        theirs.accept(t);
    }
    let mut any = false;
    for (layout, tokens, sorted) in [("given", case.tokens.clone(), case.sorted), ("identity", identity_layout(case), false)] {
        let a = ours.apply(&tokens, sorted);
        let b = theirs.apply(&tokens, sorted);
        assert_same_survivors(&a.tokens, &b.tokens, TOL, &format!("{what} [{layout}, n = {}]", tokens.len()));
        // apply must not change our state: a second call gives the same.
        let again = ours.apply(&tokens, sorted);
        assert_eq!(
            a.tokens.iter().map(|t| t.logit.to_bits()).collect::<Vec<_>>(),
            again.tokens.iter().map(|t| t.logit.to_bits()).collect::<Vec<_>>(),
            "{what}: apply is not repeatable"
        );
        any |= changed(&tokens, &b);
    }
    any
}

#[test]
fn penalties_match_llama_cpp() {
    let settings: [(i32, f32, f32, f32); 8] = [
        (64, 1.1, 0.0, 0.0),
        (1, 1.5, 0.0, 0.0),
        (3, 1.3, 0.2, 0.1),
        (16, 0.8, 0.5, -0.3),
        (64, 1.0, 0.25, 0.0),
        (256, 1.0, 0.0, 1.5),
        (8, 2.0, -0.1, 0.4),
        (0, 1.2, 0.3, 0.3), // disabled by the window
    ];
    let cases = random_cases(0x9E11, 1200);
    let mut rng = DrawStream::from_state(17);
    let mut triggered = 0;
    for (si, &(last_n, repeat, freq, present)) in settings.iter().enumerate() {
        let p = PenaltiesParams { penalty_last_n: last_n, penalty_repeat: repeat, penalty_freq: freq, penalty_present: present };
        let ours = LlamaSampler::new(unsafe { entropix_sampler_init_penalties(&p) });
        let theirs = LlamaSampler::new(unsafe { sys::llama_sampler_init_penalties(262_144, last_n, repeat, freq, present) });
        for (ci, case) in cases.iter().enumerate().skip(si).step_by(settings.len()) {
            let n = case.tokens.len();
            let mut alpha = alphabet(&mut rng, n, 8);
            if ci % 5 == 0 {
                alpha.push(n as i32 + 3); // an id outside the candidates
            }
            let len = (rng.next_u64() % 200) as usize;
            let hist = history(&mut rng, &alpha, len, &[]);
            let what = format!("penalties {p:?} case {ci}");
            triggered += compare_case(&ours, &theirs, &hist, case, &what) as usize;
        }
        // The state survives a clone.
        let (oc, tc) = (ours.clone_sampler(), theirs.clone_sampler());
        let case = &cases[si];
        let a = oc.apply(&identity_layout(case), false);
        let b = tc.apply(&identity_layout(case), false);
        assert_same_survivors(&a.tokens, &b.tokens, TOL, "penalties clone");
    }
    eprintln!("penalties changed logits in {triggered} of {} cases", cases.len());
    assert!(triggered > cases.len() / 2, "penalties changed something in only {triggered} of {} cases", cases.len());
}

#[test]
fn logit_bias_matches_llama_cpp() {
    let cases = random_cases(0xB1A5, 1000);
    let mut rng = DrawStream::from_state(23);
    for (ci, case) in cases.iter().enumerate() {
        let n = case.tokens.len();
        let count = (rng.next_u64() % 24) as usize;
        let mut ids: Vec<i32> = (0..count)
            .map(|k| match k % 6 {
                // ids outside the candidates (and one outside any vocabulary)
                4 => n as i32 + (rng.next_u64() % 1000) as i32,
                5 if k == 5 => -7,
                _ => (rng.next_u64() % n as u64) as i32,
            })
            .collect();
        ids.sort();
        ids.dedup();
        let biases: Vec<sys::llama_logit_bias> = ids
            .iter()
            .map(|&token| {
                let bias = if rng.next_f64() < 0.1 { f32::NEG_INFINITY } else { (rng.next_normal() * 3.0) as f32 };
                sys::llama_logit_bias { token, bias }
            })
            .collect();
        let nb = biases.len() as i32;
        let ours = LlamaSampler::new(unsafe { entropix_sampler_init_logit_bias(n as i32, nb, biases.as_ptr()) });
        let theirs = LlamaSampler::new(unsafe { sys::llama_sampler_init_logit_bias(n as i32, nb, biases.as_ptr()) });
        compare_case(&ours, &theirs, &[], case, &format!("logit-bias case {ci} ({nb} biases)"));
    }
}

#[test]
fn logit_bias_duplicates_add_up_like_llama_cpp_in_vocabulary_order() {
    let biases = [
        sys::llama_logit_bias { token: 3, bias: 1.5 },
        sys::llama_logit_bias { token: 0, bias: -2.0 },
        sys::llama_logit_bias { token: 3, bias: 0.25 },
    ];
    let ours = LlamaSampler::new(unsafe { entropix_sampler_init_logit_bias(10, 3, biases.as_ptr()) });
    let theirs = LlamaSampler::new(unsafe { sys::llama_sampler_init_logit_bias(10, 3, biases.as_ptr()) });
    let tokens: Vec<TokenData> = (0..10).map(|i| TokenData::new(i, i as f32 * 0.5)).collect();
    let (a, b) = (ours.apply(&tokens, false), theirs.apply(&tokens, false));
    assert_same_survivors(&a.tokens, &b.tokens, 0.0, "logit-bias duplicates");
    assert_eq!(a.tokens[3].logit, 1.5 + 1.5 + 0.25);
    // NULL with a positive count is an error, not a crash.
    assert!(unsafe { entropix_sampler_init_logit_bias(10, 2, std::ptr::null()) }.is_null());
    assert!(common::llama::last_error().contains("logit_bias"));
}

#[test]
fn dry_matches_llama_cpp() {
    let v = vocab();
    let breaker_strings = ["\n", ":", "\"", "*", "<|im_start|>", " Question"];
    let c_strings: Vec<CString> = breaker_strings.iter().map(|s| CString::new(*s).unwrap()).collect();
    let mut ptrs: Vec<*const c_char> = c_strings.iter().map(|s| s.as_ptr()).collect();
    // Token sequences that complete breakers (single- and multi-token).
    let inserts: Vec<Vec<i32>> = breaker_strings.iter().map(|s| tokenize(s)).filter(|t| !t.is_empty()).collect();
    assert!(inserts.iter().any(|t| t.len() > 1), "want a multi-token breaker: {inserts:?}");

    let settings: [(f32, f32, i32, i32); 6] = [
        (0.8, 1.75, 2, 64),
        (1.0, 2.0, 1, 16),
        (0.5, 1.1, 3, 256),
        (2.0, 1.75, 0, 32),
        (0.8, 3.0, 2, 5),
        (1.5, 1.0, 2, 1024),
    ];
    let cases = random_cases(0xD12E, 1200);
    let mut rng = DrawStream::from_state(31);
    let mut triggered = 0;
    for (si, &(multiplier, base, allowed_length, last_n)) in settings.iter().enumerate() {
        let p = DryParams { multiplier, base, allowed_length, penalty_last_n: last_n };
        let ours =
            LlamaSampler::new(unsafe { entropix_sampler_init_dry(v.ptr, v.n_ctx_train, &p, ptrs.as_ptr(), ptrs.len()) });
        let theirs = LlamaSampler::new(unsafe {
            sys::llama_sampler_init_dry(v.ptr, multiplier, base, allowed_length, last_n, ptrs.as_mut_ptr(), ptrs.len())
        });
        for (ci, case) in cases.iter().enumerate().skip(si).step_by(settings.len()) {
            let n = case.tokens.len().min(v.n_tokens as usize);
            let size = 3 + (rng.next_u64() % 6) as usize;
            let alpha = alphabet(&mut rng, n, size);
            let len = (rng.next_u64() % 300) as usize;
            let hist = history(&mut rng, &alpha, len, &inserts);
            let what = format!("dry {p:?} case {ci}");
            triggered += compare_case(&ours, &theirs, &hist, case, &what) as usize;
        }
        let (oc, tc) = (ours.clone_sampler(), theirs.clone_sampler());
        let case = &cases[si + 8];
        let a = oc.apply(&identity_layout(case), false);
        let b = tc.apply(&identity_layout(case), false);
        assert_same_survivors(&a.tokens, &b.tokens, TOL, "dry clone");
    }
    eprintln!("DRY changed logits in {triggered} of {} cases", cases.len());
    assert!(triggered * 10 > cases.len() * 4, "DRY penalised something in only {triggered} of {} cases", cases.len());
    drop(ptrs);
}

#[test]
fn dry_constructor_checks_pointers() {
    let p = DryParams::default();
    let one = CString::new("\n").unwrap();
    let ptrs = [one.as_ptr()];
    assert!(unsafe { entropix_sampler_init_dry(std::ptr::null(), 0, &p, std::ptr::null(), 2) }.is_null());
    assert!(common::llama::last_error().contains("breakers"));
    assert!(unsafe { entropix_sampler_init_dry(std::ptr::null(), 0, &p, ptrs.as_ptr(), 1) }.is_null());
    assert!(common::llama::last_error().contains("vocab"));
    // No breakers: no vocabulary needed.
    let s = LlamaSampler::new(unsafe { entropix_sampler_init_dry(std::ptr::null(), 0, &p, std::ptr::null(), 0) });
    assert_eq!(s.name(), "dry");
    let bad = DryParams { base: f32::NAN, ..p };
    assert!(unsafe { entropix_sampler_init_dry(std::ptr::null(), 0, &bad, std::ptr::null(), 0) }.is_null());
}

#[test]
fn seed_004_constructors_work_through_llama_cpp() {
    // Length penalty: stop token 2, factor 1 -> its logit is divided by the length.
    let mut lp = entropix_length_penalty_default_params();
    assert_eq!(lp.factor, 0.0);
    lp.factor = 1.0;
    let stops = [2i32];
    let s = LlamaSampler::new(unsafe { entropix_sampler_init_length_penalty(&lp, stops.as_ptr(), 1) });
    (0..4).for_each(|t| s.accept(t));
    let tokens: Vec<TokenData> = (0..4).map(|i| TokenData::new(i, 8.0)).collect();
    let out = s.apply(&tokens, false);
    assert_eq!(out.tokens.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![8.0, 8.0, 2.0, 8.0]);
    assert!(unsafe { entropix_sampler_init_length_penalty(&lp, std::ptr::null(), 1) }.is_null());
    assert!(common::llama::last_error().contains("stop_tokens"));
    drop(LlamaSampler::new(unsafe { entropix_sampler_init_length_penalty(std::ptr::null(), std::ptr::null(), 0) }));

    // Token ban.
    let ids = [1i32, 3];
    let s = LlamaSampler::new(unsafe { entropix_sampler_init_token_ban(ids.as_ptr(), ids.len()) });
    let out = s.apply(&tokens, true);
    assert_eq!(out.tokens.iter().filter(|t| t.logit == f32::NEG_INFINITY).count(), 2);
    assert!(!out.sorted);
    assert!(unsafe { entropix_sampler_init_token_ban(std::ptr::null(), 3) }.is_null());
    drop(LlamaSampler::new(unsafe { entropix_sampler_init_token_ban(std::ptr::null(), 0) }));

    // Repetition decay: state survives a clone; reset clears it.
    let p = RepetitionDecayParams { factor: 2.0, decay: 1.0, one_time: true, limit: 0 };
    let s = LlamaSampler::new(unsafe { entropix_sampler_init_repetition_decay(&p) });
    [0, 1].iter().for_each(|&t| s.accept(t));
    let c = s.clone_sampler();
    let want = vec![8.0 / 4.0, 8.0 / 2.0, 8.0, 8.0];
    assert_eq!(c.apply(&tokens, false).tokens.iter().map(|t| t.logit).collect::<Vec<_>>(), want);
    s.reset();
    assert_eq!(s.apply(&tokens, false).tokens.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![8.0; 4]);
    let bad = RepetitionDecayParams { factor: f32::NAN, ..p };
    assert!(unsafe { entropix_sampler_init_repetition_decay(&bad) }.is_null());
    assert!(common::llama::last_error().contains("factor"));
}
