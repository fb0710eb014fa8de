//! scripts/install.sh into a temporary prefix, then a C program built only
//! from what pkg-config says about it (shared, and static), run on the
//! default model: the install a C developer would follow.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("entropix_sampler")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config runs (./dev.sh test installs it)");
    assert!(out.status.success(), "pkg-config {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect()
}

fn build_and_run(prefix: &Path, exe: &Path, flags: &[String], model: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(exe)
        .arg(root.join("examples/c/chain.c"))
        .args(flags)
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .output()
        .expect("the C compiler runs");
    assert!(out.status.success(), "compile with {flags:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(exe).env_remove("LD_LIBRARY_PATH").arg(model).arg("12").output().unwrap();
    assert!(run.status.success(), "{} failed: {}", exe.display(), String::from_utf8_lossy(&run.stderr));
    String::from_utf8_lossy(&run.stdout).into_owned()
}

#[test]
fn an_installed_prefix_builds_a_c_program_through_pkg_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prefix: PathBuf = std::env::temp_dir().join(format!("entropix-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let out = Command::new(root.join("scripts/install.sh")).arg("--prefix").arg(&prefix).output().unwrap();
    assert!(out.status.success(), "install.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    for f in ["lib/libentropix_sampler.so", "lib/libentropix_sampler.a", "lib/libllama.so", "include/entropix_sampler.h", "include/llama.h"] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    let model = common::llama::model_path();

    let shared = pkg_config(&prefix, &["--cflags", "--libs"]);
    assert!(shared.iter().any(|f| f == "-lentropix_sampler") && shared.iter().any(|f| f == "-lllama"), "{shared:?}");
    let text = build_and_run(&prefix, &prefix.join("chain-shared"), &shared, &model);
    assert!(text.trim().len() > 10, "no text: {text:?}");

    // Static: our archive, llama.cpp's shared libraries, the system libraries.
    let mut flags = pkg_config(&prefix, &["--cflags", "--static", "--libs"]);
    let at = flags.iter().position(|f| f == "-lentropix_sampler").unwrap();
    flags[at] = prefix.join("lib/libentropix_sampler.a").display().to_string();
    let text_static = build_and_run(&prefix, &prefix.join("chain-static"), &flags, &model);
    assert_eq!(text_static, text, "the static build writes other text");
    let _ = std::fs::remove_dir_all(&prefix);
}
