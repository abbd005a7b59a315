"""`continualcode bench agent`: the agent benchmark's command line (continualcode.evals.agent_bench)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

from continualcode.atomic import atomic_write
from continualcode.commands.common import add_common_flags
from continualcode.config import EXIT_OK, Settings, UsageError
from continualcode.engines.factory import make_engine
from continualcode.evals.agent_bench import (
    DEFAULT_TASKS,
    BenchContext,
    learn_state_dir,
    load_tasks,
    run_bench,
    shared_state,
)
from continualcode.ui.console import SafeConsole, plain


def register_agent(parser: argparse.ArgumentParser) -> None:
    add_common_flags(parser, argparse.SUPPRESS)
    parser.add_argument("--tasks", type=Path, default=DEFAULT_TASKS, help="task JSONL file (bench/tasks/README.md)")
    parser.add_argument("--only", action="append", default=None, metavar="ID", help="run only this task (repeatable)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="the first N tasks only")
    parser.add_argument("--max-turns", type=int, default=None, help="model replies allowed per task (tool loop)")
    parser.add_argument("--learn", dest="bench_learn", action="store_true", default=False,
                        help="run the tasks in order against one store, training between tasks (default: --no-learn)")
    parser.add_argument("--learn-examples", type=int, default=2, metavar="K",
                        help="--learn: examples trained after each task, those with a passing sibling first "
                        "(default 2; 0 = all)")
    parser.add_argument("--learn-solved-only", action="store_true",
                        help="--learn: train only examples whose task had a passing candidate (its solution)")
    parser.add_argument("--no-gate", dest="gate", action="store_false", default=None,
                        help="--learn: publish every version without the promotion gate (setting gate)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (each task derives its own)")
    parser.add_argument("--candidates", type=int, default=None, help="repair candidates per round (setting)")
    parser.add_argument("--rounds", type=int, default=None, help="repair rounds (setting)")
    parser.add_argument("--base-rounds", type=int, default=None,
                        help="repair rounds sampled from the base weights while an adapter is served "
                             "(setting repair_base_rounds)")
    parser.add_argument("--rewrites", type=int, default=None,
                        help="candidates per round written afresh, the suspect's body hidden (setting repair_rewrites)")
    parser.add_argument("--edit-format", choices=["function", "whole", "search_replace", "lines"], default=None,
                        help="how repair candidates are written (setting edit_format)")
    parser.add_argument("--repair-prefix", choices=["name", "bug", "def", "none"], default=None,
                        help="how a function-form candidate starts (setting repair_prefix)")
    parser.add_argument("--no-repair", dest="repair", action="store_false", default=True,
                        help="the tool loop only (the agent before the repair flow)")
    parser.add_argument("--json", dest="bench_json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report (after every task)")
    parser.add_argument("--resume", action="store_true", help="keep the tasks --out already holds (same settings)")


def cmd_bench_agent(args: argparse.Namespace, settings: Settings) -> int:
    if args.resume and not args.out:
        raise UsageError("--resume needs --out FILE: the report it continues")
    if args.learn_examples < 0:
        raise UsageError(f"--learn-examples must be 0 (all) or more, got {args.learn_examples}")
    learn_examples = args.learn_examples or None  # None: every example
    tasks = load_tasks(args.tasks, args.only)[: args.limit or None]
    settings = dataclasses.replace(
        settings, learn=args.bench_learn, learn_repair=args.bench_learn,  # --learn measures learning from repairs
        repair=args.repair, max_new_tokens=min(settings.max_new_tokens, 512),
        **{k: v for k, v in (("repair_candidates", args.candidates), ("repair_rounds", args.rounds),
                             ("repair_base_rounds", args.base_rounds), ("repair_rewrites", args.rewrites),
                             ("edit_format", args.edit_format), ("repair_prefix", args.repair_prefix),
                             ("gate", args.gate))
           if v is not None})
    record = {"model": settings.model, "engine": settings.engine, "tasks_file": str(args.tasks), "seed": args.seed,
              "learn": settings.learn, "repair": settings.repair, "candidates": settings.repair_candidates,
              "rounds": settings.repair_rounds, "rewrites": settings.repair_rewrites, "edit_format": settings.edit_format,
              "repair_prefix": settings.repair_prefix, "max_turns": args.max_turns,
              "temperature": settings.temperature,
              **({"learn_examples": learn_examples, "gate": settings.gate, "solved_only": args.learn_solved_only,
                  "base_rounds": settings.repair_base_rounds}
                 if settings.learn else {})}
    done = _resumable(args.out, record) if args.resume else None
    kept_state = learn_state_dir(args.out.resolve()) if settings.learn and args.out else None
    if kept_state is not None:
        _prepare_learn_state(kept_state, resuming=bool(done))
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    engine = make_engine(settings)
    # Without --out, the shared state of --learn lives in a scratch directory removed at the end.
    scratch = Path(tempfile.mkdtemp(prefix="continualcode-agent-bench-")) if settings.learn and not kept_state else None
    context = BenchContext(engine=engine, settings=settings, learn_examples=learn_examples,
                           solved_only=args.learn_solved_only)
    try:
        if settings.learn:
            from continualcode.adapters.registry import AdapterRegistry
            from continualcode.session import make_trainer
            from continualcode.store.db import Store

            context.state = kept_state or shared_state(scratch)
            store = Store(context.state / "store.db")
            registry = AdapterRegistry(context.state / "adapters")
            context.trainer = make_trainer(store, registry, settings, engine)  # run_bench trains between tasks

        def save(report: dict) -> None:
            if args.out:
                atomic_write(args.out, json.dumps(report, indent=2).encode())

        report = run_bench(tasks, context, seed=args.seed, max_turns=args.max_turns, done=done, checkpoint=save,
                           log=log, settings_record=record)
        save(report)
    finally:
        if context.trainer is not None:
            context.trainer.stop(timeout=120)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        engine.close()
    if args.bench_json:
        print(json.dumps(report, indent=2))
    else:
        render_report(report)
    return EXIT_OK


def _prepare_learn_state(state: Path, *, resuming: bool) -> None:
    """--learn --out: a fresh run starts an empty state beside the report; --resume needs the one the
    finished tasks trained (without it the rest would be answered by the base model)."""
    if resuming:
        if not (state / "store.db").is_file():
            raise UsageError(f"--resume --learn: the store and adapters of the finished tasks are not in {state}; "
                             "run again without --resume")
        return
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(mode=0o700, parents=True)


def _resumable(path: Path, record: dict) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: cannot read {path} ({exc})") from exc
    if not _same_settings(earlier.get("settings") or {}, record):
        raise UsageError(f"--resume: {path} was made with other settings ({earlier.get('settings')}); "
                         f"this run: {record}")
    return {t["id"]: t for t in earlier.get("tasks", [])}


def _same_settings(earlier: dict, record: dict) -> bool:
    """Equal settings; the task file counts by its name, not where the checkout that ran it lies (a run
    started from one checkout resumes from another)."""
    def key(settings: dict) -> dict:
        return {**settings, "tasks_file": Path(str(settings.get("tasks_file", ""))).name}
    return key(earlier) == key(record)


def render_report(report: dict, console=None) -> None:
    from rich.table import Table

    if console is None:  # a report piped to a file keeps its columns whole
        console = SafeConsole()
        if not console.is_terminal:
            console = SafeConsole(width=140)
    summary = report["summary"]
    table = Table("", "tasks", "resolved", "rate (95% CI)", "median s", "turns", "tool calls", "parse failures",
                  "candidates", title=f"bench agent · {report['settings'].get('model')}")
    for name, block in [("all", summary["all"]), ("first half", summary["first_half"]),
                        ("second half", summary["second_half"])] + \
            [(f"  {kind}", b) for kind, b in summary["by_kind"].items()]:
        if not block["tasks"]:
            continue
        low, high = block["ci95"]
        table.add_row(plain(name), str(block["tasks"]), str(block["resolved"]),
                      f"{block['resolve_rate']:.2f} ({low:.2f}-{high:.2f})", f"{block['median_seconds']:.1f}",
                      f"{block['mean_turns']:.1f}", f"{block['mean_tool_calls']:.1f}", str(block["parse_failures"]),
                      f"{block['mean_candidates']:.1f}")
    console.print(table)
    console.print(plain(f"{report['seconds']:.0f} s in all"))
