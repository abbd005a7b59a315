"""The pre-commit hook: installed into real git repos and run by real `git commit`s.

Agent turns come from real headless runs (scripted engine) on the same repo, so
the hook has to find them through the store exactly as it would after a REPL
session.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.config import load_settings
from continualcode.engines.scripted import ScriptedEngine
from continualcode.hooks.install import HOOK_MARKER, HookError, install_hook
from continualcode.store.db import Store
from continualcode.ui.headless import run_headless
from tests.conftest import trust_repo_config

FIXED = "def add(a, b):\n    return a + b\n"
BROKEN = "def add(a, b):\n    return a - b\n"


def edit(search: str, replace: str) -> str:
    return "Editing.\n" + render_tool_call(ToolCall("edit", {"path": "app.py", "search": search, "replace": replace}))


@pytest.fixture
def repo(git_repo: Path, monkeypatch) -> Path:
    """The conftest repo (app.py with a broken add) plus a committed test and a test_command."""
    (git_repo / "test_app.py").write_text("from app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    git(git_repo, "add", "test_app.py")
    git(git_repo, "commit", "-qm", "add a test", "--no-verify")
    configure(git_repo)
    return git_repo


def configure(repo: Path, **extra: str) -> None:
    # the scripted --fix runs drive the tool loop; the repair flow has its own tests (tests/agent)
    lines = [f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"', "repair = false"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    path = repo / ".continualcode" / "config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    trust_repo_config(repo)


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check)


def agent_edits(repo: Path, *replies: str) -> dict:
    """A real headless run that makes the agent's edit (and stores its turns)."""
    settings = load_settings(repo, {"engine": "scripted"})
    run = run_headless(repo, settings, "fix add", yes=True, engine=ScriptedEngine([*replies, "Done."]))
    return run.report


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "continualcode", "--repo", str(repo), *args],
                          capture_output=True, text=True, timeout=120)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").stdout.strip()


# -- install -------------------------------------------------------------------

def test_install_writes_an_executable_hook_that_runs_this_python(repo):
    done = cli(repo, "hook", "install")
    assert done.returncode == 0, done.stderr
    hook = repo / ".git" / "hooks" / "pre-commit"
    text = hook.read_text()
    assert HOOK_MARKER in text and f"{sys.executable} -m continualcode hook run pre-commit" in text
    assert hook.stat().st_mode & stat.S_IXUSR
    assert cli(repo, "hook", "install", "pre-commit", "--fix").returncode == 0  # ours: reinstall is fine
    assert hook.read_text().rstrip().endswith("hook run pre-commit --fix")


def test_foreign_hook_is_kept_unless_forced_or_chained(repo):
    hooks = repo / ".git" / "hooks"
    foreign = hooks / "pre-commit"
    foreign.write_text("#!/bin/sh\necho foreign hook ran >&2\nexit 1\n")
    foreign.chmod(0o755)
    done = cli(repo, "hook", "install")
    assert done.returncode == 2 and "--chain" in done.stderr and "foreign" in foreign.read_text()
    with pytest.raises(HookError):
        install_hook(repo)

    installed = install_hook(repo, chain=True)
    assert installed.chained == hooks / "pre-commit.continualcode-chained"
    (repo / "notes.txt").write_text("hello\n")
    git(repo, "add", "notes.txt")
    blocked = git(repo, "commit", "-qm", "notes", check=False)
    assert blocked.returncode != 0 and "foreign hook ran" in blocked.stderr  # the chained hook runs first

    installed = install_hook(repo, force=True)  # ours now: no backup needed, the chain is kept
    assert installed.backup is None and installed.chained is not None
    installed.chained.unlink()
    foreign.write_text("#!/bin/sh\nexit 0\n")
    installed = install_hook(repo, force=True)
    assert installed.backup.read_text() == "#!/bin/sh\nexit 0\n" and HOOK_MARKER in foreign.read_text()


def test_uninstall_restores_the_displaced_hook_and_never_removes_a_foreign_one(repo):
    from continualcode.hooks.install import uninstall_hook

    hooks = repo / ".git" / "hooks"
    hook = hooks / "pre-commit"
    done = cli(repo, "hook", "uninstall")
    assert done.returncode == 2 and "no pre-commit hook" in done.stderr

    install_hook(repo)
    done = cli(repo, "hook", "uninstall")
    assert done.returncode == 0 and "removed" in done.stdout and not hook.exists()

    foreign = "#!/bin/sh\necho foreign\n"
    hook.write_text(foreign)
    with pytest.raises(HookError, match="not written by continualcode"):
        uninstall_hook(repo)
    assert hook.read_text() == foreign

    install_hook(repo, chain=True)
    removed = uninstall_hook(repo)
    assert removed.restored.name == "pre-commit.continualcode-chained" and hook.read_text() == foreign
    assert not removed.restored.exists()

    install_hook(repo, force=True)  # backup .continualcode-backup
    hook.write_text("#!/bin/sh\necho second\n")
    install_hook(repo, force=True)  # backup .continualcode-backup.1: the one displaced last
    removed = uninstall_hook(repo)
    assert removed.restored.name == "pre-commit.continualcode-backup.1" and "second" in hook.read_text()
    assert (hooks / "pre-commit.continualcode-backup").read_text() == foreign  # older backups stay
    assert cli(repo, "hook", "uninstall", "--fix").returncode == 2


# -- run -----------------------------------------------------------------------

