"""`continualcode adapters list|show|diff|rollback` and `continualcode train`.

The same registry functions back the slash twins (/adapters /diff /rollback
/train); these are the scriptable forms, each with --json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from continualcode.adapters.diff import diff_versions
from continualcode.adapters.registry import AdapterError, AdapterRegistry
from continualcode.commands.common import print_json
from continualcode.config import EXIT_OK, Settings, UsageError
from continualcode.paths import find_repo_root
from continualcode.store.db import Store
from continualcode.ui.adapter_view import (
    diff_table,
    probe_answers,
    probe_prompts,
    probe_table,
    versions_rows,
    versions_table,
)
from continualcode.ui.console import SafeConsole


def register_adapters(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "diff", "rollback"])
    p.add_argument("versions", nargs="*", help="show V | diff A B | rollback V (v3, 3, live, base)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--probes", type=int, default=3,
                   help="diff: answer N probe prompts with both versions side by side (loads the model; 0 = skip)")


def _repo(args) -> Path:
    return (args.repo or find_repo_root(Path.cwd())).resolve()


def _need(args, count: int, usage: str) -> list[str]:
    if len(args.versions) != count:
        raise UsageError(f"usage: continualcode adapters {usage}")
    return args.versions


def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    repo = _repo(args)
    registry = AdapterRegistry.for_repo(repo)
    console = SafeConsole()
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
                print_json({**diff_versions(registry, a, b).to_json(), "probes": probes})
            else:
                console.print(diff_table(registry, store, a, b))
                if probes:
                    console.print(probe_table(probes, a, b))
        else:
            (spec,) = _need(args, 1, "rollback VERSION")
            started = time.perf_counter()
            store = Store.for_repo(repo)  # first: a damaged store stops the rollback before LIVE moves
            target = registry.rollback(spec, reason="continualcode adapters rollback")
            name = target.version if target else "base"
            store.add_adapter_event(name, "rollback", {"reason": "cli"})
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


def _probe_answers(registry, settings, store, a, b, count) -> list[dict]:
    from continualcode.engines.factory import make_engine

    engine = make_engine(settings, registry.repo_root or Path.cwd())
    try:
        return probe_answers(engine, registry, a, b, probe_prompts(store, count))
    finally:
        engine.close()
