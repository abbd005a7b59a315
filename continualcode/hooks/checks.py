"""The pre-commit checks: what is staged, a checkout of it, and the configured checks run there."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from continualcode.config import Settings
from continualcode.hooks.install import HookError
from continualcode.process import run_command, scrub_env

CHECK_TIMEOUT_S = 600.0
"""Seconds before a check, and every process it started, is killed (ToolConfig.test_timeout's default)."""
CHECK_OUTPUT_LIMIT = 64_000
"""Bytes of a check's output kept, head and tail (feedback keeps only the last few thousand characters)."""


GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR",
                     "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE")
"""Set by git for the hook; a check (or the agent's tests) running git with them would write
into the commit's index, so they are removed from every command's environment."""


@dataclass
class CheckResult:
    name: str
    command: str
    ok: bool
    exit_code: int | None
    output: str
    seconds: float


def staged_paths(repo: Path) -> list[str]:
    """Paths the commit changes (added, modified, deleted, renamed), repo-relative."""
    out = git(repo, "diff", "--cached", "--name-only", "-z", "--no-renames").stdout
    return [p for p in out.split("\0") if p]


def check_commands(repo: Path, settings: Settings) -> list[tuple[str, str]]:
    """(name, command) for each configured check; pytest is detected on the real repo (its .venv)."""
    from continualcode.tools.shell import detect_test_command

    checks = []
    tests = settings.test_command or detect_test_command(repo)
    if tests:
        checks.append(("tests", tests))
    if settings.lint_command:
        checks.append(("lint", settings.lint_command))
    return checks


@contextmanager
def staged_tree(repo: Path) -> Iterator[Path]:
    """A temporary checkout of the index (what the commit will contain), removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="continualcode-hook-"))
    try:
        git(repo, "checkout-index", "--all", f"--prefix={tmp}/")
        venv = repo / ".venv"
        if venv.is_dir() and not (tmp / ".venv").exists():
            (tmp / ".venv").symlink_to(venv)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_check(name: str, command: str, cwd: Path, timeout: float = CHECK_TIMEOUT_S,
              env_allow: tuple[str, ...] | list[str] = ()) -> CheckResult:
    """Run one check through the process runner: a passing check that leaves a background process
    still passes (the process is stopped and named); a timeout stops everything the check started."""
    done = run_command(command, cwd, env=command_env(env_allow), timeout=timeout, output_limit=CHECK_OUTPUT_LIMIT)
    text = "\n".join(part for part in (done.output.rstrip("\n"), done.leftovers) if part)
    return CheckResult(name, command, done.ok, done.exit_code, text, done.duration)


def command_env(env_allow: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """The checks' environment: without git's hook variables, and without secrets (like run_tests)."""
    return scrub_env({k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}, env_allow)


def run_checks(repo: Path, settings: Settings, tree: Path) -> list[CheckResult]:
    """Every configured check on the staged `tree`; stops at the first failure."""
    results = []
    for name, command in check_commands(repo, settings):
        results.append(run_check(name, command, tree, env_allow=settings.env_allow))
        if not results[-1].ok:
            break
    return results


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """git in ``repo``; paths are literal (a file named `:(glob)**` is not a pathspec for every file)."""
    done = subprocess.run(["git", "--literal-pathspecs", *args], cwd=repo, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise HookError(f"git {args[0]} failed in {repo}: {(done.stderr or done.stdout).strip()}")
    return done
