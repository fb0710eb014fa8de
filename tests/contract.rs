//! The sampler contract (DESIGN.md), checked for every registered sampler:
//! apply is pure, clone copies state, reset equals fresh, probabilities are
//! finite and non-negative, something survives, and bad input (NaN, inf,
//! all -inf, empty) gives a defined result or an error, never a panic,
//! also through the C boundary.

mod common;

use common::cases::{lm_logits, random_cases};
use common::llama::LlamaSampler;
use entropix_sampler::core::{Candidates, Sampler, TokenData};
use entropix_sampler::ffi::into_llama_sampler;
use entropix_sampler::samplers::registry;

#[derive(Debug, PartialEq)]
struct Outcome {
    tokens: Vec<(i32, u32, u32)>,
    selected: Option<usize>,
    ok: bool,
}

fn run(s: &mut dyn Sampler, input: &[TokenData], sorted: bool) -> Outcome {
    let mut data = input.to_vec();
    let mut c = Candidates::with_state(&mut data, sorted, None);
    let ok = s.apply(&mut c).is_ok();
    let selected = c.selected();
    let tokens = c.as_slice().iter().map(|t| (t.id, t.logit.to_bits(), t.p.to_bits())).collect();
    Outcome { tokens, selected, ok }
}

/// A history with repeats, so penalties and DRY have something to do.
fn history() -> Vec<i32> {
    [5, 9, 2, 5, 9, 2, 5, 9, 7, 1, 5, 9].to_vec()
}

fn fresh(name: &str) -> Box<dyn Sampler> {
    registry().into_iter().find(|(n, _)| *n == name).unwrap().1
}

#[test]
fn apply_twice_gives_the_same_result() {
    let cases = random_cases(11, 60);
    for (name, mut s) in registry() {
        for t in history() {
            s.accept(t);
        }
        for (i, case) in cases.iter().enumerate() {
            let a = run(s.as_mut(), &case.tokens, case.sorted);
            let b = run(s.as_mut(), &case.tokens, case.sorted);
            assert_eq!(a, b, "{name}: case {i} differs between two applies");
        }
    }
}

#[test]
fn clone_fed_the_same_accepts_behaves_the_same() {
    let cases = random_cases(12, 40);
    for (name, mut s) in registry() {
        for t in history() {
            s.accept(t);
        }
        let mut c = s.box_clone();
        for (i, case) in cases.iter().enumerate() {
            let a = run(s.as_mut(), &case.tokens, case.sorted);
            let b = run(c.as_mut(), &case.tokens, case.sorted);
            assert_eq!(a, b, "{name}: clone differs at case {i}");
            let token = a.selected.map_or(case.tokens[0].id, |k| a.tokens[k].0);
            s.accept(token);
            c.accept(token);
        }
    }
}

#[test]
fn reset_equals_fresh() {
    let cases = random_cases(13, 30);
    for (name, mut s) in registry() {
        for t in history() {
            s.accept(t);
        }
        s.reset();
        let mut f = fresh(name);
        for (i, case) in cases.iter().enumerate() {
            assert_eq!(run(s.as_mut(), &case.tokens, case.sorted), run(f.as_mut(), &case.tokens, case.sorted), "{name}: case {i}");
            s.accept(case.tokens[0].id);
            f.accept(case.tokens[0].id);
        }
    }
}

#[test]
fn probabilities_are_finite_and_something_survives() {
    let cases = random_cases(14, 80);
    for (name, mut s) in registry() {
        for t in history() {
            s.accept(t);
        }
        for (i, case) in cases.iter().enumerate() {
            let mut data = case.tokens.clone();
            let mut c = Candidates::with_state(&mut data, case.sorted, None);
            s.apply(&mut c).unwrap_or_else(|e| panic!("{name}: case {i}: {e}"));
            assert!(!c.is_empty(), "{name}: case {i}: nothing survived");
            for t in c.as_slice() {
                assert!(t.p.is_finite() && t.p >= 0.0, "{name}: case {i}: bad p {t:?}");
            }
            if s.selects() {
                let k = c.selected().unwrap_or_else(|| panic!("{name}: case {i}: nothing selected"));
                assert!(c.as_slice()[k].logit > f32::NEG_INFINITY, "{name}: selected a -inf token");
            }
        }
    }
}

