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

install_build_deps() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || missing+=(build-essential)
    # bindgen loads libclang.so or libclang-N.so; libclang-cpp (which many
    # machines have without libclang) is a different library.
    if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null && ! compgen -G '/usr/lib/*/libclang-[0-9]*.so*' >/dev/null; then
        missing+=(libclang-dev)
    fi
    # The test suite runs a C host under valgrind (tests/c_example.rs).
    if [ "${1:-}" = test ]; then
        command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
        # tests/serve.rs drives `serve` with the openai Python package, in a
        # virtual environment it makes under target/.
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3 python3-venv)
        # tests/install.rs builds a C program through pkg-config.
        command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    fi
    if ((${#missing[@]})); then
        echo "dev.sh: installing ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

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
