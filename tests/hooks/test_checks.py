"""The pre-commit checks run through the one process runner (issue 13 items 5 and 6), real processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from continualcode.hooks.checks import run_check
from continualcode.hooks.outcome import _last_commit_time


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_a_passing_check_that_leaves_a_background_process_passes_at_once(tmp_path):
    """`sleep 8 & exit 0` used to be recorded as FAILED (and as training feedback), 8 s later."""
    start = time.monotonic()
    result = run_check("tests", "sleep 8 & exit 0", tmp_path)
    assert time.monotonic() - start < 2.0
    assert result.ok and result.exit_code == 0
    assert "running in the background" in result.output and result.output.endswith("stopped]")


def test_a_setsid_child_cannot_hold_a_check_past_its_timeout(tmp_path):
    command = "setsid sh -c 'echo $$ > escaped.pid; exec sleep 60' & sleep 60"
    start = time.monotonic()
    result = run_check("tests", command, tmp_path, timeout=1.0)
    assert time.monotonic() - start < 2.5
    assert not result.ok and "killed after 1 s: the command and every process it started were stopped" in result.output
    assert not alive(int((tmp_path / "escaped.pid").read_text()))


def test_a_failing_check_keeps_its_output_and_exit_code(tmp_path):
    result = run_check("lint", "echo E501 line too long; exit 1", tmp_path)
    assert not result.ok and result.exit_code == 1 and result.output == "E501 line too long"


def test_checks_get_neither_secrets_nor_gits_hook_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("DB_PASSWD", "hunter2")
    monkeypatch.setenv("GIT_INDEX_FILE", "/somewhere/index")
    monkeypatch.setenv("ALLOWED_TOKEN", "visible")
    result = run_check("tests", "env", tmp_path, env_allow=("ALLOWED_TOKEN",))
    assert "ALLOWED_TOKEN=visible" in result.output
    assert "hunter2" not in result.output and "GIT_INDEX_FILE" not in result.output


def test_a_path_with_pathspec_magic_is_looked_up_literally(git_repo):
    """Issue 13 item 5: `git log -- ':(glob)**'` matched every file, so a new agent file named so
    looked committed already and its turn was never judged."""
    assert _last_commit_time(git_repo, "app.py") is not None
    assert _last_commit_time(git_repo, ":(glob)**") is None
    (git_repo / ":(glob)**").write_text("x\n")
    subprocess.run(["git", "--literal-pathspecs", "add", ":(glob)**"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "magic"], cwd=git_repo, check=True)
    assert _last_commit_time(git_repo, ":(glob)**") is not None
