#!/usr/bin/env bash
# The library on aarch64 Linux, from an x86-64 machine: what ARM hosts run
# (the portable kernels, llama.cpp's NEON code, aarch64's float-to-int
# conversions) is cross-built and tested under qemu-user.
#
#   scripts/test-aarch64.sh [CARGO TEST ARGS]
#
# Installs what the build needs, the cross toolchain and qemu-user with
# apt-get (scripts/build-deps.sh) and the Rust target with rustup when
# missing, builds llama.cpp for aarch64 (a few
# minutes the first time, under target/aarch64-unknown-linux-gnu), runs
# clippy with warnings as errors for that target, then the unit tests and
# the tests that need no model under qemu: the contract, ABI and error
# tests, the C ABI fuzz and host chains, and the oracle tests against
# llama.cpp's own samplers built for aarch64.
#
# CARGO TEST ARGS are added to the run: `--test alpha --test dirichlet`
# adds two test files that decode with the default model (about 6 more
# minutes under qemu; `./dev.sh test` caches the model first).
#
# Speeds under qemu mean nothing; this checks results only. Tests named
# `every_simd_path*` are skipped: they run their own binary again with
# each x86 kernel forced, which qemu-user cannot do (without binfmt_misc),
# and aarch64 has only the portable kernel they would all fall back to.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

source scripts/build-deps.sh
install_build_deps aarch64
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
command -v cargo-clippy >/dev/null 2>&1 || rustup component add clippy

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$sysroot"
# llama.cpp for any aarch64 CPU, not for this machine's.
export GGML_NATIVE=OFF

cargo clippy --release --quiet --target "$target" --all-targets -- -D warnings
tests=(contract abi_layout error_codes entropix_strategies fuzz_c_abi host_chains oracle_classic oracle_filters oracle_mirostat oracle_penalties)
cargo test --release --target "$target" --lib "${tests[@]/#/--test=}" "$@" -- --skip every_simd_path
