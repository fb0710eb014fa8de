#!/usr/bin/env bash
# Installs entropix-sampler like a C library: the shared and static library,
# the llama.cpp libraries it was built against (same build, beside it), the
# headers (ours and llama.cpp's) and a pkg-config file.
#
#   scripts/install.sh [--prefix DIR]     (default /usr/local)
#
# Then: cc app.c $(pkg-config --cflags --libs entropix_sampler)
# (PKG_CONFIG_PATH=DIR/lib/pkgconfig for a prefix pkg-config does not
# search; LD_LIBRARY_PATH=DIR/lib or -Wl,-rpath,DIR/lib outside the
# loader's paths). See the README's Install section, also for CMake.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
while (($#)); do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet --lib
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
release=target/release
# llama-cpp-sys-2's output folder holding the libraries and headers this
# build links (the newest, as build.rs picks it).
llama_out=$(ls -td "$release"/build/llama-cpp-sys-2-*/out 2>/dev/null | while read -r d; do [ -e "$d/lib/libllama.so" ] && echo "$d" && break; done)
[ -n "$llama_out" ] || { echo "install.sh: llama.cpp's build was not found under $release/build" >&2; exit 1; }

libdir="$prefix/lib"
includedir="$prefix/include"
mkdir -p "$libdir/pkgconfig" "$includedir"
install -m 0755 "$release/libentropix_sampler.so" "$libdir/"
install -m 0644 "$release/libentropix_sampler.a" "$libdir/"
# The llama.cpp libraries with their soname links (cp -P keeps the links).
cp -P "$llama_out"/lib/libllama.so* "$llama_out"/lib/libggml*.so* "$libdir/"
install -m 0644 include/entropix_sampler.h "$includedir/"
install -m 0644 "$llama_out"/include/llama.h "$llama_out"/include/llama-cpp.h "$llama_out"/include/ggml*.h "$llama_out"/include/gguf.h "$includedir/"

# Every llama.cpp library is a direct dependency (--no-as-needed): the
# loader resolves libllama's own dependencies by soname through the
# program's search path, and a RUNPATH serves direct dependencies only.
llama_libs="-lllama -lggml -lggml-base -lggml-cpu"
[ -e "$llama_out/lib/libggml-rpc.so" ] && llama_libs="$llama_libs -lggml-rpc"
llama_libs="-Wl,--no-as-needed $llama_libs -Wl,--as-needed"
cat > "$libdir/pkgconfig/entropix_sampler.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: entropix_sampler
Description: Entropy- and attention-aware token samplers for llama.cpp, behind a C ABI
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lentropix_sampler $llama_libs
Libs.private: -lpthread -ldl -lm
PC
echo "installed entropix_sampler $version into $prefix (pkg-config: $libdir/pkgconfig/entropix_sampler.pc)"
