"""`continualcode bench learn|discover|agent`: the benchmarks' command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from continualcode.config import Settings, UsageError
from continualcode.evals.learning_bench import (
    DEFAULT_METHODS,
    DEFAULT_SCENARIOS,
    METHODS,
    SYSTEMS,
    agent_system_prompt,
    load_scenarios,
    resumable_results,
    reusable_results,
    run_bench,
    with_system,
)
from continualcode.evals.learning_tables import render_markdown, render_tables
from continualcode.learning.types import FOLLOWUP_TEMPLATES

if TYPE_CHECKING:  # torch loads only when a bench runs, not when the CLI parser is built
    from continualcode.evals.learning_methods import TrainSettings


def register_bench(parser: argparse.ArgumentParser) -> None:
    from continualcode.commands.bench_agent import register_agent
    from continualcode.commands.common import add_common_flags
    from continualcode.commands.discover import register_arguments as register_discover

    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    register_discover(actions.add_parser("discover", help="sdpo vs best-of-k vs multi-turn on HumanEval (docs/discovery.md)"))
    register_agent(actions.add_parser("agent", help="does the agent fix real bugs? resolve rate (docs/agent.md)"))
    parser = actions.add_parser("learn", help="learn: the learning benchmark (docs/learning.md)")
    add_common_flags(parser, argparse.SUPPRESS)
    parser.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS, help="scenario JSONL file")
    parser.add_argument("--method", action="append", choices=METHODS, default=None,
                        help="method to run (repeatable; default: base, icl, icl-instruction, sdpo, sft; icl-prefix shows the "
                        "feedback before the request)")
    parser.add_argument("--only", action="append", default=None, metavar="ID", help="run only this scenario (repeatable)")
    parser.add_argument("--steps-per-feedback", type=int, default=None,
                        help="SDPO/SFT steps per train item, per round with --rounds (default: preset)")
    parser.add_argument("--samples", type=int, default=4, help="answers sampled per eval/general item")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's LoRA preset)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="SDPO alpha, 0 = forward KL, 1 = reverse KL (default: the model's preset)")
    parser.add_argument("--teacher", choices=["ema", "trust_region", "base", "live"], default=None)
    levers = parser.add_argument_group("feedback-event recipe (issue 15; each lever one flag, docs/sdpo.md)")
    levers.add_argument("--support", choices=["student", "union", "full"], default=None,
                        help="token ids the divergence compares on (default: the model's preset)")
    levers.add_argument("--rollouts", type=int, default=0, metavar="G",
                        help="fresh responses sampled per round for the judged prompt (default 0: y only)")
    levers.add_argument("--rounds", type=int, default=1, metavar="R",
                        help="rounds of sampling + --steps-per-feedback steps (default 1)")
    levers.add_argument("--expand", type=int, default=0, metavar="N",
                        help="other prompts the feedback is distilled on: earlier train prompts, then "
                        "model-written ones (default 0)")
    levers.add_argument("--teacher-samples", type=float, default=None, metavar="F",
                        help="fraction of the G responses sampled from the teacher context (default: the "
                        "model's preset; "
                        "with G = 0, F > 0 adds one per round)")
    levers.add_argument("--replay", action=argparse.BooleanOptionalAction, default=None,
                        help="replay general prompts against the pre-update weights (forgetting control; "
                        "default: the model's preset)")
    levers.add_argument("--replay-weight", type=float, default=None, metavar="W",
                        help="with --replay: loss = mean over the feedback's tokens + W x mean over the replay "
                        "tokens (default: SDPOConfig, 1.0)")
    levers.add_argument("--cache-teacher", action="store_true",
                        help="one teacher pass per round instead of per step (EMA moves at the round's end)")
    levers.add_argument("--gate", action="store_true",
                        help="after each sdpo event, the REPL's promotion gate against the weights before it; "
                        "a rejected event is undone (what the REPL would serve)")
    levers.add_argument("--gate-threshold", type=float, default=None, metavar="T",
                        help="with --gate: largest allowed drop of the gate's pass rate (default: the setting "
                        "gate_threshold, 0.15)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--system", choices=SYSTEMS, default="none",
                        help="none: the scenarios as written; agent: every conversation under the REPL's system "
                        "prompt (its tools and call format), the conditions of a correction given in the REPL")
    parser.add_argument("--followup-template", choices=FOLLOWUP_TEMPLATES, default="hindsight",
                        help="teacher template of followup feedback (default hindsight, as every table in docs/learning.md; "
                        "prefix, the REPL's default: the feedback before the request)")
    parser.add_argument("--temperature", type=float, default=0.3,
                        help="sampling temperature for train and eval answers (default 0.3: near the REPL's 0.2, "
                        "with some spread between the samples; at 0.7 SmolLM2 is right about France 1 time in 4)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of tables")
    parser.add_argument("--markdown", action="store_true", help="print the numbers as markdown tables")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep the scenarios already in --out (the report is "
                        "saved after every scenario) when every setting matches")
    parser.add_argument("--baseline", type=Path, default=None, metavar="REPORT.json",
                        help="reuse base/icl numbers from an earlier --out report sampled the same way "
                        "(they do not depend on lr or steps; saves half the time when tuning)")


def train_settings(args: argparse.Namespace, model_name: str) -> TrainSettings:
    """The bench's training settings: flags over the model's LoRA preset over SDPOConfig defaults."""
    from continualcode.adapters.presets import preset_for
    from continualcode.evals.learning_methods import TrainSettings
    from continualcode.learning.types import SDPOConfig

    preset, defaults = preset_for(model_name), SDPOConfig()
    settings = TrainSettings(
        steps_per_feedback=args.steps_per_feedback or preset.steps_per_feedback,
        learning_rate=args.lr if args.lr is not None else preset.learning_rate,
        alpha=args.alpha if args.alpha is not None else preset.divergence_alpha,
        teacher=args.teacher or defaults.teacher,
        teacher_update_rate=defaults.teacher_update_rate,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        support=args.support or preset.divergence_support,
        rollouts=args.rollouts, rounds=args.rounds, expand=args.expand,
        teacher_samples=preset.learn_teacher_samples if args.teacher_samples is None else args.teacher_samples,
        replay=preset.learn_replay if args.replay is None else args.replay,
        cache_teacher=args.cache_teacher,
        replay_weight=args.replay_weight if args.replay_weight is not None else defaults.replay_weight,
        system=args.system, followup_template=args.followup_template, gate=args.gate,
        gate_threshold=args.gate_threshold if args.gate_threshold is not None else TrainSettings.gate_threshold,
    )
    if args.gate_threshold is not None and not (args.gate and 0.0 <= args.gate_threshold <= 1.0):
        raise UsageError("bench learn: --gate-threshold needs --gate and a value in [0, 1]")
    try:
        settings.recipe(), settings.sdpo_config()
    except ValueError as exc:
        raise UsageError(f"bench learn: {exc}") from exc
    return settings


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "agent":
        from continualcode.commands.bench_agent import cmd_bench_agent

        return cmd_bench_agent(args, settings)
    if args.action == "discover":
        from continualcode.commands.discover import cmd_discover

        return cmd_discover(args, settings)
    if args.samples < 1 or args.max_new_tokens < 1:
        raise UsageError("--samples and --max-new-tokens must be at least 1")
    if args.resume and not args.out:
        raise UsageError("--resume needs --out FILE: the report it continues")
    scenarios = load_scenarios(args.scenarios, args.only)
    if args.system == "agent":
        scenarios = with_system(scenarios, agent_system_prompt())
    methods = list(dict.fromkeys(args.method or DEFAULT_METHODS))
    from continualcode.evals.learning_methods import load_learner

    learner = load_learner(settings.model, seed=args.seed)
    train = train_settings(args, learner.model_name)
    reused = None
    if args.baseline:
        reused = reusable_results(args.baseline, learner.model_name, scenarios, samples=args.samples, seed=args.seed,
                                  settings=train)
    from continualcode.atomic import atomic_write

    done = None
    if args.resume:
        done = resumable_results(args.out, learner.model_name, scenarios, methods, samples=args.samples,
                                 seed=args.seed, settings=train)

    def save(report: dict) -> None:
        if args.out:
            atomic_write(args.out, json.dumps(report, indent=2).encode())

    report = run_bench(learner, scenarios, methods, train, samples=args.samples, seed=args.seed, reused=reused,
                       done=done, checkpoint=save, log=lambda line: print(line, file=sys.stderr, flush=True))
    save(report)
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.markdown:
        print(render_markdown(report))
    else:
        render_tables(report)
    return 0
