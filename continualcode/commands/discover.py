"""`continualcode bench discover`: sdpo vs best-of-k vs multi-turn on HumanEval (docs/discovery.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from continualcode.engines.base import SamplingParams
from continualcode.evals.discovery import (
    METHODS,
    Attempt,
    Discovery,
    Run,
    append_run,
    hard_problems,
    load_runs,
    parse_problems,
    screen,
)
from continualcode.evals.humaneval import ProblemError, select
from continualcode.learning.task_adapter import TaskAdapter
from continualcode.ui.console import SafeConsole


def register_arguments(p: argparse.ArgumentParser) -> None:
    from continualcode.commands.common import add_common_flags

    add_common_flags(p, argparse.SUPPRESS)  # `bench discover --model X` as well as `--model X bench discover`
    p.add_argument("--problems", default="humaneval:hard",
                   help="humaneval (all 164), humaneval:IDS (e.g. 0,5,10-14) or humaneval:hard (default)")
    p.add_argument("--budget", type=int, default=4, help="attempts per problem and seed (k)")
    p.add_argument("--seeds", type=int, default=2, help="independent runs per problem and method")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    p.add_argument("--limit", type=int, default=None, help="use at most N problems (after the hard filter)")
    p.add_argument("--screen-pool", default=None, metavar="IDS",
                   help="with :hard, screen only these problems (default: all 164)")
    p.add_argument("--screen-samples", type=int, default=4, help="with :hard, base-model samples per problem")
    p.add_argument("--hard-rate", type=float, default=0.25,
                   help="with :hard, keep problems whose screening pass rate is at most this")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=320)
    p.add_argument("--steps", type=int, default=None, help="SDPO steps after each failed attempt (default: preset)")
    p.add_argument("--lr", type=float, default=None, help="SDPO learning rate (default: the LoRA preset's)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per sandboxed test run")
    p.add_argument("--out", type=Path, default=None,
                   help="results file (JSON lines); runs already in it are not run again")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="write discovery@k curves here")


def cmd_discover(args: argparse.Namespace, settings) -> int:
    
    from continualcode.config import UsageError
    from continualcode.evals.discovery_report import plot, summarize, summary_table

    console = SafeConsole(stderr=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"--methods: unknown {unknown or 'empty'}; choose from {', '.join(METHODS)}")
    if args.budget < 1 or args.seeds < 1:
        raise UsageError("--budget and --seeds must be at least 1")
    try:
        pool, hard = parse_problems(args.problems)
        if hard and args.screen_pool:
            pool = select({p.task_id: p for p in pool}, args.screen_pool)
    except ProblemError as exc:
        raise UsageError(str(exc)) from exc
    engine, adapter = _load(settings, args, "sdpo" in methods)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    problems = pool
    if hard:
        from continualcode.models import cache_root

        cache = cache_root() / "humaneval-screen" / f"{engine.model_name}.json"
        console.print(f"screening {len(pool)} problem(s), {args.screen_samples} samples each (cache {cache})")
        screened = screen(engine, pool, samples=args.screen_samples, sampling=sampling, cache=cache,
                          timeout=args.timeout, on_problem=lambda p, e: console.print(
                              f"  {p.task_id}: {e['passed']}/{e['samples']} passed"))
        problems = hard_problems(pool, screened, args.hard_rate)
        if not problems:
            raise UsageError(f"no screened problem has a pass rate <= {args.hard_rate}; raise --hard-rate")
    problems = problems[: args.limit] if args.limit else problems
    console.print(f"{len(problems)} problem(s): {', '.join(p.task_id for p in problems)}")
    runs = load_runs(args.out) if args.out else []
    done = {(r.task_id, r.seed, r.method) for r in runs if r.budget == args.budget}
    runs = [r for r in runs if r.budget == args.budget and r.task_id in {p.task_id for p in problems}]

    def report(run: Run, attempt: Attempt) -> None:
        learn = attempt.learn or {}
        extra = f" · learn {attempt.learn_s:.1f}s loss {learn.get('loss', 0):.4f}" if learn else ""
        console.print(f"{run.task_id} seed {run.seed} {run.method:10} attempt {attempt.number}/{run.budget} "
                      f"{attempt.status:7} gen {attempt.generate_s:.1f}s{' (shared)' if attempt.shared else ''}"
                      f"{extra}{' · ' + learn['rolled_back'] if learn.get('rolled_back') else ''}")

    bench = Discovery(engine, adapter, budget=args.budget, sampling=sampling, timeout=args.timeout, on_attempt=report)
    try:
        for problem in problems:
            for seed in range(args.seeds):
                for method in methods:
                    if (problem.task_id, seed, method) in done:
                        continue
                    run = bench.run(problem, seed, method)
                    runs.append(run)
                    if args.out:
                        append_run(args.out, run)
    finally:
        if adapter is not None:
            adapter.close()
    summary = summarize(runs, args.budget, methods)
    summary["config"] = {"model": engine.model_name, "problems": [p.task_id for p in problems],
                         "budget": args.budget, "seeds": args.seeds, "temperature": args.temperature,
                         "top_p": args.top_p, "max_new_tokens": args.max_new_tokens,
                         "sdpo_steps": adapter.steps if adapter else None,
                         "sdpo_lr": adapter.config.learning_rate if adapter else None}
    if args.plot:
        plot(summary, args.plot)
        console.print(f"plot written to {args.plot}")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        SafeConsole().print(summary_table(summary))
    return 0


def _load(settings, args, learn: bool):
    from continualcode.engines.embedded import EmbeddedEngine
    from continualcode.learning.task_adapter import discovery_config
    from continualcode.models import resolve

    if settings.engine != "embedded":
        print("continualcode: bench discover runs on the embedded engine", file=sys.stderr)
    resolved = resolve(settings.model)
    engine = EmbeddedEngine(resolved, dtype=settings.dtype)
    adapter = None
    if learn:
        from continualcode.adapters.presets import preset_for

        preset = preset_for(resolved.name)
        adapter = TaskAdapter(resolved, engine=engine, registry=None, preset=preset, steps=args.steps,
                              config=discovery_config(args.lr or preset.learning_rate), dtype=settings.dtype)
    return engine, adapter
