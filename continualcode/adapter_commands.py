"""`continualcode adapters list|show|diff|rollback` and `continualcode train`.

The same registry functions back the slash twins (/adapters /diff /rollback
/train); these are the scriptable forms, each with --json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .adapter_view import diff_table, versions_rows, versions_table
from .adapters import AdapterError, AdapterRegistry
from .cli import EXIT_FAILED, EXIT_OK, find_repo_root, print_json
from .config import Settings, UsageError
from .engine import SamplingParams
from .store import Store

DEFAULT_PROBES = (
    "Write a Python function that returns the largest of three numbers.",
    "What does `git stash` do? Answer briefly.",
    "Is 17 a prime number?",
)


def register_adapters(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "diff", "rollback"])
    p.add_argument("versions", nargs="*", help="show V | diff A B | rollback V (v3, 3, live, base)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--probes", type=int, default=3,
                   help="diff: answer N probe prompts with both versions side by side (loads the model; 0 = skip)")


def register_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None, help="at most N batches (default: all pending)")
    p.add_argument("--retry-failed", action="store_true", help="queue failed examples again first")
    p.add_argument("--json", action="store_true", help="print JSON")


def _repo(args) -> Path:
    return (args.repo or find_repo_root(Path.cwd())).resolve()


def _need(args, count: int, usage: str) -> list[str]:
    if len(args.versions) != count:
        raise UsageError(f"usage: continualcode adapters {usage}")
    return args.versions


def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    repo = _repo(args)
    registry = AdapterRegistry.for_repo(repo)
    console = Console()
    try:
        if args.action == "list":
            _need(args, 0, "list")
            if args.json:
                print_json(versions_rows(registry))
            else:
                console.print(versions_table(registry))
        elif args.action == "show":
            (spec,) = _need(args, 1, "show VERSION")
            version = registry.get(spec, verify=True)
            if args.json:
                print_json(version.to_json())
            else:
                console.print(_show_table(version))
        elif args.action == "diff":
            a, b = _need(args, 2, "diff A B")
            store = Store.for_repo(repo)
            probes = _probe_answers(registry, settings, store, a, b, args.probes) if args.probes else []
            if args.json:
                print_json({**registry.diff(a, b).to_json(), "probes": probes})
            else:
                console.print(diff_table(registry, store, a, b))
                if probes:
                    console.print(probe_table(probes, a, b))
        else:
            (spec,) = _need(args, 1, "rollback VERSION")
            started = time.perf_counter()
            target = registry.rollback(spec, reason="continualcode adapters rollback")
            name = target.version if target else "base"
            Store.for_repo(repo).add_adapter_event(name, "rollback", {"reason": "cli"})
            seconds = time.perf_counter() - started
            if args.json:
                print_json({"live": name, "seconds": seconds})
            else:
                console.print(f"live: {name} ({seconds * 1000:.0f} ms); running sessions switch before their next answer")
    except AdapterError as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_OK


def _show_table(version) -> Table:
    table = Table(show_header=False, box=None, title=version.version)
    meta = version.meta
    for key in ("parent", "created", "commit", "base_model", "examples", "metrics", "promotion"):
        table.add_row(key, str(meta.get(key)))
    table.add_row("live", "yes" if version.live else "no")
    return table


def probe_prompts(store: Store | None, count: int) -> list[str]:
    """Recent feedback prompts first (what the user corrected), then fixed general probes."""
    prompts: list[str] = []
    if store is not None:
        for row in store.recent_examples(count):
            users = [m["content"] for m in row["x"] if m["role"] == "user"]
            if users and users[-1] not in prompts:
                prompts.append(users[-1])
    prompts.extend(p for p in DEFAULT_PROBES if p not in prompts)
    return prompts[:count]


def probe_answers(engine, registry: AdapterRegistry, a: str, b: str, prompts: list[str],
                  max_new_tokens: int = 48) -> list[dict]:
    """Greedy answers of versions a and b to each prompt; restores the engine's adapter after."""
    previous = engine.adapter_version
    answers: dict[str, list[str]] = {}
    try:
        for spec in (a, b):
            name = registry.resolve(spec)
            engine.load_adapter(registry.path(name) if name else None, name)
            answers[spec] = [engine.generate([{"role": "user", "content": p}],
                                             SamplingParams(max_new_tokens=max_new_tokens)).text for p in prompts]
    finally:
        engine.load_adapter(registry.path(previous) if previous else None, previous)
    return [{"prompt": p, a: answers[a][i], b: answers[b][i]} for i, p in enumerate(prompts)]


def _probe_answers(registry, settings, store, a, b, count) -> list[dict]:
    from .session import make_engine

    engine = make_engine(settings, registry.repo_root or Path.cwd())
    try:
        return probe_answers(engine, registry, a, b, probe_prompts(store, count))
    finally:
        engine.close()


def probe_table(probes: list[dict], a: str, b: str) -> Table:
    table = Table("prompt", a, b, title="probe answers", show_lines=True)
    for row in probes:
        table.add_row(row["prompt"], row[a], row[b])
    return table


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from .models import resolve
    from .trainer import Trainer

    repo = _repo(args)
    store = Store.for_repo(repo)
    if args.retry_failed:
        store.requeue_failed()
    if store.queue_length() == 0:
        print_json({"batches": []}) if args.json else print("nothing pending")
        return EXIT_OK
    from .gate import gate_for

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
