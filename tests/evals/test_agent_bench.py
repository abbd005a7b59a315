from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.config import UsageError
from continualcode.evals.agent_bench import (
    DEFAULT_TASKS,
    AgentTask,
    bootstrap_ci,
    grade,
    load_tasks,
    materialize,
    summarize,
)

TASK = "hand/wrong-operator-cart-subtotal"


def test_the_public_set_has_40_tasks_of_every_kind_with_their_origin():
    tasks = load_tasks(DEFAULT_TASKS)
    assert len(tasks) >= 40 and len({t.id for t in tasks}) == len(tasks)
    assert {t.source for t in tasks} >= {"hand-written"} and any(t.source.startswith("humaneval/HumanEval/") for t in tasks)
    kinds = {t.kind for t in tasks}
    assert {"bug-in-helper", "missing-function", "edge-case", "wrong-default-argument", "traceback-at-test",
            "operator-swap", "off-by-one", "wrong-constant", "swapped-arguments", "dropped-branch"} <= kinds
    for task in tasks:
        assert task.tests and all(t in task.files for t in task.tests) and task.fix
        if task.id.startswith("humaneval/"):
            assert task.mutation and {"seed", "kind", "line"} <= set(task.mutation)


def test_every_public_task_fails_as_given_and_its_recorded_fix_resolves_it(tmp_path):
    """The set is honest: no task passes untouched, and each one can be fixed by the change it records."""
    from concurrent.futures import ThreadPoolExecutor

    def both(numbered: tuple[int, AgentTask]) -> tuple[str, bool, dict]:
        number, task = numbered
        repo = materialize(task, tmp_path / str(number))
        failed_as_given = not grade(task, repo)["check_passed"]
        path = repo / task.fix["path"]
        text = path.read_text() if path.exists() else ""
        assert task.fix["before"] in text, task.id
        path.write_text(text.replace(task.fix["before"], task.fix["after"], 1))
        return task.id, failed_as_given, grade(task, repo)

    with ThreadPoolExecutor(4) as pool:  # each check is a pytest process
        for task_id, failed_as_given, fixed in pool.map(both, enumerate(load_tasks(DEFAULT_TASKS))):
            assert failed_as_given, task_id
            assert fixed["resolved"], (task_id, fixed["check_output"])


def test_changing_a_test_file_is_never_resolved(tmp_path):
    [task] = load_tasks(DEFAULT_TASKS, only=[TASK])
    repo = materialize(task, tmp_path)
    (repo / task.tests[0]).write_text("def test_nothing():\n    pass\n")
    graded = grade(task, repo)
    assert graded["check_passed"] and not graded["resolved"] and graded["tests_changed"] == [task.tests[0]]


def test_task_files_are_validated_with_the_line_to_fix(tmp_path):
    bad = tmp_path / "tasks.jsonl"
    bad.write_text(json.dumps({"id": "x", "request": "fix", "files": {"a.py": "x = 1\n"}, "tests": ["t.py"]}) + "\n")
    with pytest.raises(UsageError, match=f"{bad}:1"):
        load_tasks(bad)
    with pytest.raises(UsageError, match="no such task"):
        load_tasks(DEFAULT_TASKS, only=["no/such-task"])


def row(resolved: bool, kind: str = "k", seconds: float = 1.0) -> dict:
    return {"resolved": resolved, "kind": kind, "seconds": seconds, "turns": 1, "tool_calls": 2,
            "parse_failures": 0, "candidates": 8}


def test_summary_reports_rate_ci_halves_and_kinds():
    rows = [row(True, "a", 2.0), row(False, "a", 4.0), row(False, "b", 6.0), row(True, "b", 8.0)]
    summary = summarize(rows)
    assert summary["all"]["resolve_rate"] == 0.5 and summary["all"]["median_seconds"] == 5.0
    low, high = summary["all"]["ci95"]
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert summary["first_half"]["resolved"] == 1 and summary["second_half"]["tasks"] == 2
    assert summary["by_kind"]["a"]["resolved"] == 1 and summary["by_kind"]["b"]["tasks"] == 2
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)


