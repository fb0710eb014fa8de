//! Shared test support: random candidate arrays, running a sampler through
//! llama.cpp's own `llama_sampler_apply`, and tie-tolerant comparison.
#![allow(dead_code)]

pub mod cases;
pub mod compare;
pub mod llama;
pub mod python;

/// The CLI example beside the running test binary:
/// `.../target/release/deps/<test>` -> `.../target/release/examples/cli`.
pub fn cli_path() -> std::path::PathBuf {
    let profile = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    profile.join("examples").join("cli")
}
