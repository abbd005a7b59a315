"""Feedback recorded → new adapter version live, and the swap alone, per engine.

    python bench/hotswap.py [--model smollm2-135m] [--engines embedded vllm] [--rounds 3]

For each round: queue one feedback example in a real store, let the trainer
run its SDPO steps and publish, and time until the engine serves the new
version; then time `load_adapter` alone (a swap between two existing versions)
and a rollback. The vLLM column needs `make vllm` (.venv-vllm) and is skipped
with a note otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from continualcode.adapters.registry import AdapterRegistry
from continualcode.engines.base import SamplingParams
from continualcode.learning.trainer import Trainer
from continualcode.models import resolve
from continualcode.store.db import Store

X = [{"role": "user", "content": "List three prime numbers."}]


def queue_feedback(store: Store, engine, texts: list[str]) -> None:
    """One sampled reply to X, and one follow-up feedback example on it per text (one generation,
    so queueing costs one request; bench/latency.py queues its examples the same way)."""
    session = store.start_session("/bench", "bench", "bench")
    store.add_message(session, "user", X[0]["content"])
    completion = engine.generate(X, SamplingParams(max_new_tokens=32))
    reply = store.add_message(session, "assistant", completion.text, token_ids=completion.token_ids,
                              logprobs=completion.logprobs, adapter_version=completion.adapter_version)
    for text in texts:
        store.add_example(store.add_feedback("followup", text, reply), reply, X, text, template="hindsight")


def make_engine(kind: str, resolved):
    if kind == "embedded":
        from continualcode.engines.embedded import EmbeddedEngine

        return EmbeddedEngine(resolved, dtype="auto")
    from continualcode.config import Settings
    from continualcode.engines.vllm import VLLMEngine

    vllm = Path(".venv-vllm/bin/vllm")
    if not vllm.exists():
        return None
    return VLLMEngine.from_settings(resolved, Settings(vllm_command=str(vllm.resolve())))


def run(kind: str, model: str, rounds: int) -> dict | None:
    resolved = resolve(model)
    engine = make_engine(kind, resolved)
    if engine is None:
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store.db")
            registry = AdapterRegistry(Path(tmp) / "adapters")
            trainer = Trainer(store, registry, resolved, engine=engine, steps_per_feedback=1)
            end_to_end, swaps = [], []
            for i in range(rounds):
                queue_feedback(store, engine, [f"Answer with digits only, separated by commas. ({i})"])
                started = time.perf_counter()
                trainer.train_pending()
                end_to_end.append(time.perf_counter() - started)
            versions = [v.version for v in registry.list()]
            for i in range(rounds):
                name = versions[i % len(versions)]
                swaps.append(engine.load_adapter(registry.path(name), name))
            started = time.perf_counter()
            trainer.rollback(versions[0])
            rollback = time.perf_counter() - started
            store.close()
        return {"feedback_to_live_s": statistics.median(end_to_end), "swap_s": statistics.median(swaps),
                "rollback_s": rollback}
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--engines", nargs="+", default=["embedded", "vllm"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'engine':9} {'feedback→live s':>16} {'swap ms':>9} {'rollback ms':>12}")
    for kind in args.engines:
        result = run(kind, args.model, args.rounds)
        if result is None:
            print(f"{kind:9} skipped: run `make vllm` first")
            continue
        print(f"{kind:9} {result['feedback_to_live_s']:16.2f} {result['swap_s'] * 1000:9.1f} "
              f"{result['rollback_s'] * 1000:12.1f}")


if __name__ == "__main__":
    main()
