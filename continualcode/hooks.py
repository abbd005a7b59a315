"""Git hooks: run the checks on what is about to be committed, and learn from the result.

`continualcode hook install [pre-commit] [--force] [--chain] [--fix]` writes
the hook script (hook_install.py); `continualcode hook run pre-commit [--fix]`
is what it runs:

1. Nothing staged: exit 0 at once (no store, no model, no checks).
2. The index is checked out into a temporary directory (`git checkout-index`)
   and the configured checks (`test_command`, or detected pytest, then
   `lint_command`) run there. This checks exactly what the commit will
   contain, and never touches the user's work tree or stash: the alternative,
   `git stash --keep-index`, rewrites the work tree under the user's editor
   and loses work when the unstash conflicts. The cost: files that are not in
   git are absent from the checkout; the repo's `.venv` is linked in, since
   tests need it, and commands should use absolute paths to anything else.
3. The agent turns that produced the staged changes are found in the store:
   successful write_file/edit calls on a staged path, made after that path was
   last committed, whose written text is still in the staged file; the most
   recent such turn per path is judged. A failure becomes "hook" feedback on
   it (a reprompt training example, trained by the next session's trainer); a
   pass records "hook_pass" and offers the passing turn as the solution s of
   earlier hook failures on the same paths.
4. With `--fix`, the agent runs headlessly (may edit, write and run tests) to
   fix the failure; the files it changed are staged when the user had no
   unstaged edits in them, and the checks run again.

Exit 0 when the checks pass, 1 when they fail (git then refuses the commit),
2 on usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TextIO

from .config import Settings
from .hook_install import HOOK_KINDS, HookError, install_hook, uninstall_hook

CHECK_TIMEOUT_S = 600.0
"""Seconds before a check's whole process group is killed (ToolConfig.test_timeout's default)."""
FEEDBACK_OUTPUT_CHARS = 3000
"""Tail of the check output kept in feedback: a small model's context is short, the end matters."""
FIX_TOOLS = ("write_file", "edit", "run_tests")
"""What the agent may do unattended under `--fix`; bash stays refused."""
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR",
                     "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE")
"""Set by git for the hook; a check (or the agent's tests) running git with them would write
into the commit's index, so they are removed from every command's environment."""


# -- checks on the staged tree -------------------------------------------------

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
    out = _git(repo, "diff", "--cached", "--name-only", "-z", "--no-renames").stdout
    return [p for p in out.split("\0") if p]


def check_commands(repo: Path, settings: Settings) -> list[tuple[str, str]]:
    """(name, command) for each configured check; pytest is detected on the real repo (its .venv)."""
    from .tools.shell import detect_test_command

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
        _git(repo, "checkout-index", "--all", f"--prefix={tmp}/")
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


# -- the agent turns behind the staged changes ------------------------------------

@dataclass(frozen=True)
class AgentChange:
    tool_call_id: int
    message_id: int
    path: str
    written: str      # edit: the replacement text; write_file: the content


def agent_changes(store, repo: Path, paths: list[str]) -> list[AgentChange]:
    """Successful write_file/edit calls on `paths`, made since each path was last committed; newest first."""
    wanted = set(paths)
    since = {p: _last_commit_time(repo, p) for p in paths}
    rows = store.db.query("SELECT id, message_id, name, arguments, created FROM tool_calls "
                          "WHERE name IN ('write_file', 'edit') AND ok = 1 ORDER BY id DESC")
    changes = []
    for row in rows:
        args = json.loads(row["arguments"])
        path = posixpath.normpath(str(args.get("path", "")))
        if path not in wanted:
            continue
        created = datetime.fromisoformat(row["created"])
        if since[path] is not None and created < since[path]:
            continue
        written = args.get("replace" if row["name"] == "edit" else "content", "")
        changes.append(AgentChange(row["id"], row["message_id"], path, written))
    return changes


def judged_changes(changes: list[AgentChange], tree: Path) -> list[AgentChange]:
    """The most recent change per path whose written text is still in the staged file."""
    judged, seen = [], set()
    for change in changes:
        if change.path in seen:
            continue
        staged = tree / change.path
        if not staged.is_file():
            continue
        if change.written.strip() and change.written.strip() not in staged.read_text(errors="replace"):
            continue
        seen.add(change.path)
        judged.append(change)
    return judged


