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

/// Runs this test binary again once for every other SIMD kernel the CPU
/// can run (`ENTROPIX_SIMD`, read once per process), skipping the test
/// `rerun_test` that calls this, and asserts each run passes and ran
/// `expected` tests: the kernels this machine does not pick by default
/// (AVX2 and portable on an AVX-512 machine, where most users' AVX2-only
/// CPUs take the AVX2 path) get the same oracle cases. Returns at once
/// inside a forced run. Only for binaries whose tests load no model: the
/// other tests run beside the child, and two processes running ggml's
/// spinning threads slow each other tenfold (the alpha tests took 478 s
/// instead of 4).
pub fn rerun_on_other_kernels(rerun_test: &str, expected: usize) {
    use entropix_sampler::core::logit_scan::ScanKernel;
    if std::env::var_os("ENTROPIX_SIMD").is_some() {
        return; // already a forced run: do not recurse
    }
    let exe = std::env::current_exe().unwrap();
    let default = ScanKernel::active();
    for kernel in ScanKernel::available().into_iter().filter(|&k| k != default) {
        let out = std::process::Command::new(&exe).env("ENTROPIX_SIMD", kernel.name()).args(["--skip", rerun_test]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "ENTROPIX_SIMD={}:\n{text}", kernel.name());
        assert!(text.contains(&format!("{expected} passed")), "ENTROPIX_SIMD={}: expected the other {expected} tests to run:\n{text}", kernel.name());
    }
}
