//! The Python package (bindings/python) against the built library: pip
//! installs it from the repository into the test environment, as a user
//! would, and runs its pytest suite. (Its example, which generates text
//! through `serve`, runs in tests/serve.rs.)

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn python_bindings_pass_their_tests() {
    let python = common::python::venv_python();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = root.join("bindings/python");
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--force-reinstall"])
        .arg(&package)
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install bindings/python failed");
    // The installed package finds the library through ENTROPIX_SAMPLER_LIB
    // (an installed copy has no repository around it).
    let built = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("libentropix_sampler.so");
    assert!(built.is_file(), "{} missing: run `cargo build --release --lib` first", built.display());
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(package.join("tests"))
        .current_dir(std::env::temp_dir())
        .env("ENTROPIX_SAMPLER_LIB", &built)
        .output()
        .expect("pytest runs");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python binding tests failed");
}
