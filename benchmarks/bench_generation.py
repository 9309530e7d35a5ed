"""Generation speed with and without the KV cache, as the sequence grows.

    python benchmarks/bench_generation.py

Without a cache every new token re-runs the model over the whole context (quadratic work);
with it, each step feeds one token and attends to cached keys and values. Both produce the
same tokens (tests/test_sampling.py checks it).
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import print_table, write_json

import tinyformer as tf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, nargs="+", default=[32, 128, 448, 960])
    args = parser.parse_args()
    config = tf.preset("book-small", vocab_size=63, context_length=1024)
    torch.manual_seed(0)
    model = tf.TransformerLM(config).eval()
    rows = []
    for prompt_len in args.prompts:
        prompt = torch.randint(0, 63, (1, prompt_len))
        timings = {}
        outputs = {}
        for cached in (False, True):
            tf.generate(model, prompt, 4, temperature=0, use_kv_cache=cached)  # warm-up
            start = time.perf_counter()
            outputs[cached] = tf.generate(model, prompt, args.new_tokens, temperature=0, use_kv_cache=cached)
            timings[cached] = time.perf_counter() - start
        assert torch.equal(outputs[False], outputs[True]), "the KV cache changed the generated tokens"
        rows.append({
            "prompt": prompt_len, "final length": prompt_len + args.new_tokens,
            "no cache tok/s": args.new_tokens / timings[False], "KV cache tok/s": args.new_tokens / timings[True],
            "speed-up": timings[False] / timings[True],
        })
    print(f"book-small architecture with a {config.context_length}-token context, greedy, {args.new_tokens} new tokens\n")
    print_table(rows, ["prompt", "final length", "no cache tok/s", "KV cache tok/s", "speed-up"])
    write_json("generation", "python benchmarks/bench_generation.py", {"config": config.to_dict(), "rows": rows})


if __name__ == "__main__":
    main()