def _last_commit_time(repo: Path, path: str) -> datetime | None:
    done = _git(repo, "log", "-1", "--format=%ct", "--", path, check=False)
    stamp = done.stdout.strip()
    return datetime.fromtimestamp(int(stamp), timezone.utc) if done.returncode == 0 and stamp else None


def record_outcome(store, settings: Settings, judged: list[AgentChange], earlier: list[AgentChange],
                   checks: list[CheckResult]) -> list[dict]:
    """Failure: "hook" feedback (queues examples). Pass: "hook_pass", and the passing turn
    becomes the solution of earlier hook failures on the same path. One of each per turn:
    committing the same broken change twice is not twice the evidence."""
    from .feedback import FeedbackRecorder

    recorder = FeedbackRecorder(store, learn=settings.learn)
    failed = next((c for c in checks if not c.ok), None)
    kind = "hook" if failed else "hook_pass"
    recorded = []
    for change in judged:
        if any(f["kind"] == kind for f in store.message_feedback(change.message_id)):
            continue
        text = "pre-commit checks passed on the staged changes" if failed is None else (
            f"The pre-commit checks failed on the staged changes to {change.path}.\n"
            f"{failed.name}: $ {failed.command} (exit code {failed.exit_code})\n{_tail(failed.output)}")
        example = recorder.record(kind, text, change.message_id, tool_call_id=change.tool_call_id)
        recorded.append({"kind": kind, "message_id": change.message_id, "example_id": example})
        if failed is None:
            _offer_solution(store, change, [e for e in earlier if e.path == change.path])
    return recorded


def _offer_solution(store, passing: AgentChange, attempts: list[AgentChange]) -> None:
    """SDPO's solution s: a successful sibling attempt, never a sample's own success."""
    solution = store.message(passing.message_id)["content"]
    for attempt in attempts:
        if attempt.message_id == passing.message_id:
            continue
        for example in store.examples_for_message(attempt.message_id):
            if (example["s"] is None and example["status"] == "pending"
                    and store.feedback(example["feedback_id"])["kind"] == "hook"):
                store.set_example_solution(example["id"], solution)


