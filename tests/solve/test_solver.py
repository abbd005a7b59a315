"""solve on a real git repo whose check fails until `add` really adds, with the scripted engine.

The user's tree must not change before the user confirms; the budget is a hard
limit; a SIGKILLed solve leaves tree and adapter registry as they were; the one
slow test runs real SDPO steps on SmolLM2 between attempts and merges them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.config import Settings
from continualcode.engines.scripted import ScriptedEngine
from continualcode.solve.solver import FIRST, RETRY, Solver, finish
from continualcode.tools.scratch import PatchConflict, apply_patch

CHECK = f"{sys.executable} -B check_app.py"  # cheaper than pytest on a loaded 2-core machine
TASK = "Make add return the sum of its arguments."


def call(name: str, **args: str) -> str:
    return "I will do that.\n" + render_tool_call(ToolCall(name, args))


def edit_to(expression: str) -> str:
    return call("edit", path="app.py", search="return a - b", replace=f"return {expression}")


WRONG = [edit_to("a * b"), "Done."]
RIGHT = [edit_to("a + b"), "Fixed."]


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "check_app.py").write_text("from app import add\n\nassert add(1, 2) == 3, add(1, 2)\n")
    subprocess.run(["git", "add", "check_app.py"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "test"], cwd=git_repo, check=True)
    (git_repo / "notes.txt").write_text("uncommitted, untracked\n")  # the copy must carry it
    return git_repo


def settings(**kw) -> Settings:
    """These tests script the tool loop (edit calls); the candidate generator has its own tests below."""
    return Settings(engine="scripted", learn=False, max_turns=4, **{"repair": False, **kw})


def no_repair_config(repo: Path) -> None:
    """The same for tests that run the command line."""
    (repo / ".continualcode").mkdir(exist_ok=True)
    (repo / ".continualcode" / "config.toml").write_text("repair = false\n")


def user_state(repo: Path) -> tuple[str, str, str]:
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    return (repo / "app.py").read_text(), (repo / "notes.txt").read_text(), status


def solve(repo: Path, replies: list[str], method: str = "best-of-k", budget: int = 3, loop: bool = False):
    engine = ScriptedEngine(replies, loop=loop)
    solver = Solver(repo, engine, settings(), task=TASK, check=CHECK, method=method, budget=budget)
    try:
        outcome = solver.run()
        # the passing attempt lives in the scratch copy only
        scratch_app = (solver.scratch.root / "app.py").read_text()
    finally:
        solver.close()
    assert not solver.scratch.base.exists()  # the copy is removed
    return outcome, engine, scratch_app


def test_second_attempt_passes_and_nothing_touches_the_users_tree(repo):
    before = user_state(repo)
    outcome, engine, scratch_app = solve(repo, WRONG + RIGHT)
    assert outcome.solved and [a.passed for a in outcome.attempts] == [False, True]
    assert "return a + b" in scratch_app
    assert user_state(repo) == before
    assert "AssertionError: 2" in outcome.attempts[0].check_output  # the failing check is the feedback
    assert outcome.attempts[0].changed_files == ["app.py"]
    assert "-    return a - b\n+    return a + b" in outcome.diff
    # best-of-k: attempt 2 is a fresh conversation on a reset copy (its edit of "a - b" applied)
    assert engine.calls[2][-1]["content"] == FIRST.format(task=TASK, check=CHECK)


def test_diff_is_applied_only_when_confirmed(repo):
    before = user_state(repo)
    outcome, _, _ = solve(repo, WRONG + RIGHT)
    seen = []

    def decline(diff: str) -> bool:
        seen.append(user_state(repo))
        return False

    report = finish(outcome, repo, None, confirm_apply=decline, confirm_merge=lambda a: True)
    assert seen == [before] and user_state(repo)[:2] == before[:2]
    assert report["applied"] is False and report["adapter"]["decision"] == "none"
    patch = Path(report["patch_file"])
    assert patch.is_file() and patch.parent == repo / ".continualcode" / "solve"
    report = finish(outcome, repo, None, confirm_apply=lambda diff: True, confirm_merge=lambda a: True)
    assert report["applied"] and report["applied_files"] == ["app.py"]
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert (repo / "notes.txt").read_text() == before[1]


def test_budget_is_a_hard_limit(repo):
    before = user_state(repo)
    outcome, engine, _ = solve(repo, WRONG, budget=3, loop=True)
    assert not outcome.solved and len(outcome.attempts) == 3 and outcome.diff == ""
    assert len(engine.calls) == 6  # two replies per attempt, three attempts, no more
    assert finish(outcome, repo, None, confirm_apply=lambda d: pytest.fail("asked to apply a failure"),
                  confirm_merge=lambda a: True)["patch_file"] is None
    assert user_state(repo) == before


def test_multi_turn_keeps_the_conversation_and_the_copy(repo):
    outcome, engine, scratch_app = solve(repo, WRONG + [edit_to("a + b").replace("a - b", "a * b"), "Fixed."],
                                         method="multi-turn")
    assert outcome.solved and len(outcome.attempts) == 2 and "return a + b" in scratch_app
    retry = engine.calls[2][-1]["content"]
    assert retry == RETRY.format(check=CHECK, output=outcome.attempts[0].check_output)
    assert any("return a * b" in m["content"] for m in engine.calls[2])  # attempt 1 is still in context


def test_bash_runs_in_the_scratch_copy_without_asking(repo):
    before = user_state(repo)
    replies = [call("bash", command="pwd > where.txt && printf 'def add(a, b):\\n    return a + b\\n' > app.py"),
               "ok"]
    outcome, _, _ = solve(repo, replies, budget=1)
    assert outcome.solved and outcome.attempts[0].tool_calls[0]["ok"]
    assert "where.txt" in outcome.diff and not (repo / "where.txt").exists()
    assert user_state(repo) == before


def test_a_patch_that_no_longer_applies_writes_nothing(repo):
    outcome, _, _ = solve(repo, RIGHT, budget=1)
    (repo / "app.py").write_text("def add(a, b):\n    return b - a\n")  # the user edited it meanwhile
    with pytest.raises(PatchConflict):
        apply_patch(repo, outcome.diff)
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return b - a\n"


def _registry_state(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sigkilled_solve_leaves_tree_and_registry_unchanged(repo, tmp_path):
    import torch
    from safetensors.torch import save_file

    from continualcode.adapters.registry import AdapterRegistry

    fake = tmp_path / "fake-adapter"
    fake.mkdir()
    (fake / "adapter_config.json").write_text(json.dumps({"r": 1, "lora_alpha": 1, "target_modules": ["q_proj"]}))
    save_file({"base_model.model.x.lora_A.weight": torch.zeros(1, 1)}, str(fake / "adapter_model.safetensors"))
    registry = AdapterRegistry.for_repo(repo)
    registry.set_live(registry.publish_from_dir(fake, parent=None, base_model="smollm2-135m", base_checksum=None,
                                                examples=[], metrics={}).version)
    no_repair_config(repo)
    registry_before = _registry_state(registry.root)
    before = user_state(repo)
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(RIGHT))
    marker = tmp_path / "check-started"
    check = f"pwd > {marker}.tmp; echo $$ >> {marker}.tmp; mv {marker}.tmp {marker}; sleep 60"
    child = subprocess.Popen(
        [sys.executable, "-m", "continualcode", "solve", TASK, "--check", check, "--repo", str(repo),
         "--engine", "scripted", "--script", str(script), "--model", "smollm2-135m", "--apply", "--merge", "yes",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), child.stderr.read().decode()[-2000:] if child.poll() is not None else "no check"
        where, check_pid = marker.read_text().split()
        scratch = Path(where)
        assert "return a + b" in (scratch / "app.py").read_text()  # the edit happened, in the copy
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        if marker.exists():  # the check's supervisor dies with the solve and takes the check with it
            check = int(marker.read_text().split()[1])
            deadline = time.monotonic() + 10
            while Path(f"/proc/{check}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not Path(f"/proc/{check}").exists(), "the killed solve left its check running"
            shutil.rmtree(Path(marker.read_text().split()[0]).parent, ignore_errors=True)
    assert user_state(repo) == before
    assert _registry_state(registry.root) == registry_before
    assert not (repo / ".continualcode" / "solve").exists()


def publish_live_adapter(repo: Path, small_model):
    """A fresh SmolLM2 LoRA (B = 0, so exactly the base model) published and made live."""
    import torch

    from continualcode.adapters.presets import preset_for
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.engines.loading import load_causal_lm
    from continualcode.learning.lora import attach_lora

    registry = AdapterRegistry.for_repo(repo)
    model, _ = load_causal_lm(small_model, torch.float32)
    live = registry.publish(attach_lora(model, preset_for(small_model.name)), parent=None,
                            base_model=small_model.name, base_checksum=small_model.checksum, examples=[], metrics={})
    registry.set_live(live.version)
    return registry, live


@pytest.mark.slow
def test_solve_killed_during_sdpo_steps_leaves_tree_and_registry_unchanged(repo, tmp_path, small_model):
    """SIGKILL while the task-local adapter is training (after its first steps were served)."""

    no_repair_config(repo)
    registry, live = publish_live_adapter(repo, small_model)
    registry_before, before = _registry_state(registry.root), user_state(repo)
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(WRONG * 3))  # every attempt fails the check
    counter, tmp = tmp_path / "checks", tmp_path / "tmp"
    tmp.mkdir()
    check = f"echo x >> {counter}; exit 1"
    child = subprocess.Popen(
        [sys.executable, "-m", "continualcode", "solve", TASK, "--check", check, "--repo", str(repo),
         "--engine", "scripted", "--script", str(script), "--model", small_model.name, "--dtype", "fp32",
         "--budget", "3", "--steps", "2", "--apply", "--merge", "yes", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, "TMPDIR": str(tmp)})

    def checks() -> int:
        return len(counter.read_text().split()) if counter.exists() else 0
    try:
        deadline = time.monotonic() + 300
        while checks() < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checks() == 2, child.stderr.read().decode()[-2000:] if child.poll() is not None else "too slow"
        # The first failure's steps were taken and served; the second failure's steps start now.
        served = list(tmp.glob("continualcode-task-*/task-1"))
        assert served and (served[0] / "adapter_model.safetensors").exists()
        time.sleep(0.5)
        assert child.poll() is None  # still learning: two steps on two turns take seconds
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert checks() == 2
    assert user_state(repo) == before
    assert _registry_state(registry.root) == registry_before
    assert registry.live().version == live.version
    assert not (repo / ".continualcode" / "solve").exists()


@pytest.mark.slow
def test_sdpo_learns_between_attempts_and_merges_with_lineage(repo, small_model):
    """Real SDPO steps (SmolLM2) on the scripted attempt's turns; merged as a child of the live version."""
    from continualcode.learning.task_adapter import TaskAdapter
    from continualcode.store.db import Store

    registry, live = publish_live_adapter(repo, small_model)
    engine = ScriptedEngine(WRONG + RIGHT)
    adapter = TaskAdapter(small_model, engine=engine, registry=registry, steps=1, dtype="fp32")
    solver = Solver(repo, engine, settings(), task=TASK, check=CHECK, method="sdpo", budget=3, adapter=adapter,
                    max_examples=1)  # one ~700-token example keeps the CPU step short
    try:
        outcome = solver.run()
        assert [a.passed for a in outcome.attempts] == [False, True]
        learn = outcome.attempts[0].learn
        assert learn["steps"] == 1 and learn["examples"] == 1 and learn["tokens"] > 0 and "rolled_back" not in learn
        assert registry.list()[-1].version == live.version  # nothing published before the user's choice
        assert engine.loaded[-1][1] == "task-1"  # attempt 2 was served by the task-local branch
        report = finish(outcome, repo, adapter, confirm_apply=lambda d: True, confirm_merge=lambda a: True,
                        user_store=lambda: Store.for_repo(repo))
    finally:
        adapter.close()
        solver.close()
    merged = report["adapter"]
    assert merged["decision"] == "merged" and merged["live"] and merged["branched_from"] == live.version
    assert registry.lineage("live") == [merged["version"], live.version]
    meta = registry.get(merged["version"]).meta
    assert meta["parent"] == live.version and meta["metrics"]["source"] == "solve"
    assert meta["metrics"]["task"] == TASK and meta["metrics"]["steps"] == 1
    assert engine.adapter_version == merged["version"]
    before, after = registry.load_tensors(live.version), registry.load_tensors(merged["version"])
    assert any(not before[k].equal(after[k]) for k in before)  # the step changed the weights
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_command_line_solve_applies_with_apply_and_reports_json(repo, tmp_path, capsys):
    from continualcode.cli import main

    no_repair_config(repo)
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(WRONG + RIGHT))
    code = main(["solve", TASK, "--check", CHECK, "--repo", str(repo), "--engine", "scripted", "--script", str(script),
                 "--method", "best-of-k", "--apply", "--json", "--no-learn"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["solved"] and report["applied"] and len(report["attempts"]) == 2
    assert report["adapter"]["decision"] == "none" and report["attempts"][0]["check_output"].endswith("[exit code 1]")
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_slash_solve_explains_its_usage():
    from continualcode.ui.slash import SLASH_COMMANDS, SlashError

    with pytest.raises(SlashError, match="--check"):
        SLASH_COMMANDS["/solve"].run(None, "'fix it'")


def test_learning_turns_prefer_file_changes_then_the_last_turn():
    from continualcode.learning.task_adapter import Turn
    from continualcode.solve.solver import SolveEvents, _AttemptEvents

    events = _AttemptEvents(SolveEvents())
    read, edit1, edit2, answer = (Turn([], text) for text in ("read", "edit1", "edit2", "answer"))
    events.turns = [(read, False), (edit1, True), (edit2, True), (answer, False)]
    assert [t.text for t in events.learning_turns(4)] == ["edit1", "edit2", "answer"]
    assert [t.text for t in events.learning_turns(1)] == ["edit2"]
    events.turns = [(read, False), (answer, False)]
    assert [t.text for t in events.learning_turns(4)] == ["answer"]


# -- solve uses the agent's candidate generator --------------------------------------------------------------

def sr(replace: str) -> str:
    return f"app.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return {replace}\n>>>>>>> REPLACE\n"


class RecordingAdapter:
    """Stands in for the task adapter: records what each SDPO round would learn from."""

    def __init__(self):
        self.calls = []
        self.version = None

    def serve(self):
        pass

    def learn(self, turns, feedback):
        self.calls.append((turns, feedback))
        return {"steps": 1, "loss": 0.0}


def test_each_attempt_is_a_round_of_candidates_and_sdpo_learns_from_their_own_failures(repo):
    engine = ScriptedEngine([sr("a * b"), sr("b - a"), sr("a + b"), sr("a")])
    adapter = RecordingAdapter()
    solver = Solver(repo, engine, settings(repair=True, repair_candidates=2, edit_format="search_replace"),
                    task=TASK, check=CHECK, method="sdpo", budget=3, adapter=adapter)
    try:
        outcome = solver.run()
        fixed = (solver.scratch.root / "app.py").read_text()
    finally:
        solver.close()
    assert outcome.solved and len(outcome.attempts) == 2 and "return a + b" in fixed
    assert "return a + b" in outcome.diff and (repo / "app.py").read_text() == "def add(a, b):\n    return a - b\n"
    [(turns, feedbacks)] = adapter.calls  # learning ran once, between the two attempts
    assert [t.text for t in turns] == [sr("a * b"), sr("b - a")]
    assert all("failed with this fix" in f for f in feedbacks) and feedbacks[0] != feedbacks[1]
    assert all(t.messages and t.messages[-1]["role"] == "user" for t in turns)  # x: what the candidates answered
