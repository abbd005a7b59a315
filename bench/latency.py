"""REPL response latency with and without the background trainer running.

    python bench/latency.py [--model smollm2-135m] [--requests 4] [--tokens 32]

Times the same greedy request on the serving engine while the trainer is idle,
then while the trainer thread is busy with SDPO steps (a queue of examples),
and prints the ratio measured in this run. OMP_WAIT_POLICY=PASSIVE is set as
the app sets it; pass --active to see the default OpenMP policy instead (it
must be chosen before torch loads, so run the two in separate processes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "--active" in sys.argv:
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from continualcode.adapters.registry import AdapterRegistry
from continualcode.engines.base import SamplingParams
from continualcode.engines.embedded import EmbeddedEngine
from continualcode.learning.trainer import Trainer
from continualcode.models import resolve
from continualcode.store.db import Store

sys.path.insert(0, str(Path(__file__).parent))
from hotswap import queue_example  # noqa: E402

PROMPT = [{"role": "user", "content": "Explain what a Python list comprehension is."}]


def time_requests(engine, count: int, tokens: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        engine.generate(PROMPT, SamplingParams(max_new_tokens=tokens))
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--active", action="store_true", help="OMP_WAIT_POLICY=ACTIVE (the OpenMP default)")
    args = parser.parse_args()
    resolved = resolve(args.model)
    engine = EmbeddedEngine(resolved, dtype="auto")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db")
        trainer = Trainer(store, AdapterRegistry(Path(tmp) / "adapters"), resolved, engine=None, steps_per_feedback=2)
        time_requests(engine, 1, 8)  # warm-up
        idle = time_requests(engine, args.requests, args.tokens)
        for i in range(args.requests * 3):
            queue_example(store, engine, f"Be more concise. ({i})")
        trainer._ensure_model()
        trainer.start()
        trainer.wake()
        time.sleep(1.0)
        busy = time_requests(engine, args.requests, args.tokens)
        steps = trainer.steps_done
        trainer.stop(timeout=600)
        store.close()
    print(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, model {args.model}, {args.tokens} tokens per request")
    print(f"idle trainer:  median {statistics.median(idle):.2f} s per request")
    print(f"busy trainer:  median {statistics.median(busy):.2f} s per request ({steps} SDPO steps meanwhile)")
    print(f"ratio busy/idle: {statistics.median(busy) / statistics.median(idle):.2f}")


if __name__ == "__main__":
    main()
