"""`python -m continualcode` in a real subprocess: what a damaged, newer or locked store.db
gives each entry point (issue 13, item 11): a message that says what to do, exit code 2, no
traceback, and with --json one JSON object. Headless `-p` has its own in tests/ui/test_headless.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from continualcode.config import EXIT_USAGE
from tests.store.damage import DAMAGE, make_store, write_lock_held


def run_cli(repo: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys; {prelude}from continualcode.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, "--repo", str(repo), *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def damaged(git_repo: Path):
    def make(kind: str) -> Path:
        path = git_repo / ".continualcode" / "store.db"
        make_store(path)
        DAMAGE[kind](path)
        return git_repo
    return make


@pytest.mark.parametrize(("kind", "advice"), [("truncated", "mkdir -p"), ("newer schema", "upgrade continualcode")])
def test_train_on_a_bad_store_says_what_to_do_and_exits_2(damaged, kind: str, advice: str):
    done = run_cli(damaged(kind), "train")
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    assert done.stderr.startswith("continualcode: store error: ") and advice in done.stderr
    assert "Traceback" not in done.stderr


def test_train_json_on_a_bad_store_prints_one_object(damaged):
    done = run_cli(damaged("garbage"), "train", "--json")
    assert done.returncode == EXIT_USAGE
    out = json.loads(done.stdout)  # the whole of stdout is one object
    assert out["exit_code"] == EXIT_USAGE and "is damaged (file is not a database)" in out["error"]


def test_the_repl_on_a_bad_store_exits_2_before_asking_anything(damaged):
    done = run_cli(damaged("zeroed page"), "--engine", "scripted", "--script", "unused.json")
    assert done.returncode == EXIT_USAGE and "is damaged" in done.stderr and "Traceback" not in done.stderr


def test_adapters_list_does_not_need_the_store(damaged):
    done = run_cli(damaged("truncated"), "adapters", "list", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []


def test_train_behind_a_held_write_lock_says_what_to_wait_for(git_repo: Path):
    path = git_repo / ".continualcode" / "store.db"
    make_store(path)
    with write_lock_held(path):  # --retry-failed writes, so train meets the lock (timeout cut to 0.5 s)
        done = run_cli(git_repo, "train", "--retry-failed",
                       prelude="import continualcode.store.db as db; db.BUSY_TIMEOUT_S = 0.5; ")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "is locked" in done.stderr and "Another continualcode session" in done.stderr
    assert "Traceback" not in done.stderr