#[test]
fn bad_input_never_panics() {
    let nan_mix = vec![TokenData::new(0, f32::NAN), TokenData::new(1, 1.0), TokenData::new(2, f32::INFINITY), TokenData::new(3, -1.0)];
    let all_neg_inf: Vec<TokenData> = (0..5).map(|i| TokenData::new(i, f32::NEG_INFINITY)).collect();
    let all_nan: Vec<TokenData> = (0..5).map(|i| TokenData::new(i, f32::NAN)).collect();
    let pos_inf: Vec<TokenData> = (0..5).map(|i| TokenData::new(i, if i == 3 { f32::INFINITY } else { 0.0 })).collect();
    for (name, mut s) in registry() {
        for input in [&nan_mix, &all_neg_inf, &all_nan, &pos_inf, &Vec::new()] {
            let mut data = input.clone();
            let mut c = Candidates::new(&mut data);
            let result = s.apply(&mut c);
            // Inputs with a finite or +inf logit have a valid choice: a
            // selecting sampler must make one (never a NaN or -inf token).
            let has_choice = input.iter().any(|t| t.logit > f32::NEG_INFINITY);
            if s.selects() {
                match result {
                    Ok(()) => {
                        let k = c.selected().expect("a successful terminal sampler selects");
                        assert!(c.as_slice()[k].logit > f32::NEG_INFINITY, "{name}: selected {:?} from {input:?}", c.as_slice()[k]);
                    }
                    Err(e) => {
                        assert!(!has_choice, "{name}: failed ({e}) on {input:?}, which has a valid choice");
                        assert!(c.selected().is_none());
                    }
                }
            } else if has_choice {
                assert!(result.is_ok(), "{name}: failed on {input:?}: {result:?}");
            } else {
                assert!(result.is_err() || input.is_empty() || !c.is_empty(), "{name}: emptied the candidates without an error on {input:?}");
            }
        }
        // The +inf token is the only sensible choice for a selecting sampler.
        if s.selects() && name != "mirostat" {
            let out = run(s.as_mut(), &pos_inf, false);
            let k = out.selected.unwrap_or_else(|| panic!("{name}: nothing selected with a +inf token"));
            assert_eq!(out.tokens[k].0, 3, "{name}: +inf token not chosen");
        }
    }
}

#[test]
fn bad_input_through_the_c_boundary_is_contained() {
    for (name, s) in registry() {
        let wrapped = LlamaSampler::new(into_llama_sampler(s));
        let nan: Vec<TokenData> = (0..4).map(|i| TokenData::new(i, f32::NAN)).collect();
        let applied = wrapped.apply(&nan, false);
        if wrapped.name() != "chain" && entropix_sampler::samplers::registry().iter().any(|(n, s)| *n == name && s.selects()) {
            // llama.cpp aborts when a chain selects nothing: we always select.
            assert!(applied.selected.is_some(), "{name}: nothing selected on all-NaN input");
        }
        let empty = wrapped.apply(&[], false);
        assert!(empty.tokens.is_empty());
        wrapped.accept(0);
        wrapped.reset();
        let copy = wrapped.clone_sampler();
        let lm = lm_logits(1000, 3);
        let (a, b) = (wrapped.apply(&lm, false), copy.apply(&lm, false));
        assert_eq!(a.tokens, b.tokens, "{name}: C clone differs");
        assert_eq!(a.selected, b.selected, "{name}: C clone selects another token");
    }
}

