//! One fault, one code: every `int` export of the C ABI answers a NULL
//! required pointer with `ENTROPIX_ERR_NULL`, a sampler of the wrong kind
//! (llama.cpp's own, or ours of another family) and other bad values with
//! `ENTROPIX_ERR_INVALID`, each with a message, and success with
//! `ENTROPIX_OK` and an empty last error. No model is needed.

mod common;

use std::ffi::{c_char, CString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use common::llama::{last_error, LlamaSampler};
use entropix_sampler::attention::AttentionCapture;
use entropix_sampler::ffi::{self, ENTROPIX_ERR_INVALID, ENTROPIX_ERR_NULL, ENTROPIX_NO_ATTENTION, ENTROPIX_OK};
use entropix_sampler::sys;

/// Checks `rc` against `want` and the last error against the code: a
/// message on failure, none otherwise.
fn check(what: &str, rc: i32, want: i32) {
    assert_eq!(rc, want, "{what}: returned {rc}, want {want} ({})", last_error());
    let message = last_error();
    match want {
        ENTROPIX_OK | ENTROPIX_NO_ATTENTION => assert!(message.is_empty(), "{what}: succeeded but left the error {message:?}"),
        _ => {
            assert!(!message.is_empty(), "{what}: failed without a message");
            assert!(!message.contains("internal error"), "{what}: {message}");
        }
    }
}

/// llama.cpp's own sampler and ours of several families: the right kind
/// for one export is the wrong kind for another.
struct Samplers {
    foreign: LlamaSampler,
    greedy: LlamaSampler,
    alpha: LlamaSampler,
    entropix: LlamaSampler,
    dirichlet: LlamaSampler,
}

fn samplers() -> Samplers {
    unsafe {
        Samplers {
            foreign: LlamaSampler::new(sys::llama_sampler_init_greedy()),
            greedy: LlamaSampler::new(ffi::entropix_sampler_init_greedy()),
            alpha: LlamaSampler::new(ffi::entropix_sampler_init_alpha(std::ptr::null())),
            entropix: LlamaSampler::new(ffi::entropix_sampler_init_entropix(std::ptr::null())),
            dirichlet: LlamaSampler::new(ffi::entropix_sampler_init_dirichlet(std::ptr::null())),
        }
    }
}

#[test]
fn sampler_exports_give_one_code_per_fault() {
    let s = samplers();
    let capture = AttentionCapture::with_layer(0, false, 0.0);
    let cap = Arc::as_ptr(&capture);
    let logits = [0.0f32; 8];
    unsafe {
        // entropix_alpha_set_lookahead (a NULL context detaches: valid).
        check("set_lookahead NULL sampler", ffi::entropix_alpha_set_lookahead(std::ptr::null_mut(), std::ptr::null_mut(), cap, 0), ENTROPIX_ERR_NULL);
        check("set_lookahead foreign", ffi::entropix_alpha_set_lookahead(s.foreign.0, std::ptr::null_mut(), cap, 0), ENTROPIX_ERR_INVALID);
        check("set_lookahead greedy", ffi::entropix_alpha_set_lookahead(s.greedy.0, std::ptr::null_mut(), cap, 0), ENTROPIX_ERR_INVALID);
        check("set_lookahead detach", ffi::entropix_alpha_set_lookahead(s.alpha.0, std::ptr::null_mut(), std::ptr::null(), 0), ENTROPIX_OK);

        // entropix_sampler_set_attention.
        check("set_attention NULL sampler", ffi::entropix_sampler_set_attention(std::ptr::null_mut(), cap), ENTROPIX_ERR_NULL);
        check("set_attention foreign", ffi::entropix_sampler_set_attention(s.foreign.0, cap), ENTROPIX_ERR_INVALID);
        check("set_attention greedy", ffi::entropix_sampler_set_attention(s.greedy.0, cap), ENTROPIX_ERR_INVALID);
        check("set_attention entropix", ffi::entropix_sampler_set_attention(s.entropix.0, cap), ENTROPIX_OK);
        check("set_attention detach", ffi::entropix_sampler_set_attention(s.entropix.0, std::ptr::null()), ENTROPIX_OK);

        // entropix_sampler_observe_prompt_logits.
        let obs = |smpl, l: *const f32, n_pos, n_vocab| ffi::entropix_sampler_observe_prompt_logits(smpl, l, n_pos, n_vocab);
        check("observe NULL sampler", obs(std::ptr::null_mut(), logits.as_ptr(), 1, 8), ENTROPIX_ERR_NULL);
        check("observe NULL logits", obs(s.dirichlet.0, std::ptr::null(), 1, 8), ENTROPIX_ERR_NULL);
        check("observe foreign", obs(s.foreign.0, logits.as_ptr(), 1, 8), ENTROPIX_ERR_INVALID);
        check("observe greedy", obs(s.greedy.0, logits.as_ptr(), 1, 8), ENTROPIX_ERR_INVALID);
        check("observe n_vocab 0", obs(s.dirichlet.0, logits.as_ptr(), 1, 0), ENTROPIX_ERR_INVALID);
        check("observe dirichlet", obs(s.dirichlet.0, logits.as_ptr(), 1, 8), ENTROPIX_OK);

        // entropix_entropix_last_step.
        let mut step = entropix_sampler::samplers::entropix::EntropixStep::default();
        check("last_step NULL sampler", ffi::entropix_entropix_last_step(std::ptr::null(), &mut step), ENTROPIX_ERR_NULL);
        check("last_step NULL out", ffi::entropix_entropix_last_step(s.entropix.0, std::ptr::null_mut()), ENTROPIX_ERR_NULL);
        check("last_step foreign", ffi::entropix_entropix_last_step(s.foreign.0, &mut step), ENTROPIX_ERR_INVALID);
        check("last_step alpha", ffi::entropix_entropix_last_step(s.alpha.0, &mut step), ENTROPIX_ERR_INVALID);
        check("last_step entropix", ffi::entropix_entropix_last_step(s.entropix.0, &mut step), ENTROPIX_OK);
    }
}

#[test]
fn capture_exports_give_one_code_per_fault() {
    let capture = AttentionCapture::with_layer(0, false, 0.0);
    let cap = Arc::as_ptr(&capture);
    let null = std::ptr::null();
    unsafe {
        check("expect_batch NULL capture", ffi::entropix_attention_capture_expect_batch(null, [0].as_ptr(), 1, 1), ENTROPIX_ERR_NULL);
        check("expect_batch NULL indices", ffi::entropix_attention_capture_expect_batch(cap, std::ptr::null(), 2, 4), ENTROPIX_ERR_NULL);
        check("expect_batch index >= n_tokens", ffi::entropix_attention_capture_expect_batch(cap, [5].as_ptr(), 1, 2), ENTROPIX_ERR_INVALID);
        check("expect_batch negative index", ffi::entropix_attention_capture_expect_batch(cap, [-1].as_ptr(), 1, 2), ENTROPIX_ERR_INVALID);
        check("expect_batch negative n_tokens", ffi::entropix_attention_capture_expect_batch(cap, [0].as_ptr(), 1, -3), ENTROPIX_ERR_INVALID);
        check("expect_batch", ffi::entropix_attention_capture_expect_batch(cap, [0, 2].as_ptr(), 2, 3), ENTROPIX_OK);
        check("expect_outputs NULL capture", ffi::entropix_attention_capture_expect_outputs(null, [0].as_ptr(), 1), ENTROPIX_ERR_NULL);
        check("expect_outputs NULL indices", ffi::entropix_attention_capture_expect_outputs(cap, std::ptr::null(), 1), ENTROPIX_ERR_NULL);
        check("expect_outputs negative index", ffi::entropix_attention_capture_expect_outputs(cap, [-2].as_ptr(), 1), ENTROPIX_ERR_INVALID);
        check("expect_outputs", ffi::entropix_attention_capture_expect_outputs(cap, [1].as_ptr(), 1), ENTROPIX_OK);
        check("select_output NULL capture", ffi::entropix_attention_capture_select_output(null, 0), ENTROPIX_ERR_NULL);
        check("select_output", ffi::entropix_attention_capture_select_output(cap, -1), ENTROPIX_OK);
        let mut m = ffi::AttentionMetricsOut::default();
        check("metrics NULL capture", ffi::entropix_attention_capture_metrics(null, &mut m), ENTROPIX_ERR_NULL);
        check("metrics NULL out", ffi::entropix_attention_capture_metrics(cap, std::ptr::null_mut()), ENTROPIX_ERR_NULL);
        // Nothing decoded: a status, not an error.
        check("metrics before any decode", ffi::entropix_attention_capture_metrics(cap, &mut m), ENTROPIX_NO_ATTENTION);
    }
}

#[test]
fn profile_loaders_give_one_code_per_fault() {
    let dir = std::env::temp_dir().join(format!("entropix-error-codes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("thresholds.json");
    std::fs::write(&good, r#"{"thresholds": {"high_ent": {"value": 4.0, "unit": "bits"}}}"#).unwrap();
    let good = CString::new(good.as_os_str().as_bytes()).unwrap();
    let missing = CString::new(dir.join("missing.json").as_os_str().as_bytes()).unwrap();
    // A path that is not UTF-8 is bad input, not a NULL pointer.
    let not_utf8 = CString::new(b"/tmp/\xff\xfe.json".to_vec()).unwrap();
    let null: *const c_char = std::ptr::null();
    unsafe {
        let mut e = ffi::entropix_entropix_default_params();
        check("entropix NULL path", ffi::entropix_entropix_params_load_profile(null, &mut e), ENTROPIX_ERR_NULL);
        check("entropix NULL params", ffi::entropix_entropix_params_load_profile(good.as_ptr(), std::ptr::null_mut()), ENTROPIX_ERR_NULL);
        check("entropix missing file", ffi::entropix_entropix_params_load_profile(missing.as_ptr(), &mut e), ENTROPIX_ERR_INVALID);
        check("entropix non-UTF-8 path", ffi::entropix_entropix_params_load_profile(not_utf8.as_ptr(), &mut e), ENTROPIX_ERR_INVALID);
        check("entropix profile", ffi::entropix_entropix_params_load_profile(good.as_ptr(), &mut e), ENTROPIX_OK);
        let mut f = ffi::entropix_four_mode_default_params();
        check("four-mode NULL path", ffi::entropix_four_mode_params_load_profile(null, &mut f), ENTROPIX_ERR_NULL);
        check("four-mode NULL params", ffi::entropix_four_mode_params_load_profile(good.as_ptr(), std::ptr::null_mut()), ENTROPIX_ERR_NULL);
        check("four-mode missing file", ffi::entropix_four_mode_params_load_profile(missing.as_ptr(), &mut f), ENTROPIX_ERR_INVALID);
        check("four-mode non-UTF-8 path", ffi::entropix_four_mode_params_load_profile(not_utf8.as_ptr(), &mut f), ENTROPIX_ERR_INVALID);
        let mut d = ffi::entropix_dirichlet_default_params();
        check("dirichlet NULL path", ffi::entropix_dirichlet_load_profile(null, &mut d), ENTROPIX_ERR_NULL);
        check("dirichlet NULL params", ffi::entropix_dirichlet_load_profile(good.as_ptr(), std::ptr::null_mut()), ENTROPIX_ERR_NULL);
        check("dirichlet missing file", ffi::entropix_dirichlet_load_profile(missing.as_ptr(), &mut d), ENTROPIX_ERR_INVALID);
        check("dirichlet non-UTF-8 path", ffi::entropix_dirichlet_load_profile(not_utf8.as_ptr(), &mut d), ENTROPIX_ERR_INVALID);
    }
    std::fs::remove_dir_all(&dir).ok();
}
