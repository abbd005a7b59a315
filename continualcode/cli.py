"""Command line: `python -m continualcode [flags]` opens the REPL; subcommands do the rest.

Each subcommand is one small function registered in `COMMANDS`; flags shared by
all of them (model, engine, repo) live on the top-level parser and become
`Settings` through `config.load_settings` (flags > repo config > user config >
defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from continualcode import __version__
from continualcode.commands.common import add_common_flags
from continualcode.config import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    Settings,
    UsageError,
    load_settings,
)
from continualcode.engines.base import EngineError
from continualcode.models import ModelError
from continualcode.paths import find_repo_root, repo_config_path
from continualcode.process import scrub_env
from continualcode.store.rows import StoreError


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `argv`, only the subcommands named in it get their arguments.

    Registering a subcommand's arguments imports its module (some import torch),
    so `main` registers just the one being run: the git hook and `--help` start fast.
    """
    parser = argparse.ArgumentParser(
        prog="continualcode",
        description="A terminal coding agent that learns from your feedback while you use it.",
        epilog="Settings precedence: flags > <repo>/.continualcode/config.toml > "
        "~/.config/continualcode/config.toml > defaults.",
    )
    parser.add_argument("--version", action="version", version=f"continualcode {__version__}")
    add_common_flags(parser, None)
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="ID",
                        help="resume a session (the latest when no ID)")
    parser.add_argument("--tui", action="store_true", help="full-screen Textual interface")
    add_print_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (register, _handler, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_common_flags(command, argparse.SUPPRESS)  # `continualcode adapters list --repo X` works too
        if argv is None or name in argv:
            _lazy(register)(command)
    return parser


def add_print_flags(parser: argparse.ArgumentParser) -> None:
    """Headless mode (continualcode.ui.headless): run one task with no prompts and exit."""
    group = parser.add_argument_group("headless (-p)")
    group.add_argument("-p", "--print", metavar="TASK", default=None,
                       help="run TASK headlessly and exit (0 done and checks pass, 1 failed, 2 usage); "
                       "'-' reads the task from stdin")
    group.add_argument("--json", action="store_true", help="with -p: print one JSON report on stdout")
    group.add_argument("--max-turns", type=int, default=None, metavar="N", help="with -p: model replies allowed")
    group.add_argument("--allow", action="append", default=None, metavar="TOOL",
                       help="with -p: run TOOL without asking (repeatable); other approval-needing calls are refused")
    group.add_argument("--yes", action="store_true", help="with -p: run every tool without asking")
    group.add_argument("--check", metavar="CMD", default=None,
                       help="with -p: the command that must pass; the agent runs it first and tries candidate "
                       "fixes until it passes (default: the test command, configured or detected)")
    group.add_argument("--wait-train", nargs="?", type=float, const=900.0, default=None, metavar="SECONDS",
                       help="with -p: wait for queued training steps before exiting (default limit 900 s)")


# -- subcommands -------------------------------------------------------------


COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: ("module:function" that adds its arguments, "module:function" handler, one-line help);
    # both are imported only when needed, so `--help` and the REPL start without loading torch twice.
    "models": ("continualcode.commands.models:register_models", "continualcode.commands.models:cmd_models",
               "list or prepare the bundled models"),
    "adapters": ("continualcode.commands.adapters:register_adapters", "continualcode.commands.adapters:cmd_adapters",
                 "list, show, diff or roll back adapter versions"),
    "train": ("continualcode.commands.train:register_train", "continualcode.commands.train:cmd_train",
              "run SDPO steps on pending feedback now"),
    "hook": ("continualcode.commands.hook:register_hook", "continualcode.commands.hook:cmd_hook",
             "install or run the git pre-commit hook (checks the staged tree, learns from failures)"),
    "credit": ("continualcode.commands.credit:register_arguments", "continualcode.commands.credit:cmd_credit",
               "show one reply's tokens coloured by the self-teacher's advantage (--json for numbers)"),
    "bench": ("continualcode.commands.bench:register_bench", "continualcode.commands.bench:cmd_bench",
              "bench learn: does feedback stick on held-out prompts? (base, icl, sdpo, sft); "
              "bench agent: does the agent fix real bugs?; "
              "bench discover: sdpo vs best-of-k vs multi-turn on HumanEval"),
    "solve": ("continualcode.commands.solve:register_arguments", "continualcode.commands.solve:cmd_solve",
              "attempt one task in a scratch copy until --check passes, learning between attempts"),
    "report": ("continualcode.commands.report:register_report", "continualcode.commands.report:cmd_report",
               "learning curves from the store: loss, advantage, gate scores, feedback (--out FILE.png)"),
    "trust": ("continualcode.commands.trust:register_trust", "continualcode.commands.trust:cmd_trust",
              "let this repository's .continualcode/config.toml name commands (test, lint, vllm) and env_allow"),
}


