#!/usr/bin/env bash
# Generation speed of the CLI with entropix's classic chain against the
# same chain of llama.cpp's built-in samplers, alternating runs of the two.
#
#   scripts/bench-generation.sh [ROUNDS] [N_PREDICT]
#
# LLAMA_LIB_DIR=DIR runs against another build of the same llama.cpp (for
# example one built without SIMD, or with CUDA) by putting DIR first on the
# library path. Prints the median generation tokens/s of each and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
n_predict="${2:-128}"
cargo build --release --quiet --example cli
cli=target/release/examples/cli
model="$($cli fetch-model --quiet)"
if [ -n "${LLAMA_LIB_DIR:-}" ]; then
    export LD_LIBRARY_PATH="$LLAMA_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
flags=(-m "$model" -p "Write a story about a lighthouse keeper." -n "$n_predict" --ignore-eos -s 42
       --repeat-penalty 1.1 --dry-multiplier 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --temp 0.8)

tokens_per_s() { # impl
    "$cli" "${flags[@]}" --sampler-impl "$1" 2>&1 >/dev/null | sed -n 's/^generation:.*(\s*\([0-9.]*\) tokens\/s)/\1/p'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

ours=(); theirs=()
for ((i = 0; i < rounds; i++)); do
    if ((i % 2)); then
        theirs+=("$(tokens_per_s llama)"); ours+=("$(tokens_per_s entropix)")
    else
        ours+=("$(tokens_per_s entropix)"); theirs+=("$(tokens_per_s llama)")
    fi
done
m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_theirs=$(printf '%s\n' "${theirs[@]}" | median)
echo "chain: penalties(1.1) dry(0.8) top-k 40 top-p 0.95 min-p 0.05 temp 0.8 dist; $n_predict tokens, $rounds rounds each"
echo "entropix chain:  $m_ours tokens/s  (runs: ${ours[*]})"
echo "llama.cpp chain: $m_theirs tokens/s  (runs: ${theirs[*]})"
awk -v a="$m_ours" -v b="$m_theirs" 'BEGIN {printf "ratio entropix/llama.cpp: %.3f\n", a / b}'
