"""Git hooks: run the checks on what is about to be committed, and learn from the result.

`continualcode hook install [pre-commit] [--force] [--chain] [--fix]` writes
the hook script (continualcode.hooks.install); `continualcode hook run pre-commit [--fix]`
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
4. With `--fix`, the agent runs headlessly (may edit, write and run tests —
   which can run any code it writes, so it is opt-in) to fix the failure; the files it changed are staged when the user had no
   unstaged edits in them, and the checks run again.

Exit 0 when the checks pass, 1 when they fail (git then refuses the commit),
2 on usage errors.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from continualcode.config import Settings
from continualcode.hooks.checks import (
    GIT_LOCATION_VARS,
    CheckResult,
    check_commands,
    git,
    run_checks,
    staged_paths,
    staged_tree,
)
from continualcode.hooks.outcome import (
    AgentChange,
    _tail,
    agent_changes,
    judged_changes,
    record_outcome,
)

FIX_TOOLS = ("write_file", "edit", "run_tests")
"""What the agent may do unattended under `--fix`. The bash tool stays refused, but this is not a
sandbox: `write_file` + `run_tests` can run any code the model writes (a test file is code), with your
permissions, unattended. `--fix` is opt-in for that reason (README, "Security")."""


# -- checks on the staged tree -------------------------------------------------


# -- the agent turns behind the staged changes ------------------------------------


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
    from continualcode.paths import STORE_DIR, STORE_FILE
    from continualcode.store.db import Store, StoreError

    with staged_tree(repo) as tree:
        checks = run_checks(repo, settings, tree)
        for check in checks:
            verdict = "passed" if check.ok else f"FAILED (exit code {check.exit_code})"
            print(f"continualcode: {check.name} {verdict} in {check.seconds:.1f} s: $ {check.command}", file=out)
            if not check.ok:
                print(_tail(check.output, 8000), file=out)
        judged: list[AgentChange] = []
        if (repo / STORE_DIR / STORE_FILE).is_file():  # no store: continualcode never ran here
            try:
                with Store.for_repo(repo) as store:
                    earlier = agent_changes(store, repo, paths)
                    judged = judged_changes(earlier, tree)
                    recorded = record_outcome(store, settings, judged, earlier, checks)
            except StoreError as exc:  # the checks decide the commit; learning from it can wait
                print(f"continualcode: the result was not recorded for learning: {exc}", file=out)
                return checks, []
            queued = sum(1 for r in recorded if r["example_id"] is not None)
            if judged:
                print(f"continualcode: recorded the result on {len(judged)} agent turn(s)"
                      f"{f'; {queued} training example(s) queued' if queued else ''}", file=out)
    return checks, judged


def _fix(repo: Path, settings: Settings, paths: list[str], checks: list[CheckResult], out: TextIO) -> bool:
    """Let the agent fix the failure headlessly; stage what it changed. True when it changed something."""
    from continualcode.ui.headless import run_headless

    failed = next(c for c in checks if not c.ok)
    task = (f"The pre-commit checks failed on the staged changes to {', '.join(paths[:20])}. Fix the code "
            f"so that the checks pass, then run run_tests to confirm.\n$ {failed.command}\n{_tail(failed.output)}")
    dirty_before = set(_unstaged_paths(repo))
    print("continualcode: asking the agent to fix it (--fix)…", file=out)
    fix_settings = dataclasses.replace(settings, auto_commit=False)  # never commit from inside a commit
    with _without_git_location():
        run = run_headless(repo, fix_settings, task, allowed=FIX_TOOLS, start_trainer=False, progress=out,
                           check=failed.command)
    changed = sorted({posixpath.normpath(c["args"]["path"]) for c in run.report["tool_calls"]
                      if c["name"] in ("write_file", "edit") and c["ok"]})
    stage = [p for p in changed if p not in dirty_before]
    kept = [p for p in changed if p in dirty_before]
    if stage:
        git(repo, "add", "--", *stage)
        print(f"continualcode: staged the agent's fix to {', '.join(stage)}", file=out)
    if kept:
        print(f"continualcode: not staged (you have unstaged edits there; review and `git add`): "
              f"{', '.join(kept)}", file=out)
    return bool(stage)


def _unstaged_paths(repo: Path) -> list[str]:
    return [p for p in git(repo, "diff", "--name-only", "-z").stdout.split("\0") if p]


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


# -- command line ----------------------------------------------------------------
