# Sourced by dev.sh and scripts/test-aarch64.sh (not run on its own):
# `install_build_deps [test|aarch64]` installs with apt-get what the build
# needs when it is missing: cmake, a C/C++ compiler and libclang for
# bindgen; with `test` also what the test suite runs (valgrind,
# python3-venv, pkg-config); with `aarch64` also the cross toolchain, the
# arm64 C library and qemu-user.

install_build_deps() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || missing+=(build-essential)
    # bindgen loads libclang.so or libclang-N.so; libclang-cpp (which many
    # machines have without libclang) is a different library.
    if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null && ! compgen -G '/usr/lib/*/libclang-[0-9]*.so*' >/dev/null; then
        missing+=(libclang-dev)
    fi
    case "${1:-}" in
        test)
            # The test suite runs a C host under valgrind (tests/c_example.rs).
            command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
            # tests/serve.rs drives `serve` with the openai Python package, in a
            # virtual environment it makes under target/.
            python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3 python3-venv)
            # tests/install.rs builds a C program through pkg-config.
            command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
            ;;
        aarch64)
            command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
            command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
            [ -e /usr/aarch64-linux-gnu/include/stdio.h ] || missing+=(libc6-dev-arm64-cross)
            command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
            ;;
    esac
    if ((${#missing[@]})); then
        echo "installing ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}
