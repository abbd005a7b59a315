"""Headless `-p`: the real CLI in a subprocess on a real git repo, the scripted engine,
and once the bundled SmolLM2 (generation and, in-process, a real training step)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.config import load_settings
from continualcode.engines.scripted import ScriptedEngine
from continualcode.store.db import Store
from continualcode.ui.headless import HEADLESS_REFUSAL, run_headless
from tests.conftest import trust_repo_config
from tests.store.damage import DAMAGE, make_store, truncate, write_lock_held

REPORT_KEYS = {"task", "exit_code", "status", "stop_reason", "final_message", "tests_passed", "tool_calls",
               "refused_tools", "feedback", "examples_queued", "adapter", "train", "notices", "session_id",
               "seconds", "error", "turns", "repair"}


def call(name: str, **args: str) -> str:
    return "On it.\n" + render_tool_call(ToolCall(name, args))


FIX = call("edit", path="app.py", search="return a - b", replace="return a + b")
WRONG = call("edit", path="app.py", search="return a - b", replace="return a * b")
TESTS = call("run_tests")


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "test_app.py").write_text("from app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    config = git_repo / ".continualcode" / "config.toml"
    config.parent.mkdir()
    # These tests drive the tool loop with scripted tool calls; the repair flow has its own tests.
    config.write_text(f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\nrepair = false\n')
    trust_repo_config(git_repo)
    return git_repo


def cli(repo: Path, replies: list[str] | None, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    engine = []
    if replies is not None:
        script = repo.parent / "replies.json"
        script.write_text(json.dumps(replies))
        engine = ["--engine", "scripted", "--script", str(script)]
    env = {**os.environ}
    return subprocess.run([sys.executable, "-m", "continualcode", "--repo", str(repo), *engine, *args],
                          input=stdin, capture_output=True, text=True, env=env, timeout=120)


def report(done: subprocess.CompletedProcess) -> dict:
    value = json.loads(done.stdout)  # exactly one JSON object on stdout, nothing else
    assert set(value) == REPORT_KEYS
    return value


def test_allowed_tools_run_and_passing_tests_exit_0(repo):
    done = cli(repo, [FIX, TESTS, "Fixed add."], "-p", "fix add", "--json", "--allow", "edit", "--allow", "run_tests")
    assert done.returncode == 0, done.stderr
    out = report(done)
    assert out["status"] == "passed" and out["stop_reason"] == "answered" and out["tests_passed"] is True
    assert out["final_message"] == "Fixed add."
    assert [(c["name"], c["decision"], c["ok"]) for c in out["tool_calls"]] == [
        ("edit", "approved", True), ("run_tests", "approved", True)]
    assert "PASSED" in out["tool_calls"][1]["output"]
    assert [f["kind"] for f in out["feedback"]] == ["test_pass"] and out["examples_queued"] == []
    assert out["adapter"] == {"used": None, "produced": [], "live": None}
    assert out["train"]["learning"] is False  # the scripted engine never trains
    assert (repo / "app.py").read_text().endswith("return a + b\n")
    assert "edit app.py [approved, ok]" in done.stderr  # progress goes to stderr


def test_tool_outside_policy_is_refused_and_reported_never_run(repo):
    done = cli(repo, [call("write_file", path="app.py", content="x = 1\n")], "-p", "rewrite app.py", "--json")
    assert done.returncode == 1
    out = report(done)
    assert out["stop_reason"] == "denied" and out["refused_tools"] == ["write_file"]
    [entry] = out["tool_calls"]
    assert entry["decision"] == "denied" and entry["reason"] == HEADLESS_REFUSAL and entry["ok"] is False
    assert (repo / "app.py").read_text().startswith("def add")
    [feedback] = out["feedback"]
    assert feedback["kind"] == "denial" and feedback["example_id"] is None  # a policy is not a correction
    store = Store.for_repo(repo)
    assert store.feedback_counts() == {"denial": 1} and store.queue_length() == 0


def test_failing_tests_exit_1_and_queue_an_example(repo):
    done = cli(repo, [WRONG, TESTS, "Done."], "-p", "fix add", "--json", "--yes")
    assert done.returncode == 1
    out = report(done)
    assert out["stop_reason"] == "answered" and out["tests_passed"] is False and out["status"] == "failed"
    assert [f["kind"] for f in out["feedback"]] == ["test_failure"]
    [example_id] = out["examples_queued"]
    example = Store.for_repo(repo).example(example_id)
    assert example["status"] == "pending" and "return a * b" in example["y"] and "FAILED" in example["f"]


def test_no_learn_records_feedback_but_queues_nothing(repo):
    done = cli(repo, [WRONG, TESTS, "Done."], "-p", "fix add", "--json", "--yes", "--no-learn")
    out = report(done)
    assert done.returncode == 1 and out["examples_queued"] == [] and out["feedback"][0]["example_id"] is None
    assert Store.for_repo(repo).queue_length() == 0


def test_turn_limit_exits_1(repo):
    read, other = call("read_file", path="app.py"), call("read_file", path="test_app.py")
    done = cli(repo, [read, other, read], "-p", "look around", "--json", "--max-turns", "2")
    out = report(done)
    assert done.returncode == 1 and out["stop_reason"] == "max_turns" and len(out["tool_calls"]) == 2


def test_task_from_stdin_and_plain_output(repo):
    done = cli(repo, ["The bug is in add."], "-p", "-", stdin="what is wrong\nwith add?\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The bug is in add.\n"  # without --json stdout is the final message only
    assert "passed (answered, tests not run)" in done.stderr
    [row] = [r for r in Store.for_repo(repo).session_messages(1) if r["role"] == "user"]
    assert row["content"] == "what is wrong\nwith add?\n"


def test_engine_running_out_still_prints_one_report(repo):
    done = cli(repo, [call("read_file", path="app.py")], "-p", "read it", "--json")
    out = report(done)
    assert done.returncode == 1 and out["stop_reason"] == "error" and "no replies left" in out["error"]
    assert [c["name"] for c in out["tool_calls"]] == ["read_file"]


@pytest.mark.parametrize("args, message", [
    (["-p", "   "], "task is empty"),
    (["-p", "x", "--allow", "rm_rf"], "no such tool"),
    (["--json"], "go with -p"),
    (["-p", "x", "--max-turns", "0"], "at least 1"),
    (["-p", "x", "models", "list"], "cannot be combined"),
])
def test_usage_errors_exit_2(repo, args, message):
    done = cli(repo, ["unused"], *args)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


def test_engine_that_cannot_start_is_a_setup_error(repo):
    done = cli(repo, None, "--engine", "scripted", "-p", "x")
    assert done.returncode == 2 and "--script" in done.stderr


@pytest.mark.slow
def test_smollm2_headless_end_to_end(repo):
    """The real bundled model, embedded engine: whatever it does, the contract holds."""
    config = repo / ".continualcode" / "config.toml"
    config.write_text(config.read_text() + "max_new_tokens = 24\n")
    trust_repo_config(repo)  # its content changed
    done = cli(repo, None, "--model", "smollm2-135m", "--dtype", "fp32", "--no-learn", "--max-turns", "1",
               "--json", "-p", "Read app.py and tell me what add returns.")
    assert done.returncode in (0, 1), done.stderr
    out = report(done)
    assert out["exit_code"] == done.returncode and out["train"]["learning"] is False
    assert out["adapter"]["used"] is None and isinstance(out["final_message"], str)
    for entry in out["tool_calls"]:
        assert {"name", "args", "decision", "ok", "output"} <= set(entry)
        assert entry["decision"] != "approved" or entry["name"] not in ("write_file", "edit", "bash", "run_tests")


@pytest.mark.slow
def test_wait_train_waits_for_a_real_sdpo_step_and_reports_the_new_adapter(repo, monkeypatch):
    """Scripted replies, but a real SmolLM2 trainer: the failing test queues an example,
    --wait-train blocks until it is trained, and the report names the version produced."""
    settings = load_settings(repo, {"model": "smollm2-135m", "dtype": "fp32", "steps_per_feedback": 1,
                                    "gate": False})  # the promotion gate has its own tests
    engine = ScriptedEngine([WRONG, TESTS, "Done."])
    run = run_headless(repo, settings, "fix add", yes=True, wait_train=240, engine=engine)
    out = run.report
    assert run.exit_code == 1 and len(out["examples_queued"]) == 1
    assert out["train"] == {"learning": True, "waited": True, "idle": True, "pending": 0, "last_error": None}
    assert out["adapter"]["produced"] == ["v0001"] and out["adapter"]["used"] is None
    assert engine.adapter_version == "v0001"  # hot-swapped into the serving engine
    assert Store.for_repo(repo).example(out["examples_queued"][0])["status"] == "trained"


# -- store errors (issue 13, item 11): a clear message, exit 2, and still one JSON object ------------


ADVICE = {"truncated": "Move it aside", "garbage": "Move it aside", "zeroed page": "Move it aside",
          "newer schema": "upgrade continualcode"}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_bad_store_gives_exit_2_and_one_json_report(repo, kind):
    path = repo / ".continualcode" / "store.db"
    make_store(path)
    DAMAGE[kind](path)
    done = cli(repo, ["Done."], "-p", "fix add", "--json")
    assert done.returncode == 2, done.stderr
    out = report(done)  # exactly one JSON object on stdout
    assert (out["exit_code"], out["status"], out["stop_reason"], out["session_id"]) == (2, "failed", "error", None)
    assert out["error"].startswith(f"store error: {path}") and ADVICE[kind] in out["error"]
    assert "Traceback" not in done.stderr


def test_a_bad_store_without_json_says_what_to_do_on_stderr(repo):
    path = repo / ".continualcode" / "store.db"
    make_store(path)
    truncate(path)
    done = cli(repo, ["Done."], "-p", "fix add")
    assert done.returncode == 2 and done.stdout.strip() == ""
    assert f"continualcode: store error: {path} is damaged" in done.stderr and "mkdir -p" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_held_write_lock_gives_exit_2_and_one_json_report(repo):
    """Another process holds the write lock past the busy timeout (shortened to 0.5 s here)."""
    path = repo / ".continualcode" / "store.db"
    make_store(path)
    script = repo.parent / "replies.json"
    script.write_text(json.dumps(["Done."]))
    patched = ("import sys, continualcode.store.db as db; db.BUSY_TIMEOUT_S = 0.5; "
               "from continualcode.cli import main; sys.exit(main())")
    with write_lock_held(path):
        done = subprocess.run([sys.executable, "-c", patched, "--repo", str(repo), "--engine", "scripted",
                               "--script", str(script), "-p", "fix add", "--json"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    out = report(done)
    assert "is locked" in out["error"] and "Another continualcode session" in out["error"]
    assert "Traceback" not in done.stderr


class DamagingEngine(ScriptedEngine):
    """Replies from a script; while producing its first reply, the store loses a table
    (as if another program broke the file mid-run)."""

    def __init__(self, replies: list[str], path: Path):
        super().__init__(replies)
        self.path = path

    def generate(self, messages, params, on_text=None, cancel=None):
        if self._next == 0:
            raw = sqlite3.connect(self.path)
            raw.execute("DROP TABLE tool_calls")
            raw.commit()
            raw.close()
        return super().generate(messages, params, on_text, cancel)


def test_a_store_error_mid_run_still_reports_what_ran(repo):
    settings = load_settings(repo, {"engine": "scripted", "learn": False})
    engine = DamagingEngine([call("read_file", path="app.py"), "Done."], repo / ".continualcode" / "store.db")
    run = run_headless(repo, settings, "read it", engine=engine)
    out = run.report
    assert run.exit_code == 2 and out["exit_code"] == 2 and out["session_id"] == 1
    assert out["error"].startswith("store error: ") and "no such table: tool_calls" in out["error"]
    assert set(out) == REPORT_KEYS


def test_the_reporting_recorder_keeps_every_setting_of_the_one_it_replaces(tmp_path):
    """Headless mode swaps the session's recorder for a reporting one: the teacher template of follow-ups
    and learn_repair must survive the swap (a lost learn_repair left `bench agent --learn` with nothing
    to train)."""
    from continualcode.agent.feedback import FeedbackRecorder
    from continualcode.store.db import Store
    from continualcode.ui.headless import ReportingRecorder

    store = Store(tmp_path / "store.db")
    wake = []
    original = FeedbackRecorder(store, learn=True, on_example=wake.append, followup_template="prefix",
                                learn_repair=True)
    swapped = ReportingRecorder.replacing(original)
    assert (swapped.store, swapped.learn, swapped.on_example) == (store, True, wake.append)
    assert (swapped.followup_template, swapped.learn_repair) == ("prefix", True)
    assert ReportingRecorder.replacing(FeedbackRecorder(store, learn=False)).learn_repair is False
