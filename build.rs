//! Makes every binary of this crate (the cdylib, tests, examples, benches)
//! find llama.cpp's shared libraries without LD_LIBRARY_PATH, by adding the
//! folder where `llama-cpp-sys-2` built them to the rpath, and exports that
//! folder and llama.cpp's include folder to tests as `ENTROPIX_LLAMA_LIB_DIR`
//! and `ENTROPIX_LLAMA_INCLUDE_DIR` (used to compile the C examples).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/entropix-sampler-<hash>/out.
    let build_dir = out_dir.ancestors().nth(2).expect("OUT_DIR has a build folder").to_path_buf();
    let Some(llama_out) = newest_llama_build(&build_dir) else {
        println!("cargo:warning=llama-cpp-sys-2's shared libraries were not found under {}", build_dir.display());
        return;
    };
    let lib_dir = llama_out.join("lib");
    // A RUNPATH only serves the object's own dependencies, not libllama's
    // (libggml*). So every binary depends on all four libraries directly;
    // the loader then reuses them by soname for libllama. LD_LIBRARY_PATH
    // still comes first, which is how a CUDA or Metal build of the same
    // llama.cpp replaces these (README, "GPU").
    println!("cargo:rustc-link-arg=-L{}", lib_dir.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    for lib in ["llama", "ggml", "ggml-base", "ggml-cpu"] {
        println!("cargo:rustc-link-arg=-l{lib}");
    }
    // libggml's RPC backend, when llama.cpp was built with GGML_RPC=ON
    // (.cargo/config.toml): a dependency of libggml, found the same way.
    if ["libggml-rpc.so", "libggml-rpc.dylib"].iter().any(|n| lib_dir.join(n).exists()) {
        println!("cargo:rustc-link-arg=-lggml-rpc");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    // For copies of a binary placed beside the libraries (see README, "Install").
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    println!("cargo:rustc-env=ENTROPIX_LLAMA_LIB_DIR={}", lib_dir.display());
    println!("cargo:rustc-env=ENTROPIX_LLAMA_INCLUDE_DIR={}", llama_out.join("include").display());
}

/// The `out` folder of the most recently built `llama-cpp-sys-2` in this
/// profile's build folder (holding `lib/libllama.so*` and `include/`).
fn newest_llama_build(build_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(build_dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("llama-cpp-sys-2-"))
        .map(|e| e.path().join("out"))
        .filter_map(|out| {
            let lib = ["libllama.so", "libllama.dylib"].iter().map(|n| out.join("lib").join(n)).find(|p| p.exists())?;
            let modified = std::fs::metadata(&lib).and_then(|m| m.modified()).ok()?;
            Some((modified, out))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, out)| out)
}
