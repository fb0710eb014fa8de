"""Generate text with any sampler of entropix-sampler from Python, through
`serve`'s OpenAI API, and show the per-token telemetry.

    cargo run --release --example cli -- serve --port 8080 &
    pip install openai
    python3 bindings/python/examples/chat_over_serve.py [--url http://127.0.0.1:8080] [--sampler entropix]
"""

import argparse

from openai import OpenAI


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--sampler", default="entropix")
    ap.add_argument("--prompt", default="Why is the sky blue?")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    client = OpenAI(base_url=args.url + "/v1", api_key="unused")
    model = client.models.list().data[0].id
    strategies = []
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": args.prompt}],
        max_tokens=args.max_tokens,
        seed=args.seed,
        stream=True,
        extra_body={"sampler": args.sampler, "telemetry": True},
    )
    for chunk in stream:
        for choice in chunk.choices:
            print(choice.delta.content or "", end="", flush=True)
            for t in (choice.model_extra or {}).get("telemetry") or []:
                strategies.append(t["strategy"])
    print()
    counts = {s: strategies.count(s) for s in dict.fromkeys(strategies)}
    print(f"[{args.sampler}: {len(strategies)} tokens; strategies {counts}]")


if __name__ == "__main__":
    main()