def _tail(text: str, limit: int = FEEDBACK_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n{text[-limit:]}"


# -- hook run ------------------------------------------------------------------

def run_pre_commit(repo: Path, settings: Settings, *, fix: bool = False, out: TextIO = sys.stderr) -> int:
    """The pre-commit hook: 0 when the checks pass on the staged tree, 1 when they fail."""
    paths = staged_paths(repo)
    if not paths:
        return 0
    if not check_commands(repo, settings):
        print("continualcode: no checks configured (set test_command or lint_command); nothing to run",
              file=out)
        return 0
    checks, judged = _check_and_record(repo, settings, paths, out)
    if all(c.ok for c in checks):
        return 0
    if fix and _fix(repo, settings, paths, checks, out):
        checks, judged = _check_and_record(repo, settings, paths + _newly_staged(repo, paths), out)
        if all(c.ok for c in checks):
            print("continualcode: the agent fixed it; the checks pass", file=out)
            return 0
    print("continualcode: pre-commit checks failed; the commit was stopped. Fix and commit again, or run "
          "`continualcode hook run pre-commit --fix`; `git commit --no-verify` skips the checks.", file=out)
    return 1


def _check_and_record(repo: Path, settings: Settings, paths: list[str], out: TextIO):
    from .store import STORE_DIR, STORE_FILE, Store

    with staged_tree(repo) as tree:
        checks = run_checks(repo, settings, tree)
        for check in checks:
            verdict = "passed" if check.ok else f"FAILED (exit code {check.exit_code})"
            print(f"continualcode: {check.name} {verdict} in {check.seconds:.1f} s: $ {check.command}", file=out)
            if not check.ok:
                print(_tail(check.output, 8000), file=out)
        judged: list[AgentChange] = []
        if (repo / STORE_DIR / STORE_FILE).is_file():  # no store: continualcode never ran here
            with Store.for_repo(repo) as store:
                earlier = agent_changes(store, repo, paths)
                judged = judged_changes(earlier, tree)
                recorded = record_outcome(store, settings, judged, earlier, checks)
            queued = sum(1 for r in recorded if r["example_id"] is not None)
            if judged:
                print(f"continualcode: recorded the result on {len(judged)} agent turn(s)"
                      f"{f'; {queued} training example(s) queued' if queued else ''}", file=out)
    return checks, judged


def _fix(repo: Path, settings: Settings, paths: list[str], checks: list[CheckResult], out: TextIO) -> bool:
    """Let the agent fix the failure headlessly; stage what it changed. True when it changed something."""
    from .headless import run_headless

    failed = next(c for c in checks if not c.ok)
    task = (f"The pre-commit checks failed on the staged changes to {', '.join(paths[:20])}. Fix the code "
            f"so that the checks pass, then run run_tests to confirm.\n$ {failed.command}\n{_tail(failed.output)}")
    dirty_before = set(_unstaged_paths(repo))
    print("continualcode: asking the agent to fix it (--fix)…", file=out)
    fix_settings = dataclasses.replace(settings, auto_commit=False)  # never commit from inside a commit
    with _without_git_location():
        run = run_headless(repo, fix_settings, task, allowed=FIX_TOOLS, start_trainer=False, progress=out)
    changed = sorted({posixpath.normpath(c["args"]["path"]) for c in run.report["tool_calls"]
                      if c["name"] in ("write_file", "edit") and c["ok"]})
    stage = [p for p in changed if p not in dirty_before]
    kept = [p for p in changed if p in dirty_before]
    if stage:
        _git(repo, "add", "--", *stage)
        print(f"continualcode: staged the agent's fix to {', '.join(stage)}", file=out)
    if kept:
        print(f"continualcode: not staged (you have unstaged edits there; review and `git add`): "
              f"{', '.join(kept)}", file=out)
    return bool(stage)


def _unstaged_paths(repo: Path) -> list[str]:
    return [p for p in _git(repo, "diff", "--name-only", "-z").stdout.split("\0") if p]


def _newly_staged(repo: Path, before: list[str]) -> list[str]:
    return [p for p in staged_paths(repo) if p not in before]


@contextmanager
def _without_git_location() -> Iterator[None]:
    """Hide git's hook variables from the in-process agent (its run_tests and bash inherit os.environ)."""
    saved = {k: os.environ.pop(k) for k in GIT_LOCATION_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise HookError(f"git {args[0]} failed in {repo}: {(done.stderr or done.stdout).strip()}")
    return done


# -- command line ----------------------------------------------------------------

def register_hook(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["install", "uninstall", "run"],
                   help="install the hook script, remove it (restoring the hook it displaced), or run the checks now")
    p.add_argument("kind", nargs="?", default="pre-commit", choices=HOOK_KINDS, help="which hook (pre-commit)")
    p.add_argument("--force", action="store_true", help="install: replace a hook continualcode did not write "
                   "(it is backed up)")
    p.add_argument("--chain", action="store_true", help="install: keep the existing hook and run it first")
    p.add_argument("--fix", action="store_true", help="on failure let the agent fix it headlessly, then re-check "
                   "(install: the hook does this on every commit)")


def cmd_hook(args: argparse.Namespace, settings: Settings) -> int:
    from .cli import find_repo_root

    repo = (getattr(args, "repo", None) or find_repo_root(Path.cwd())).resolve()
    if _git(repo, "rev-parse", "--is-inside-work-tree", check=False).stdout.strip() != "true":
        raise HookError(f"{repo} is not a git work tree; hooks need a git repository")
    if args.action == "run":
        if args.force or args.chain:
            raise HookError("--force and --chain go with `hook install`")
        return run_pre_commit(repo, settings, fix=args.fix)
    if args.action == "uninstall":
        if args.force or args.chain or args.fix:
            raise HookError("--force, --chain and --fix go with `hook install`")
        removed = uninstall_hook(repo, args.kind)
        print(f"removed continualcode's hook from {removed.path}"
              + (f"; restored the earlier hook from {removed.restored.name}" if removed.restored else ""))
        return 0
    installed = install_hook(repo, args.kind, force=args.force, chain=args.chain, fix=args.fix)
    print(f"installed {installed.path}" + (f" (runs {installed.chained.name} first)" if installed.chained else "")
          + (f"; the previous hook is saved as {installed.backup.name}" if installed.backup else ""))
    return 0
