"""The repair flow (continualcode.agent.repair) with the scripted engine on real repositories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from continualcode.agent.edit_formats import FORMATS, CandidateError, replace_lines
from continualcode.agent.failures import implicated_files, is_test_file, read_failure
from continualcode.agent.loop import Decision
from continualcode.agent.repair import RepairConfig, Repairer, wants_repair
from continualcode.engines.scripted import ScriptedEngine
from tests.agent.test_loop import make_agent

BUG = "def add(a, b):\n    return a - b\n"
FIX = "def add(a, b):\n    return a + b\n"


def block(search: str, replace: str, path: str = "app.py") -> str:
    return f"Here is the fix.\n{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


WRONG_1 = block("    return a - b", "    return a * b")
WRONG_2 = block("    return a - b", "    return b - a")
RIGHT = block("    return a - b", "    return a + b")


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "test_app.py").write_text("from app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
                                          "\ndef test_zero():\n    assert add(0, 0) == 0\n")
    subprocess.run(["git", "add", "-A"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "tests"], cwd=git_repo, check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@e"})
    return git_repo


class WatchingApprover:
    """Says yes, and remembers what app.py held when each approval was asked."""

    def __init__(self, repo: Path, answer: str = "yes"):
        self.repo, self.answer, self.seen = repo, answer, []

    def approve(self, call, preview):
        self.seen.append((call.name, preview, (self.repo / "app.py").read_text()))
        return Decision(self.answer, reason="not like this" if self.answer == "no" else None)


def repairer(candidates=3, rounds=1) -> Repairer:
    return Repairer(RepairConfig(candidates=candidates, rounds=rounds, edit_format="search_replace"))


def test_the_check_runs_first_and_the_first_passing_candidate_is_applied(repo):
    engine = ScriptedEngine([WRONG_1, WRONG_2, RIGHT])
    approver = WatchingApprover(repo)
    agent, store = make_agent(repo, engine, approver=approver, repairer=repairer())
    result = agent.ask("The tests fail. Fix the bug.")
    assert result.stop_reason == "answered" and result.tests_passed is True
    assert (repo / "app.py").read_text() == FIX
    # asked twice: to run the check (once, covering the candidates), then to apply the passing diff
    (first, _, before_check), (second, diff, before_apply) = approver.seen
    assert first == "run_tests" and second == "write_file"
    assert before_check == BUG and before_apply == BUG  # the user's tree is untouched until then
    assert "-    return a - b" in diff and "+    return a + b" in diff
    # the candidates answered a conversation that holds the failing check and the files
    context = engine.calls[0][-1]["content"]
    assert "assert 2 == 3" in context or "assert add(1, 2) == 3" in context
    assert "### app.py" in context and "SEARCH" in context
    summary = result.repair.summary()
    assert summary["status"] == "fixed" and summary["candidates_tried"] == 3 and summary["passed_candidate"] == "1.3"
    # the two failures are reprompt examples whose solution is the passing candidate
    examples = store.pending_examples()
    assert len(examples) == 2 and {e["template"] for e in examples} == {"reprompt"}
    assert all("failed with this fix" in e["f"] and e["s"] == RIGHT for e in examples)
    assert {e["y"] for e in examples} == {WRONG_1, WRONG_2}
    assert all(e["x"] == engine.calls[0] for e in examples)  # x = the conversation the candidates answered
    # /undo reverts the applied fix (it went through the write_file tool)
    agent.undo("wrong fix")
    assert (repo / "app.py").read_text() == BUG


def test_without_learn_repair_the_fix_lands_and_no_candidate_becomes_an_example(repo):
    """The shipped default (setting learn_repair off): on the agent benchmark, training on the
    candidates lost tasks (docs/agent.md), so a repair teaches nothing unless asked to."""
    agent, store = make_agent(repo, ScriptedEngine([WRONG_1, WRONG_2, RIGHT]), approver=WatchingApprover(repo),
                              repairer=repairer(), learn_repair=False)
    result = agent.ask("The tests fail. Fix the bug.")
    assert result.repair.summary()["status"] == "fixed" and (repo / "app.py").read_text() == FIX
    assert store.pending_examples() == []


def test_no_passing_candidate_changes_nothing_and_says_so(repo):
    engine = ScriptedEngine([WRONG_1, WRONG_2, "no idea", WRONG_1])
    agent, store = make_agent(repo, engine, approver=WatchingApprover(repo), repairer=repairer(candidates=2, rounds=2))
    result = agent.ask("test_add fails, please fix it")
    assert result.stop_reason == "unfixed" and result.tests_passed is False
    assert "Nothing in your files was changed" in result.final_text and "closest attempt" in result.final_text
    assert (repo / "app.py").read_text() == BUG
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    # round 2 saw the closest failure of round 1
    assert "still fails" in engine.calls[2][-1]["content"]
    assert result.repair.summary()["rounds"] == 2 and len(store.pending_examples()) >= 3


def test_while_an_adapter_is_served_the_first_rounds_sample_from_the_base_weights(repo):
    """Setting repair_base_rounds: the base's first round comes first (a learned adapter adds candidates
    and cannot take them away), the later rounds sample from the adapter; without an adapter nothing changes."""
    engine = ScriptedEngine([WRONG_1, WRONG_2, WRONG_2, RIGHT])
    engine.load_adapter(repo, "v0003")
    agent, _ = make_agent(repo, engine, approver=WatchingApprover(repo), repairer=Repairer(RepairConfig(
        candidates=2, rounds=2, base_rounds=1, edit_format="search_replace")))
    result = agent.ask("The tests fail. Fix the bug.")
    assert result.repair.summary()["passed_candidate"] == "2.2"
    assert [p.base for p in engine.params] == [True, True, False, False]
    assert [c.completion.adapter_version for c in result.repair.candidates] == [None, None, "v0003", "v0003"]
    with pytest.raises(ValueError, match="base rounds"):
        Repairer(RepairConfig(base_rounds=-1))


def test_a_candidate_that_changes_a_test_is_refused_as_a_fix(repo):
    cheat = block("    assert add(1, 2) == 3", "    assert add(1, 2) == -1", path="test_app.py")
    engine = ScriptedEngine([cheat, RIGHT])
    agent, store = make_agent(repo, engine, approver=WatchingApprover(repo), repairer=repairer(candidates=2))
    result = agent.ask("Make the failing test pass.")
    first = result.repair.candidates[0]
    assert first.error and "test file test_app.py" in first.error and not first.passed
    assert result.repair.winner is result.repair.candidates[1]
    assert (repo / "test_app.py").read_text().count("== 3") == 1


def test_a_denied_fix_is_not_applied_and_is_feedback(repo):
    engine = ScriptedEngine([RIGHT])
    approver = WatchingApprover(repo, answer="yes")
    agent, _ = make_agent(repo, engine, approver=approver, repairer=repairer(candidates=1))
    approver.answer = "no"  # yes to running the check, no to the fix
    approver.approve = lambda call, preview: Decision("yes") if call.name == "run_tests" else Decision("no", "not now")
    result = agent.ask("fix the failing test")
    assert result.stop_reason == "denied" and (repo / "app.py").read_text() == BUG
    assert [f["kind"] for f in result.feedback][-1] == "denial"


def test_requests_that_are_not_about_failures_and_passing_checks_go_to_the_tool_loop(repo):
    (repo / "app.py").write_text(FIX)
    engine = ScriptedEngine(["All tests pass already."])
    agent, _ = make_agent(repo, engine, approver=WatchingApprover(repo), repairer=repairer())
    result = agent.ask("fix the tests if they fail")
    assert result.repair is None and result.final_text == "All tests pass already." and result.turns == 1
    assert not wants_repair("Explain what add does.") and wants_repair("pytest raises a TypeError")


@pytest.mark.slow
def test_a_killed_repair_leaves_the_tree_unchanged(repo, tmp_path):
    """SIGKILL while the candidates' checks run: nothing of the user's changed (attempts ran in a copy)."""
    (repo / "test_app.py").write_text((repo / "test_app.py").read_text()
                                      + "\nimport time\n\ndef test_slow():\n    time.sleep(30)\n")
    subprocess.run(["git", "commit", "-qam", "slow"], cwd=repo, check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@e"})
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([RIGHT] * 8))
    process = subprocess.Popen([sys.executable, "-m", "continualcode", "--repo", str(repo), "--engine", "scripted",
                                "--script", str(script), "-p", "fix the failing tests", "--yes", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    line = ""
    while "candidate" not in line and "sampling" not in line and time.monotonic() < deadline:
        line = process.stderr.readline()
    time.sleep(1.0)  # inside a candidate's check run
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert (repo / "app.py").read_text() == BUG
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            capture_output=True, text=True).stdout
    assert status == ""


# -- the pieces ---------------------------------------------------------------------------------------


def test_failures_name_the_frames_and_the_modules_the_tests_import(tmp_path):
    (tmp_path / "pricing").mkdir()
    (tmp_path / "pricing" / "__init__.py").write_text("")
    (tmp_path / "pricing" / "tax.py").write_text("RATE = 0\n")
    (tmp_path / "cart.py").write_text("from pricing.tax import RATE\n")
    (tmp_path / "test_cart.py").write_text("from cart import total\nimport pricing.tax\n")
    output = ("test_cart.py:4: in test_total\n    assert total([1]) == 2\nE   assert 1 == 2\n"
              "FAILED test_cart.py::test_total - assert 1 == 2\n1 failed, 3 passed in 0.01s\n")
    failure = read_failure(output, tmp_path)
    assert failure.frames == [("test_cart.py", 4)] and failure.failed == 1 and failure.passed == 3
    assert failure.failed_tests == ["test_cart.py::test_total"] and failure.score == 0.75
    assert "E   assert 1 == 2" in failure.output
    assert implicated_files(failure, tmp_path) == ["cart.py", "pricing/tax.py", "test_cart.py"]
    assert is_test_file("tests/helpers.py") and is_test_file("pkg/test_x.py") and not is_test_file("attest.py")


def test_search_replace_forgives_whitespace_but_not_ambiguity():
    text = "def f(x):\n    if x:\n        return 1\n    return 2\n"
    assert replace_lines(text, "if x:\n    return 1", "if not x:\n    return 1", "f.py") == \
        "def f(x):\n    if not x:\n        return 1\n    return 2\n"
    with pytest.raises(CandidateError, match="match nothing"):
        replace_lines(text, "return 3", "return 4", "f.py")
    with pytest.raises(CandidateError, match="several"):
        replace_lines("a\nb\na\n", "a", "c", "f.py")


@pytest.mark.parametrize("name,reply", [
    ("whole", "### app.py\n```python\ndef add(a, b):\n    return a + b\n```"),
    ("search_replace", RIGHT),
    ("lines", "app.py:2\n```python\n    return a + b\n```"),
    ("function", "```python\ndef add(a, b):\n    return a + b\n```"),
    ("function", "```python\ndef  add(a, b):\n    return a + b\n```"),  # a "def " prefix + " add": one space
])
def test_every_edit_form_parses_to_the_same_fix(name, reply):
    assert FORMATS[name].parse(reply, {"app.py": BUG, "test_app.py": "x\n"}) == {"app.py": FIX}


DOCUMENTED_BUG = 'def add(a, b):\n    """The sum of a and b."""\n    return a - b\n'
COPY = "```python\ndef add(a, b):\n    return a - b\n```"          # a fix that changes nothing
WRONG_FN = "```python\ndef add(a, b):\n    return a * b\n```"
RIGHT_BODY = "    return a + b\n```"                                  # after the forced head


def function_repairer(candidates=3, rewrites=1, rounds=1) -> Repairer:
    return Repairer(RepairConfig(candidates=candidates, rewrites=rewrites, rounds=rounds, edit_format="function"))


def test_rewrite_candidates_come_after_the_fixes_and_never_see_the_buggy_body(repo):
    (repo / "app.py").write_text(DOCUMENTED_BUG)
    engine = ScriptedEngine([COPY, WRONG_FN, RIGHT_BODY])
    agent, store = make_agent(repo, engine, approver=WatchingApprover(repo), repairer=function_repairer())
    result = agent.ask("The tests fail. Fix the bug.")
    assert result.tests_passed is True and result.repair.summary()["passed_candidate"] == "1.3"
    assert (repo / "app.py").read_text() == 'def add(a, b):\n    """The sum of a and b."""\n    return a + b\n'
    fix_context, rewrite_context = engine.calls[0][-1]["content"], engine.calls[2][-1]["content"]
    assert "return a - b" in fix_context and "### app.py" in fix_context
    assert "return a - b" not in rewrite_context and "def add" not in rewrite_context.split("```python")[1]
    assert "left out above" in rewrite_context and "assert add(1, 2) == 3" in rewrite_context
    # the rewrite's reply starts with the head: signature and docstring, through the newline
    winner = result.repair.winner
    assert winner.completion.text.startswith('```python\ndef add(a, b):\n    """The sum of a and b."""\n')
    # its failed siblings (the copy is unusable, the other failed) learn from it as their solution
    examples = store.pending_examples()
    assert {e["y"] for e in examples} == {COPY, WRONG_FN}
    assert all(e["s"] == winner.completion.text for e in examples)


def test_no_rewrites_when_off_or_when_the_suspect_is_unknown(repo):
    (repo / "app.py").write_text(DOCUMENTED_BUG)
    engine = ScriptedEngine([COPY, WRONG_FN, COPY])
    agent, _ = make_agent(repo, engine, approver=WatchingApprover(repo), repairer=function_repairer(rewrites=0))
    result = agent.ask("The tests fail. Fix the bug.")
    assert result.stop_reason == "unfixed" and len(engine.calls) == 3
    assert all("return a - b" in call[-1]["content"] for call in engine.calls)  # every candidate saw the code
    # at most half of a round rewrites: one candidate is a fix
    engine = ScriptedEngine([COPY])
    agent, _ = make_agent(repo, engine, approver=WatchingApprover(repo),
                          repairer=function_repairer(candidates=1, rewrites=4))
    assert agent.ask("The tests fail. Fix the bug.").stop_reason == "unfixed"
    assert len(engine.calls) == 1 and "return a - b" in engine.calls[0][-1]["content"]
    with pytest.raises(ValueError, match="rewrites"):
        Repairer(RepairConfig(rewrites=-1))


def test_a_long_docstring_is_the_fix_candidates_forced_start(repo):
    doc = '    """The sum of a and b.\n\n    >>> add(1, 2)\n    3\n    """\n'
    (repo / "app.py").write_text("def add(a, b):\n" + doc + "    return a - b\n")
    engine = ScriptedEngine(["    return a + b\n```"])
    agent, _ = make_agent(repo, engine, approver=WatchingApprover(repo),
                          repairer=function_repairer(candidates=1, rewrites=0))
    result = agent.ask("The tests fail. Fix the bug.")
    assert result.tests_passed is True
    assert result.repair.winner.completion.text == "```python\ndef add(a, b):\n" + doc + "    return a + b\n```"
