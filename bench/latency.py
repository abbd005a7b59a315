"""REPL response latency with and without the background trainer running.

    python bench/latency.py [--model qwen2.5-coder-0.5b] [--requests 4] [--tokens 32] [--queue 6]

Times the same greedy request on the serving engine while the trainer is idle,
then while the trainer thread is busy with SDPO steps, and prints the ratio
measured in this run. "Busy" is checked, not assumed: enough feedback
examples are queued for the whole timed window, the timing starts only once
the trainer's `phase` says it is training and its first optimizer step has
run (loading the training copy is not training), and the run reports how many
SDPO steps ran during the timed requests and whether the trainer was still
training after the last one. OMP_WAIT_POLICY=PASSIVE is set as the app sets
it; pass --active to see the default OpenMP policy instead (it must be chosen
before torch loads, so run the two in separate processes).
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

from hotswap import queue_feedback  # bench/ is on sys.path when a bench script runs

from continualcode.adapters.registry import AdapterRegistry
from continualcode.engines.base import SamplingParams
from continualcode.engines.embedded import EmbeddedEngine
from continualcode.learning.trainer import Trainer
from continualcode.models import DEFAULT_MODEL, resolve
from continualcode.store.db import Store

PROMPT = [{"role": "user", "content": "Explain what a Python list comprehension is."}]


def time_requests(engine, count: int, tokens: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        engine.generate(PROMPT, SamplingParams(max_new_tokens=tokens))
        times.append(time.perf_counter() - started)
    return times


def wait_until_training(trainer: Trainer, timeout: float) -> float:
    """Block until the trainer has run its first SDPO step; the seconds it took (loading included)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if trainer.steps_taken > 0 and trainer.phase.startswith("training"):
            return time.perf_counter() - started
        if trainer.last_error:
            raise SystemExit(f"the trainer failed before training: {trainer.last_error}")
        time.sleep(0.2)
    raise SystemExit(f"the trainer did not start an SDPO step within {timeout:.0f} s (phase: {trainer.phase})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--queue", type=int, default=6, help="feedback examples queued (each one SDPO batch)")
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--active", action="store_true", help="OMP_WAIT_POLICY=ACTIVE (the OpenMP default)")
    args = parser.parse_args()
    resolved = resolve(args.model)
    engine = EmbeddedEngine(resolved, dtype="auto")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db")
        trainer = Trainer(store, AdapterRegistry(Path(tmp) / "adapters"), resolved, engine=None)
        time_requests(engine, 1, 8)  # warm-up
        idle = time_requests(engine, args.requests, args.tokens)
        queue_feedback(store, engine, [f"Answer with digits only, separated by commas. ({i})"
                                       for i in range(args.queue)])
        trainer.start()
        trainer.wake()
        waited = wait_until_training(trainer, args.start_timeout)
        steps_before = trainer.steps_taken
        busy = time_requests(engine, args.requests, args.tokens)
        steps = trainer.steps_taken - steps_before
        still = trainer.phase.startswith("training")
        left = store.queue_length()
        trainer.stop(timeout=1200)
        store.close()
    print(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, model {args.model}, {args.tokens} tokens per request")
    print(f"idle trainer:  median {statistics.median(idle):.2f} s per request")
    print(f"busy trainer:  median {statistics.median(busy):.2f} s per request ({steps} SDPO steps during the "
          f"{len(busy)} timed requests; first step {waited:.0f} s after the trainer started; "
          f"{'still training' if still else 'NOT training'} after the last request, {left} examples queued)")
    if steps == 0 or not still:
        print("warning: the trainer was not busy for the whole timed window; raise --queue")
    print(f"ratio busy/idle: {statistics.median(busy) / statistics.median(idle):.2f}")


if __name__ == "__main__":
    main()