class FakeTrainer:
    """train_between's view of the trainer: its store, and train_pending, which trains what is pending."""

    def __init__(self, store):
        self.store, self.trained = store, []

    def train_pending(self):
        rows = [row["id"] for row in self.store.pending_examples()]
        self.trained.extend(rows)
        self.store.mark_examples(rows, "trained", adapter_version="v0001")
        return [{"examples": rows, "version": "v0001", "decision": "promoted"}]


def failed_candidates(tmp_path: Path, solutions: list[str | None]):
    """A store holding one reprompt example per failed candidate, with its passing sibling's solution or None."""
    from continualcode.store.db import Store

    store = Store(tmp_path / "store.db")
    session = store.start_session("/repo", "m", "embedded")
    ids = []
    for n, solution in enumerate(solutions):
        store.add_message(session, "user", "fix it")
        reply = store.add_message(session, "assistant", f"attempt {n}")
        ids.append(store.add_example(store.add_feedback("test_failure", "1 failed", reply), reply, [], "1 failed",
                                     s=solution))
    return store, ids


def test_learn_trains_between_tasks_the_examples_with_a_solution_first(tmp_path):
    """--learn: after a task at most K of its examples are trained (the failed siblings of a passing
    candidate first), the rest are skipped with the reason; the trainer runs only then, not beside the task."""
    from continualcode.evals.agent_bench import train_between

    store, ids = failed_candidates(tmp_path, [None, "def f(): return 1", None, "def f(): return 2"])
    trainer = FakeTrainer(store)
    report = train_between(trainer, 3)
    assert sorted(trainer.trained) == sorted([ids[1], ids[3], ids[0]])  # the two with a solution, then the oldest
    assert (report["examples"], report["with_solution"], report["skipped"]) == (3, 2, 1)
    assert report["versions"] == {"v0001": "promoted"} and report["errors"] == []
    skipped = store.example(ids[2])
    assert skipped["status"] == "skipped" and "--learn-examples 3" in skipped["error"]
    assert train_between(trainer, None)["examples"] == 0  # nothing left to train


def test_solved_only_skips_the_examples_without_a_passing_sibling(tmp_path: Path):
    """--learn-solved-only: an example whose teacher has only the failing check output is not trained."""
    from continualcode.evals.agent_bench import train_between

    store, ids = failed_candidates(tmp_path, [None, "def f(): return 1", None])
    report = train_between(FakeTrainer(store), None, solved_only=True)
    assert (report["examples"], report["with_solution"], report["skipped"]) == (1, 1, 2)
    assert store.example(ids[1])["status"] == "trained"
    for skipped in (ids[0], ids[2]):
        assert store.example(skipped)["status"] == "skipped"
        assert "no passing sibling" in store.example(skipped)["error"]