#[test]
fn foreign_and_null_samplers_are_rejected_by_accessors() {
    use entropix_sampler::ffi::{entropix_sampler_is_ours, entropix_sampler_state_json};
    unsafe {
        assert!(!entropix_sampler_is_ours(std::ptr::null()));
        let greedy = LlamaSampler::new(entropix_sampler::sys::llama_sampler_init_greedy());
        assert!(!entropix_sampler_is_ours(greedy.0));
        let mut buf = [b'x' as std::ffi::c_char; 8];
        assert_eq!(entropix_sampler_state_json(greedy.0, buf.as_mut_ptr(), buf.len()), 0);
        assert_eq!(buf[0], b'x' as std::ffi::c_char, "nothing is written on failure");
        assert!(common::llama::last_error().contains("not an entropix sampler"));
        let ours = LlamaSampler::new(entropix_sampler::ffi::entropix_sampler_init_greedy());
        assert!(entropix_sampler_is_ours(ours.0));
        assert!(common::llama::last_error().is_empty(), "a successful call clears the last error");
        // A size query, a cut copy (NUL-terminated), then the whole JSON.
        let n = entropix_sampler_state_json(ours.0, std::ptr::null_mut(), 0);
        assert!(n >= 2);
        assert_eq!(entropix_sampler_state_json(ours.0, buf.as_mut_ptr(), 1), n);
        assert_eq!(buf[0], 0);
        let mut whole = vec![0 as std::ffi::c_char; n + 1];
        assert_eq!(entropix_sampler_state_json(ours.0, whole.as_mut_ptr(), whole.len()), n);
        let text = std::ffi::CStr::from_ptr(whole.as_ptr()).to_str().unwrap();
        assert_eq!(text.len(), n);
        serde_json::from_str::<serde_json::Value>(text).unwrap();
    }
}

/// Issue 13, defect 6: the last error is per thread, cleared by a successful
/// export, kept by the sampler callbacks llama.cpp calls, and copyable into
/// the caller's buffer.
#[test]
fn last_error_contract() {
    use entropix_sampler::ffi::{entropix_last_error_copy, entropix_sampler_init_min_p, entropix_sampler_init_top_k, entropix_version};
    use entropix_sampler::samplers::filters::MinPParams;
    use entropix_sampler::samplers::TopKParams;
    use std::ffi::c_char;
    let copy = || {
        let n = unsafe { entropix_last_error_copy(std::ptr::null_mut(), 0) };
        let mut buf = vec![1 as c_char; n + 1];
        assert_eq!(unsafe { entropix_last_error_copy(buf.as_mut_ptr(), buf.len()) }, n);
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap().to_owned()
    };
    assert!(unsafe { entropix_sampler_init_min_p(&MinPParams { p: 2.0, min_keep: 1 }) }.is_null());
    let message = copy();
    assert!(message.contains("min_p") || message.contains("p "), "{message}");
    // The pointer form and the copy agree; a cut copy is NUL-terminated.
    assert_eq!(common::llama::last_error(), message);
    let mut small = [1 as c_char; 5];
    assert_eq!(unsafe { entropix_last_error_copy(small.as_mut_ptr(), small.len()) }, message.len());
    assert_eq!(small[4], 0);
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(small.as_ptr()) }.to_bytes(), &message.as_bytes()[..4]);
    // Another thread has its own (empty) last error and does not touch ours.
    std::thread::spawn(|| assert_eq!(common::llama::last_error(), "")).join().unwrap();
    assert_eq!(common::llama::last_error(), message);
    // entropix_version is not guarded (a static string): the error stays.
    let _ = entropix_version();
    assert_eq!(common::llama::last_error(), message);
    // A successful export clears it.
    let top_k = LlamaSampler::new(unsafe { entropix_sampler_init_top_k(&TopKParams { k: 3 }) });
    assert_eq!(common::llama::last_error(), "");
    // A failed apply (empty array) stays readable after a later successful
    // callback (llama.cpp runs the rest of the chain before the host looks).
    let greedy = LlamaSampler::new(entropix_sampler::ffi::entropix_sampler_init_greedy());
    let _ = greedy.apply(&[], false);
    let failed = common::llama::last_error();
    assert!(!failed.is_empty());
    let _ = top_k.apply(&lm_logits(100, 1), false);
    assert_eq!(common::llama::last_error(), failed);
}

/// Issue 13, defect 8: `size > 0` with NULL data is refused and the caller's
/// array is left as it was (it used to be rewritten to size 0).
#[test]
fn null_data_with_a_size_is_left_alone() {
    for (name, s) in registry() {
        let wrapped = LlamaSampler::new(into_llama_sampler(s));
        let mut arr = entropix_sampler::sys::llama_token_data_array { data: std::ptr::null_mut(), size: 5, selected: 2, sorted: true };
        unsafe { entropix_sampler::sys::llama_sampler_apply(wrapped.0, &mut arr) };
        assert_eq!((arr.size, arr.selected, arr.sorted), (5, 2, true), "{name}");
        assert!(common::llama::last_error().contains("NULL data"), "{name}: {}", common::llama::last_error());
    }
}

