"""`continualcode solve TASK --check CMD`: the command line of continualcode.solve."""

from __future__ import annotations

import argparse
import json

from continualcode.adapters.registry import AdapterRegistry
from continualcode.commands.common import repo_of
from continualcode.config import Settings, UsageError
from continualcode.engines.factory import make_engine, serve_live
from continualcode.paths import adapters_dir
from continualcode.solve.solver import SolveOutcome, add_arguments, run_solve
from continualcode.store.db import Store
from continualcode.ui.console import SafeConsole
from continualcode.ui.solve_view import TerminalUI, summary


def register_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout")


def cmd_solve(args: argparse.Namespace, settings: Settings) -> int:
    if not args.task.strip() or not args.check.strip():
        raise UsageError('solve needs a task and a check: continualcode solve "TASK" --check "COMMAND"')
    if args.budget < 1:
        raise UsageError("--budget must be at least 1")
    repo = repo_of(args)
    console = SafeConsole(stderr=True)
    engine = make_engine(settings, repo)
    # Read the registry only if it exists: a solve writes nothing of the user's until they choose.
    registry = AdapterRegistry.for_repo(repo) if adapters_dir(repo).is_dir() else None
    if registry is not None:
        serve_live(engine, registry)
    try:
        report, code = run_solve(repo, settings, args, engine, registry, TerminalUI(console),
                                 user_store=lambda: Store.for_repo(repo))
    finally:
        engine.close()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        console.print(summary(SolveOutcome.from_json(report), report))
    return code
