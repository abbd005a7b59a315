"""The pre-commit checks: what is staged, a checkout of it, and the configured checks run there."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from continualcode.config import Settings
from continualcode.hooks.install import HookError

CHECK_TIMEOUT_S = 600.0
"""Seconds before a check's whole process group is killed (ToolConfig.test_timeout's default)."""


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


def run_check(name: str, command: str, cwd: Path, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Run one check with bash in its own process group (killed whole on timeout)."""
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=command_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        note = ""
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        note = f"\n[killed after {timeout:g} s]"
    text = output.decode("utf-8", errors="replace") + note
    ok = proc.returncode == 0 and not note
    return CheckResult(name, command, ok, proc.returncode, text, time.monotonic() - start)


def command_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}


def run_checks(repo: Path, settings: Settings, tree: Path) -> list[CheckResult]:
    """Every configured check on the staged `tree`; stops at the first failure."""
    results = []
    for name, command in check_commands(repo, settings):
        results.append(run_check(name, command, tree))
        if not results[-1].ok:
            break
    return results


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise HookError(f"git {args[0]} failed in {repo}: {(done.stderr or done.stdout).strip()}")
    return done
