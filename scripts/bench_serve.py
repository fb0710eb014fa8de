#!/usr/bin/env python3
"""Throughput and latency of `cli serve` against `cli generate`.

    cargo build --release --example cli
    python3 scripts/bench_serve.py [--model FILE] [--tokens 128] [--runs 3]

Runs `generate` first (its own "generation: ... tokens/s" line), then starts
`serve` and measures one stream and four parallel streams through the
OpenAI chat endpoint: tokens/s after the first token, time to first token
and the gaps between tokens (p50/p95). One llama process at a time: ggml's
threads spin, and two at once slow each other down many times over.
Standard library only.
"""

import argparse
import http.client
import json
import re
import statistics
import subprocess
import threading
import time
import urllib.parse

PROMPT = "Write a long story about a lighthouse keeper and a storm."


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def generate_tokens_per_s(cli, model, tokens, threads):
    cmd = [cli, "-p", PROMPT, "-n", str(tokens), "--ignore-eos", "--temp", "0", "-t", str(threads), "-s", "1"]
    if model:
        cmd += ["-m", model]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    m = re.search(r"generation:\s+(\d+) tokens in\s+([\d.]+) ms", err)
    n, ms = int(m.group(1)), float(m.group(2))
    return n / (ms / 1e3)


timings = []  # the server's own tokens/s of each request (llama-server's `timings`)


def stream(url, tokens, results, i):
    """One streaming request; records the arrival time of each token."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
    }
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
    resp = conn.getresponse()
    arrivals = []
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: {"):
            continue
        # One chunk per token (English text: no token is held back). A byte
        # search, not a JSON parse: the client shares the CPU with the server.
        if b'"content":"' in line and b'"content":""' not in line:
            arrivals.append(time.perf_counter())
        elif b'"timings"' in line:
            timings.append(json.loads(line[6:])["timings"]["predicted_per_second"])
    conn.close()
    results[i] = (t0, arrivals)


def run_streams(url, n, tokens):
    results = [None] * n
    threads = [threading.Thread(target=stream, args=(url, tokens, results, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ttft = [arr[0] - t0 for t0, arr in results]
    gaps = [b - a for _, arr in results for a, b in zip(arr, arr[1:])]
    first = min(arr[0] for _, arr in results)
    last = max(arr[-1] for _, arr in results)
    n_after_first = sum(len(arr) - 1 for _, arr in results)
    return n_after_first / (last - first), ttft, gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default="target/release/examples/cli")
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--serve-flag", action="append", default=[], help="extra flag for serve (repeatable), e.g. --serve-flag=--no-attention")
    args = ap.parse_args()

    cmd = [args.cli, "serve", "--port", "0", "-t", str(args.threads)] + args.serve_flag
    if args.model:
        cmd += ["-m", args.model]
    # Interleaved, one process at a time: generate, then a fresh server for
    # the streams, so that drift in the machine's speed hits both alike.
    gen, one, four, engine_one = [], [], [], []
    ttft1, gaps1, ttft4, gaps4 = [], [], [], []
    for _ in range(args.runs):
        gen.append(generate_tokens_per_s(args.cli, args.model, args.tokens, args.threads))
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = re.search(r"http://\S+", server.stdout.readline()).group(0)
            run_streams(url, 1, 8)  # warm-up
            timings.clear()
            tps, t, g = run_streams(url, 1, args.tokens)
            engine_one.extend(timings)
            one.append(tps)
            ttft1 += t
            gaps1 += g
            tps, t, g = run_streams(url, 4, args.tokens)
            four.append(tps)
            ttft4 += t
            gaps4 += g
        finally:
            server.terminate()
            server.wait()

    med = statistics.median
    print(f"{args.tokens} tokens per stream, median of {args.runs} runs, {args.threads} threads, serve flags {args.serve_flag}")
    print(f"generate:            {med(gen):7.1f} tokens/s")
    print(f"serve, 1 stream:     {med(one):7.1f} tokens/s  ({med(one) / med(gen):.2f}x generate) at the client")
    print(f"                     {med(engine_one):7.1f} tokens/s  ({med(engine_one) / med(gen):.2f}x generate) in the server's timings")
    print(f"serve, 4 streams:    {med(four):7.1f} tokens/s aggregate  ({med(four) / med(one):.2f}x one stream)")
    for name, ttft, gaps in (("1 stream", ttft1, gaps1), ("4 streams", ttft4, gaps4)):
        print(
            f"{name:9}: time to first token p50 {percentile(ttft, 0.5) * 1e3:6.1f} ms, p95 {percentile(ttft, 0.95) * 1e3:6.1f} ms; "
            f"per token p50 {percentile(gaps, 0.5) * 1e3:5.1f} ms, p95 {percentile(gaps, 0.95) * 1e3:5.1f} ms"
        )


if __name__ == "__main__":
    main()
