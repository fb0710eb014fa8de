#!/usr/bin/env bash
# The project's two entry points, for a fresh Debian/Ubuntu machine with Rust:
#
#   ./dev.sh generate [CLI FLAGS]   generate text (default model, fetched once)
#   ./dev.sh test                   run the whole test suite
#
# Both first install what the build needs when it is missing (cmake, a C/C++
# compiler, libclang for bindgen; valgrind and python3-venv for the tests)
# with apt-get, then call cargo. Everything runs in release mode: llama.cpp
# is built once (a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")"

# install_build_deps [test]
source scripts/build-deps.sh

cmd="${1:-}"
shift || true
case "$cmd" in
    generate)
        install_build_deps
        exec cargo run --release --quiet --example cli -- "$@"
        ;;
    test)
        install_build_deps test
        # The C example links the cdylib, which `cargo test` alone does not
        # produce; and the default model is fetched once, before tests run
        # in parallel.
        cargo build --release --quiet --lib
        cargo run --release --quiet --example cli -- fetch-model
        exec cargo test --release "$@"
        ;;
    *)
        echo "usage: ./dev.sh generate [CLI FLAGS] | ./dev.sh test [CARGO TEST ARGS]" >&2
        exit 2
        ;;
esac