def bench(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The command in tmp_path, its temporary files under tmp_path/tmp (which it must leave empty)."""
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "continualcode", "bench", "agent", *args], capture_output=True,
                          text=True, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=timeout,
                          env={**os.environ, "TMPDIR": str(temp),  # torch's compile cache is not the bench's
                               "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "torchinductor")})
    assert not list(temp.iterdir()), f"bench agent left {list(temp.iterdir())} behind"
    return done


def test_bench_agent_runs_the_headless_agent_and_grades_it(tmp_path):
    """Scripted replies (the tool loop, repair off): the edit is made by the real tools in a fresh repo."""
    [task] = load_tasks(DEFAULT_TASKS, only=[TASK])
    fix = render_tool_call(ToolCall("edit", {"path": task.fix["path"], "search": task.fix["before"].strip(),
                                             "replace": task.fix["after"].strip()}))
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([fix, "Fixed."]))
    out = tmp_path / "report.json"
    done = bench(tmp_path, "--engine", "scripted", "--script", str(script), "--no-repair", "--only", TASK,
                 "--json", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == json.loads(out.read_text())
    [result] = report["tasks"]
    assert result["resolved"] and result["tool_calls"] >= 1 and "-        return self.unit_cents + self.quantity" \
        in result["diff"]
    assert report["summary"]["all"]["resolved"] == 1 and report["settings"]["repair"] is False
    again = bench(tmp_path, "--engine", "scripted", "--script", str(script), "--only", TASK, "--out", str(out),
                  "--resume")  # repair on: other settings than the report's
    assert again.returncode == 2 and "other settings" in again.stderr


@pytest.mark.slow
def test_bench_agent_on_two_public_tasks_with_smollm2(tmp_path):
    """End to end on a real model: repair candidates sampled, checked in scratch copies, graded."""
    out = tmp_path / "report.json"
    done = bench(tmp_path, "--model", "smollm2-135m", "--only", TASK, "--only", "hand/missing-function-needs-restock",
                 "--candidates", "2", "--rounds", "1", "--out", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [t["id"] for t in report["tasks"]] == [TASK, "hand/missing-function-needs-restock"]
    for result in report["tasks"]:
        assert result["error"] is None and result["seconds"] > 0 and result["candidates"] >= 1
        assert result["repair"]["rounds"] == 1
    assert "bench agent · smollm2-135m" in done.stdout and "resolved" in done.stdout
    resumed = bench(tmp_path, "--model", "smollm2-135m", "--only", TASK, "--only",
                    "hand/missing-function-needs-restock", "--candidates", "2", "--rounds", "1", "--out", str(out),
                    "--resume", "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["tasks"] == report["tasks"]


@pytest.mark.slow
def test_bench_agent_learn_trains_after_the_task_with_smollm2(tmp_path):
    """--learn end to end: the task's failed candidates become examples in the shared store, at most K are
    trained after the task (a version published, the gate off), the rest skipped; the store and adapters
    stay beside the report for --resume, which refuses to continue without them."""
    out = tmp_path / "report.json"
    done = bench(tmp_path, "--model", "smollm2-135m", "--only", "hand/missing-function-needs-restock",
                 "--candidates", "2", "--rounds", "1", "--learn", "--learn-examples", "1", "--no-gate",
                 "--out", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["settings"]["learn"] is True and report["settings"]["learn_examples"] == 1
    [result] = report["tasks"]
    train = result["train"]
    assert train["examples"] <= 1 and train["errors"] == []
    if not result["resolved"]:  # the failed candidates are examples: one trained into a version
        assert train["examples"] == 1 and list(train["versions"].values()) == ["promoted"]
    assert "trained 1 in" in done.stderr or train["examples"] == 0
    assert report["summary"]["all"]["train_seconds"] == pytest.approx(train["seconds"], abs=0.051)  # rounded to 0.1
    state = tmp_path / "report.json.state"
    assert (state / "store.db").is_file()
    assert sorted(p.name for p in (state / "adapters").iterdir() if p.name.startswith("v")) == \
        sorted(train["versions"])
    args = ("--model", "smollm2-135m", "--only", "hand/missing-function-needs-restock", "--candidates", "2",
            "--rounds", "1", "--learn", "--learn-examples", "1", "--no-gate", "--out", str(out), "--resume", "--json")
    resumed = bench(tmp_path, *args, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["tasks"] == report["tasks"]
    shutil.rmtree(state)
    refused = bench(tmp_path, *args)
    assert refused.returncode == 2 and "are not in" in refused.stderr and "report.json.state" in refused.stderr


def test_resume_accepts_the_same_task_file_from_another_checkout(tmp_path):
    from continualcode.commands.bench_agent import _resumable

    settings = {"model": "m", "tasks_file": "/tmp/snap/continualcode/evals/sets/agent_public.jsonl", "seed": 0}
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"settings": settings, "tasks": [{"id": "a"}]}))
    here = {**settings, "tasks_file": "/work/main/continualcode/evals/sets/agent_public.jsonl"}
    assert list(_resumable(report, here)) == ["a"]
    for other in ({**settings, "tasks_file": "/x/mine.jsonl"}, {**here, "seed": 1}):
        with pytest.raises(UsageError, match="other settings"):
            _resumable(report, other)


def test_a_fresh_learn_run_empties_the_kept_state_and_resume_needs_it(tmp_path):
    from continualcode.commands.bench_agent import _prepare_learn_state

    state = tmp_path / "r.json.state"
    with pytest.raises(UsageError, match="run again without --resume"):
        _prepare_learn_state(state, resuming=True)
    _prepare_learn_state(state, resuming=False)
    (state / "store.db").write_text("earlier run")
    _prepare_learn_state(state, resuming=True)  # kept: the finished tasks' store
    assert (state / "store.db").read_text() == "earlier run"
    _prepare_learn_state(state, resuming=False)  # a new run does not inherit an earlier run's adapters
    assert state.is_dir() and not any(state.iterdir())