def _lazy(spec: str) -> Callable:
    import importlib

    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def settings_from_args(args: argparse.Namespace, repo: Path) -> Settings:
    flags = {key: getattr(args, key, None) for key in
             ("model", "engine", "dtype", "vllm_url", "vllm_command", "script", "learn")}
    return load_settings(repo, flags)


def entry() -> None:
    """`python -m continualcode` and the `continualcode` script: main(), in a process without secrets.

    A command the agent runs can read `/proc/<agent pid>/environ`, which shows the
    environment this process was started with, whatever `os.environ` says later. So
    when variables that look like credentials (`continualcode.process.is_secret`)
    are set and not listed in `env_allow`, the process first executes itself again
    without them (once: the second start finds none). Tests call `main(argv)`.
    """
    kept = scrub_env(dict(os.environ), _env_allow(sys.argv[1:]))
    if len(kept) < len(os.environ):
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], kept)
    sys.exit(main())


def _env_allow(argv: list[str]) -> list[str]:
    """`env_allow` from the config files (before argparse: a broken config is main()'s to report)."""
    repo = None
    for index, arg in enumerate(argv):
        if arg == "--repo" and index + 1 < len(argv):
            repo = Path(argv[index + 1])
        elif arg.startswith("--repo="):
            repo = Path(arg.partition("=")[2])
    try:
        return load_settings(repo or find_repo_root(Path.cwd())).env_allow
    except (ConfigError, OSError, ValueError):
        return []


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        repo = (args.repo or find_repo_root(Path.cwd())).resolve()
        if not repo.is_dir():
            raise UsageError(f"--repo {repo}: not a directory")
        settings = settings_from_args(args, repo)
        if settings.ignored_repo_keys and args.command != "trust":
            print(f"continualcode: ignoring {', '.join(settings.ignored_repo_keys)} in {repo_config_path(repo)}: "
                  "a repository's config may name commands only once you trust it (`continualcode trust`)",
                  file=sys.stderr)
        if args.command and args.print is not None:
            raise UsageError(f"-p runs a task headlessly; it cannot be combined with the {args.command!r} command")
        if args.command:  # subcommands own their flags (several take --json)
            return _lazy(COMMANDS[args.command][1])(args, settings) or EXIT_OK
        if args.print is not None or args.json or args.yes or args.allow or args.max_turns is not None \
                or args.wait_train is not None or args.check is not None:
            return _lazy("continualcode.ui.headless:cmd_print")(args, settings, repo)
        from continualcode.ui.repl import run_repl

        return run_repl(repo, settings, resume=args.resume, tui=args.tui)
    except (UsageError, ConfigError, ModelError) as exc:
        print(f"continualcode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        print(f"continualcode: engine error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StoreError as exc:  # damaged, newer or locked store.db: the message says what to do
        print(f"continualcode: store error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # a script asked for JSON: it gets one object
            print(json.dumps({"error": f"store error: {exc}", "exit_code": EXIT_USAGE}))
        return EXIT_USAGE
