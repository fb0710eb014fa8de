#!/usr/bin/env bash
# The generation loop's own cost against the chain's and the candidate
# fill's, per token, from `generate`'s timing line, at each model's
# vocabulary (the default model's 49152; pass a GGUF with a larger one,
# e.g. Gemma 3's 262144).
#
#   scripts/bench-loop.sh [ROUNDS] [EXTRA_MODEL.gguf ...]
#
# Prints the median over ROUNDS runs (128 tokens, --top-k 1, 2 threads) of
# the chain, the fill and the loop outside decode, fill and chain.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
shift || true
cargo build --release --quiet --example cli
cli=target/release/examples/cli
models=("$($cli fetch-model --quiet)" "$@")
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for model in "${models[@]}"; do
    chain=(); fill=(); loop=()
    for ((i = 0; i < rounds; i++)); do
        line=$("$cli" -m "$model" -p "The history of the printing press" --no-chat -n 128 --ignore-eos --top-k 1 -t 2 2>&1 >/dev/null | grep '^per token:')
        chain+=("$(sed -n 's/.*chain \([0-9.]*\) µs.*/\1/p' <<<"$line")")
        fill+=("$(sed -n 's/.*candidate fill \([0-9.]*\) µs.*/\1/p' <<<"$line")")
        loop+=("$(sed -n 's/.*loop \([0-9.]*\) µs.*/\1/p' <<<"$line")")
    done
    echo "$(basename "$model"): chain $(printf '%s\n' "${chain[@]}" | median) µs, fill $(printf '%s\n' "${fill[@]}" | median) µs, loop $(printf '%s\n' "${loop[@]}" | median) µs per token (median of $rounds)"
done
