//! A Python virtual environment for the tests that drive Python code
//! (the `openai` client against `serve`, the ctypes bindings): made once
//! under target/py-venv with the packages the tests need.

use std::path::PathBuf;
use std::process::Command;

/// What the environment holds: the serve tests' client and the bindings'
/// test dependencies.
const PACKAGES: &[&str] = &["openai>=1.40,<3", "pytest>=7", "httpx", "numpy>=1.21"];

/// Serialises the first use across the test binaries' threads.
static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The environment's `python`, made on first use (needs python3 with
/// venv and pip access to PyPI; ./dev.sh test installs python3-venv).
pub fn venv_python() -> PathBuf {
    let _turn = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    // .../target/release/deps/<test> -> .../target
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let venv = target.join("py-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join(format!(".ready-{}", PACKAGES.join(" ").replace(['<', '>', '=', ',', ' '], "_")));
    if stamp.is_file() {
        return python;
    }
    if !python.is_file() {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv failed: these tests need python3 with venv (Debian: apt-get install python3-venv; ./dev.sh test installs it)"
        );
    }
    let installed = Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(PACKAGES).status().expect("pip runs");
    assert!(installed.success(), "pip install {PACKAGES:?} failed");
    std::fs::write(&stamp, "").unwrap();
    python
}