def test_failing_check_blocks_the_commit_and_queues_an_example_on_the_agent_turn(repo):
    install_hook(repo)
    report = agent_edits(repo, edit("return a - b", "return a * b"))
    assert report["feedback"] == []  # the agent ran no tests: nothing judged its edit yet
    git(repo, "add", "app.py")
    before = head(repo)
    done = git(repo, "commit", "-qm", "agent fix", check=False)
    assert done.returncode != 0 and "tests FAILED" in done.stderr and "commit was stopped" in done.stderr
    assert head(repo) == before
    store = Store.for_repo(repo)
    [example] = store.pending_examples()
    judged = store.message(example["message_id"])
    assert judged["role"] == "assistant" and "return a * b" in judged["content"]
    assert example["template"] == "reprompt" and "pre-commit checks failed" in example["f"]
    assert "assert 2 == 3" in example["f"]  # the failing output is the feedback
    assert store.feedback_counts() == {"hook": 1}
    assert git(repo, "commit", "-qm", "again", check=False).returncode != 0
    assert store.feedback_counts() == {"hook": 1} and store.queue_length() == 1  # one judgement per turn


def test_passing_check_lets_the_commit_through_and_solves_the_earlier_failure(repo):
    install_hook(repo)
    agent_edits(repo, edit("return a - b", "return a * b"))
    git(repo, "add", "app.py")
    assert git(repo, "commit", "-qm", "first try", check=False).returncode != 0
    agent_edits(repo, edit("return a * b", "return a + b"))
    git(repo, "add", "app.py")
    done = git(repo, "commit", "-qm", "second try", check=False)
    assert done.returncode == 0, done.stderr
    assert git(repo, "show", "HEAD:app.py").stdout == FIXED
    store = Store.for_repo(repo)
    assert store.feedback_counts() == {"hook": 1, "hook_pass": 1}
    [example] = store.pending_examples()  # the pass queued nothing new...
    assert "return a + b" in example["s"]  # ...but became the failed attempt's solution


def test_checks_run_on_the_staged_tree_and_leave_the_work_tree_alone(repo):
    install_hook(repo)
    # A check that ran git with the hook's GIT_INDEX_FILE would write into the commit's index.
    configure(repo, lint_command=f"{sys.executable} -c \"import os, sys; sys.exit('GIT_INDEX_FILE' in os.environ)\"")
    (repo / "app.py").write_text(FIXED)
    git(repo, "add", "app.py")
    (repo / "app.py").write_text(BROKEN + "# unstaged, still broken\n")
    done = git(repo, "commit", "-qm", "staged fix", check=False)
    assert done.returncode == 0, done.stderr  # the staged content passes
    assert (repo / "app.py").read_text().endswith("# unstaged, still broken\n")
    assert git(repo, "stash", "list").stdout == ""
    # The user's own changes are checked but charged to no agent turn (no store was ever created).
    assert not (repo / ".continualcode" / "store.db").exists()
    blocked = git(repo, "commit", "-qam", "commit -a uses a temporary index", check=False)
    assert blocked.returncode != 0 and "tests FAILED" in blocked.stderr


def test_lint_failure_blocks_too(repo):
    install_hook(repo)
    configure(repo, lint_command=f"{sys.executable} -c \"import sys; print('E501 line too long'); sys.exit(3)\"")
    (repo / "app.py").write_text(FIXED)
    git(repo, "add", "app.py")
    done = git(repo, "commit", "-qm", "x", check=False)
    assert done.returncode != 0 and "tests passed" in done.stderr and "lint FAILED (exit code 3)" in done.stderr
    assert "E501" in done.stderr


def test_nothing_staged_is_fast_and_touches_nothing(repo):
    start = time.monotonic()
    done = cli(repo, "hook", "run", "pre-commit")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert time.monotonic() - start < 3.0  # one interpreter start; no model, no store, no tests
    assert not (repo / ".continualcode" / "store.db").exists()


def test_fix_lets_the_agent_repair_the_failure_inside_git_commit(repo):
    fix = edit("return a * b", "return a + b")
    script = repo.parent / "fix.json"
    script.write_text(json.dumps([fix, render_tool_call(ToolCall("run_tests", {})), "Fixed."]))
    configure(repo, engine="scripted", script=str(script))
    install_hook(repo, fix=True)
    (repo / "app.py").write_text("def add(a, b):\n    return a * b\n")
    git(repo, "add", "app.py")
    env = {**os.environ, "GIT_EDITOR": ":"}
    done = subprocess.run(["git", "commit", "-qm", "user change"], cwd=repo, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "staged the agent's fix to app.py" in done.stderr and "the checks pass" in done.stderr
    assert git(repo, "show", "HEAD:app.py").stdout == FIXED and git(repo, "status", "--porcelain").stdout == ""
    counts = Store.for_repo(repo).feedback_counts()
    assert counts["hook_pass"] == 1 and counts["test_pass"] == 1  # the fixing turn is marked a success


def test_hook_run_outside_git_is_a_usage_error(tmp_path):
    done = cli(tmp_path, "hook", "run", "pre-commit")
    assert done.returncode == 2 and "not a git work tree" in done.stderr


def test_pre_commit_framework_manifest_names_the_real_command():
    yaml = pytest.importorskip("yaml")
    hooks = yaml.safe_load((Path(__file__).parents[2] / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"continualcode", "continualcode-fix"}
    for hook in hooks:
        assert hook["entry"].startswith("continualcode hook run pre-commit") and hook["pass_filenames"] is False