/// llama.h: `copy_state` copies the mutable state from src into dst "while
/// keeping dst's references". For ours that is the attention source (and
/// the AlphaSampler's lookahead): after a copy, dst samples like src but
/// still reads its own capture, and a dst with none still has none.
/// (Before the fix dst took src's attachments.)
#[test]
fn copy_state_copies_state_and_keeps_the_destinations_attachments() {
    use entropix_sampler::attention::AttentionCapture;
    use entropix_sampler::ffi::{entropix_sampler_set_attention, sampler_ref, state_json_string, ENTROPIX_OK};
    use entropix_sampler::sys;
    use std::sync::Arc;

    let state = |s: &LlamaSampler| -> serde_json::Value { serde_json::from_str(&unsafe { state_json_string(s.0) }.unwrap()).unwrap() };
    let apply_accept = |s: &LlamaSampler, seed: u64| unsafe {
        let mut data = lm_logits(500, seed);
        let mut arr = sys::llama_token_data_array { data: data.as_mut_ptr().cast(), size: data.len(), selected: -1, sorted: false };
        sys::llama_sampler_apply(s.0, &mut arr);
        assert!(arr.selected >= 0);
        sys::llama_sampler_accept(s.0, data[arr.selected as usize].id);
        data[arr.selected as usize].id
    };
    let cap_src = AttentionCapture::with_layer(0, false, 0.0);
    let cap_dst = AttentionCapture::with_layer(0, false, 0.0);
    for name in ["entropix", "alpha", "four-mode"] {
        let src = LlamaSampler::new(into_llama_sampler(fresh(name)));
        let dst = LlamaSampler::new(into_llama_sampler(fresh(name)));
        let bare = LlamaSampler::new(into_llama_sampler(fresh(name)));
        unsafe {
            assert_eq!(entropix_sampler_set_attention(src.0, Arc::as_ptr(&cap_src)), ENTROPIX_OK);
            assert_eq!(entropix_sampler_set_attention(dst.0, Arc::as_ptr(&cap_dst)), ENTROPIX_OK);
        }
        // src advances (histories, RNG step); dst and bare stay fresh.
        for step in 0..5 {
            apply_accept(&src, 40 + step);
        }
        let refs_dst = Arc::strong_count(&cap_dst);
        let copy = unsafe { (*(*dst.0).iface).copy_state.unwrap() };
        unsafe {
            copy(src.0, dst.0);
            copy(src.0, bare.0);
        }
        assert_eq!(state(&bare)["has_attention_source"], serde_json::Value::Bool(false), "{name}: bare took src's capture");
        assert_eq!(state(&dst)["has_attention_source"], serde_json::Value::Bool(true), "{name}");
        assert_eq!(Arc::strong_count(&cap_dst), refs_dst, "{name}: dst's capture reference");
        // dst's source is its own capture, not src's.
        let attached = unsafe { sampler_ref(dst.0) }.unwrap().take_attachments().attention.expect("dst's capture");
        assert!(std::ptr::addr_eq(Arc::as_ptr(&attached), Arc::as_ptr(&cap_dst)), "{name}: dst reads src's capture");
        unsafe { sampler_ref(dst.0) }.unwrap().put_attachments(entropix_sampler::core::Attachments { attention: Some(attached), other: None });
        // The state was copied: both continue alike (no fresh attention in
        // either capture, so both use the same logits-only fallback).
        for step in 0..5 {
            assert_eq!(apply_accept(&src, 90 + step), apply_accept(&dst, 90 + step), "{name}: step {step} after the copy");
        }
    }
}

/// These tests again with each other SIMD kernel forced (the default run
/// covers only the kernel this machine picks).
#[test]
fn every_simd_path_passes() {
    common::rerun_on_other_kernels("every_simd_path_passes", 10);
}
