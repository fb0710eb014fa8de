//! Compiles examples/c/chain.c with -Wall -Wextra -Werror against the
//! generated header, links it to libentropix_sampler and libllama, and runs
//! it on the real model: a chain mixing llama.cpp's samplers and ours.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// One llama process at a time: ggml's threads spin.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn target_profile_dir() -> PathBuf {
    // .../target/release/deps/c_example-<hash>
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf()
}

fn compile(source: &str, name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile = target_profile_dir();
    let lib_dir = env!("ENTROPIX_LLAMA_LIB_DIR");
    let out_dir = profile.join("c-examples");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(name);
    assert!(
        profile.join("libentropix_sampler.so").exists() || profile.join("libentropix_sampler.dylib").exists(),
        "the C example links libentropix_sampler, which `cargo test` does not build: run `cargo build --release --lib` first (./dev.sh test does)"
    );
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join(source))
        .arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-I{}", env!("ENTROPIX_LLAMA_INCLUDE_DIR")))
        .arg(format!("-L{}", profile.display()))
        .arg("-lentropix_sampler")
        .arg(format!("-L{lib_dir}"))
        // Depend on every llama.cpp library directly, so the RUNPATH finds
        // them all (see build.rs).
        .args(["-Wl,--no-as-needed", "-lllama", "-lggml", "-lggml-base", "-lggml-cpu", "-Wl,--as-needed"])
        .arg(format!("-Wl,-rpath,{}:{lib_dir}", profile.display()))
        .arg("-lm")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(output.status.success(), "C compile failed:\n{}", String::from_utf8_lossy(&output.stderr));
    exe
}

#[test]
fn c_chain_mixing_llama_and_entropix_samplers_generates_text() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = compile("examples/c/chain.c", "chain");
    let model = common::llama::model_path();
    // Run without cargo's library path: the rpath alone must find everything.
    let out = Command::new(&exe).env_remove("LD_LIBRARY_PATH").arg(&model).arg("24").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chain failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));

    // The C compiler's layout of the shared types equals the Rust one.
    let layout = format!(
        "layout: token_data={} token_data_array={} sampler={}",
        std::mem::size_of::<entropix_sampler::sys::llama_token_data>(),
        std::mem::size_of::<entropix_sampler::sys::llama_token_data_array>(),
        std::mem::size_of::<entropix_sampler::sys::llama_sampler>()
    );
    assert!(stdout.contains(&layout), "{stdout}");
    assert!(stdout.contains(&format!("entropix {}", entropix_sampler::VERSION)), "{stdout}");
    assert!(stdout.contains("rejected: entropix_sampler_init_temperature: invalid parameter `temp`"), "{stdout}");
    assert!(stdout.contains("chain: top-k temp(entropix) min-p dist(entropix)"), "{stdout}");
    let generated: usize = stdout.lines().find_map(|l| l.strip_prefix("generated: ")).unwrap().trim().parse().unwrap();
    assert!(generated > 0, "nothing generated: {stdout}");

    // Same seed, same text.
    let again = Command::new(&exe).env_remove("LD_LIBRARY_PATH").arg(&model).arg("24").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
}

#[test]
fn c_attention_capture_reports_fresh_metrics_each_step() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = compile("examples/c/attention.c", "attention");
    let model = common::llama::model_path();
    let out = Command::new(&exe).env_remove("LD_LIBRARY_PATH").arg(&model).arg("6").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "attention failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<&str> = stdout.lines().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(steps.len(), 6, "{stdout}");
    assert!(steps[0].contains("heads=9"), "{stdout}");
}

/// A C host without a model (tests/c/chains_without_model.c): chains mixing
/// llama.cpp's samplers with every family of ours, natively and under
/// valgrind with the portable and AVX2 kernels forced: zero errors, no
/// definitely lost bytes. `./dev.sh test` installs valgrind.
#[test]
fn c_chains_run_clean_under_valgrind() {
    let exe = compile("tests/c/chains_without_model.c", "chains_without_model");
    let out = Command::new(&exe).env_remove("LD_LIBRARY_PATH").arg("400").output().unwrap();
    assert!(out.status.success(), "native run failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let valgrind = std::env::var("VALGRIND").unwrap_or_else(|_| "valgrind".into());
    for kernel in ["portable", "avx2"] {
        let out = Command::new(&valgrind)
            .env_remove("LD_LIBRARY_PATH")
            .env("ENTROPIX_SIMD", kernel)
            .args(["--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "-q"])
            .arg(&exe)
            .arg("200")
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{valgrind}` (./dev.sh test installs it): {e}"));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "ENTROPIX_SIMD={kernel} under valgrind: exit {:?}\n{stdout}\n{stderr}", out.status.code());
        assert!(stdout.contains("200 steps ok"), "{stdout}");
        assert!(!stderr.contains("ERROR SUMMARY") || stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    }
}
