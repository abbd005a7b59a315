"""Tokens/s of the embedded engine for both bundled models, fp32 vs bf16.

    python bench/generate.py [--models smollm2-135m qwen2.5-coder-0.5b] [--tokens 128] [--repeats 2]

Greedy decoding of the same prompt; prints a table and the bf16 / fp32 ratio
measured in this run, plus whether the two dtypes produced the same tokens
(bf16 is faster on some CPUs but numerically noisier).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from continualcode.engines.base import SamplingParams
from continualcode.engines.embedded import EmbeddedEngine
from continualcode.models import resolve

PROMPT = [{"role": "user", "content": "Write a Python function that parses an ISO-8601 date "
           "string and returns a datetime, with error handling and a docstring."}]


def measure(model: str, dtype: str, tokens: int, repeats: int) -> tuple[float, float, list[int]]:
    started = time.perf_counter()
    engine = EmbeddedEngine(resolve(model), dtype=dtype)
    load = time.perf_counter() - started
    engine.generate(PROMPT, SamplingParams(max_new_tokens=8))  # warm-up
    rates, ids = [], []
    for _ in range(repeats):
        completion = engine.generate(PROMPT, SamplingParams(max_new_tokens=tokens))
        rates.append(len(completion.token_ids) / completion.seconds)
        ids = completion.token_ids
    return load, statistics.median(rates), ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"{'model':22} {'dtype':5} {'load s':>7} {'tok/s':>7}")
    for model in args.models:
        results = {}
        for dtype in ("fp32", "bf16"):
            load, rate, ids = measure(model, dtype, args.tokens, args.repeats)
            results[dtype] = (rate, ids)
            print(f"{model:22} {dtype:5} {load:7.2f} {rate:7.1f}")
        same = sum(a == b for a, b in zip(results["fp32"][1], results["bf16"][1]))
        print(f"{model:22} bf16/fp32 speed ratio {results['bf16'][0] / results['fp32'][0]:.2f}; "
              f"greedy tokens identical for the first {same} of {len(results['fp32'][1])}")


if __name__ == "__main__":
    main()
