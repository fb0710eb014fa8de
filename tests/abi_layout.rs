//! The types we mirror or pass through must match the vendored llama.cpp:
//! checked against the bindgen layouts of llama-cpp-sys-2 here, and against
//! the C compiler's view of llama.h in tests/c_example.rs.

use std::mem::{align_of, offset_of, size_of};

use entropix_sampler::core::TokenData;
use entropix_sampler::sys;

#[test]
fn token_data_matches_llama_token_data() {
    assert_eq!(size_of::<TokenData>(), size_of::<sys::llama_token_data>());
    assert_eq!(align_of::<TokenData>(), align_of::<sys::llama_token_data>());
    assert_eq!(offset_of!(TokenData, id), offset_of!(sys::llama_token_data, id));
    assert_eq!(offset_of!(TokenData, logit), offset_of!(sys::llama_token_data, logit));
    assert_eq!(offset_of!(TokenData, p), offset_of!(sys::llama_token_data, p));
}

#[test]
fn token_data_array_is_what_the_plugin_reads() {
    // data, size, selected (int64_t), sorted (bool): the fields iface_apply uses.
    assert_eq!(offset_of!(sys::llama_token_data_array, data), 0);
    assert_eq!(offset_of!(sys::llama_token_data_array, size), 8);
    assert_eq!(offset_of!(sys::llama_token_data_array, selected), 16);
    assert_eq!(offset_of!(sys::llama_token_data_array, sorted), 24);
    assert_eq!(size_of::<sys::llama_token_data_array>(), 32);
}

#[test]
fn sampler_interface_has_the_twelve_slots_we_fill() {
    // 6 classic callbacks, 5 experimental backend hooks, copy_state.
    assert_eq!(size_of::<sys::llama_sampler_i>(), 12 * size_of::<usize>());
    assert_eq!(offset_of!(sys::llama_sampler_i, name), 0);
    assert_eq!(offset_of!(sys::llama_sampler_i, free), 5 * size_of::<usize>());
    assert_eq!(offset_of!(sys::llama_sampler_i, copy_state), 11 * size_of::<usize>());
    assert_eq!(size_of::<sys::llama_sampler>(), 2 * size_of::<usize>());
}

#[test]
fn vendored_record_matches_the_linked_llama_cpp() {
    let record = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vendor/llama.cpp.toml")).unwrap();
    let header = std::fs::read(concat!(env!("ENTROPIX_LLAMA_INCLUDE_DIR"), "/llama.h")).unwrap();
    let digest = entropix_sampler::default_model::sha256_bytes(&header);
    assert!(
        record.contains(&format!("llama_h_sha256 = \"{digest}\"")),
        "vendor/llama.cpp.toml does not record the llama.h we compile against (sha256 {digest})"
    );
    let lib_dir = std::path::Path::new(env!("ENTROPIX_LLAMA_LIB_DIR"));
    let so = std::fs::read_dir(lib_dir).unwrap().filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).find(|n| n.starts_with("libllama.so.0."));
    if let Some(so) = so {
        assert!(record.contains(&format!("\"{so}\"")), "vendor/llama.cpp.toml does not name {so}");
    }
}
