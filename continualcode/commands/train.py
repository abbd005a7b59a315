"""`continualcode train`: run SDPO steps on every pending example now (the scriptable /train)."""

from __future__ import annotations

import argparse

from continualcode.adapters.registry import AdapterRegistry
from continualcode.commands.adapters import _repo
from continualcode.commands.common import print_json
from continualcode.config import EXIT_FAILED, EXIT_OK, Settings
from continualcode.store.db import Store


def register_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None, help="at most N batches (default: all pending)")
    p.add_argument("--retry-failed", action="store_true", help="queue failed examples again first")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from continualcode.learning.trainer import Trainer
    from continualcode.models import resolve

    repo = _repo(args)
    store = Store.for_repo(repo)
    if args.retry_failed:
        store.requeue_failed()
    if store.queue_length() == 0:
        print_json({"batches": []}) if args.json else print("nothing pending")
        return EXIT_OK
    from continualcode.learning.gate import gate_for

    trainer = Trainer(store, AdapterRegistry.for_repo(repo), resolve(settings.model), dtype=settings.dtype,
                      steps_per_feedback=settings.steps_per_feedback, gate=gate_for(settings))
    if settings.learning_rate is not None:
        trainer.config.learning_rate = settings.learning_rate
    results = trainer.train_pending(args.limit)
    if args.json:
        print_json({"batches": results, "live": trainer.status().live_version})
    else:
        for r in results:
            if "version" in r:
                print(f"examples {r['examples']} -> {r['version']} ({r['decision']}), loss {r['metrics']['loss']:.4f}")
            else:
                print(f"examples {r['examples']}: {r.get('skipped') or r.get('error')}")
    return EXIT_FAILED if any("error" in r for r in results) else EXIT_OK
