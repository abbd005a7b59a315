"""The agent loop with the scripted engine, a real store, real tools and a real git repo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.file_history import UndoRefused
from continualcode.agent.loop import Agent, Decision
from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.engines.scripted import ScriptedEngine
from continualcode.store.db import Store
from continualcode.tools import ToolConfig, default_tools
from continualcode.tools.workspace import Workspace


def call(name: str, **args: str) -> str:
    return "Let me do that.\n" + render_tool_call(ToolCall(name, args))


class ScriptedApprover:
    """Answers approval prompts from a list; records what it was asked."""

    def __init__(self, *decisions: Decision):
        self.decisions = list(decisions)
        self.asked: list[ToolCall] = []

    def approve(self, call: ToolCall, preview: str) -> Decision:
        self.asked.append(call)
        return self.decisions.pop(0)


def make_agent(repo: Path, replies, approver=None, learn=True, repairer=None, learn_repair=True):
    """An agent on a real store; `replies` is a list of scripted replies or a ready engine."""
    store = Store.for_repo(repo)
    session = store.start_session(repo, "scripted", "scripted")
    tools = default_tools(ToolConfig(test_command=f"{sys.executable} -m pytest -q -p no:cacheprovider"))
    engine = replies if isinstance(replies, ScriptedEngine) else ScriptedEngine(replies)
    agent = Agent(engine, store, session, Workspace(repo), tools, approver or ScriptedApprover(),
                  FeedbackRecorder(store, learn=learn, learn_repair=learn_repair), system_prompt="sys",
                  repairer=repairer)
    return agent, store


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "test_app.py").write_text("from app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    return git_repo


def test_read_then_answer_stores_every_step(repo):
    agent, store = make_agent(repo, [call("read_file", path="app.py"), "It subtracts instead of adding."])
    result = agent.ask("What is wrong with add?")
    assert result.stop_reason == "answered" and result.final_text.startswith("It subtracts")
    assert [c.name for c in result.calls] == ["read_file"] and result.calls[0].ok
    rows = store.session_messages(agent.session_id)
    assert [r["role"] for r in rows] == ["system", "user", "assistant", "user", "assistant"]
    assert "return a - b" in rows[3]["content"]
    assert rows[2]["token_ids"] == list(rows[2]["content"].encode())  # assistant turns keep token ids
    assert store.queue_length() == 0  # nothing to learn from yet


def test_failing_tests_queue_an_example_and_a_later_pass_becomes_its_solution(repo):
    wrong = call("edit", path="app.py", search="return a - b", replace="return a * b")
    right = call("edit", path="app.py", search="return a * b", replace="return a + b")
    replies = [wrong, call("run_tests"), right, call("run_tests"), "Fixed."]
    agent, store = make_agent(repo, replies, ScriptedApprover(Decision("always"), Decision("always")))
    result = agent.ask("Fix add")
    assert result.tests_passed is True and result.stop_reason == "answered"
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"
    kinds = [f["kind"] for f in result.feedback]
    assert kinds == ["test_failure"]
    [example] = store.pending_examples()
    assert example["template"] == "reprompt" and "failed" in example["f"].lower()
    judged = store.message(example["message_id"])
    assert "return a * b" in judged["content"]  # the failure is charged to the step that made the edit
    assert example["x"][-1]["role"] == "user" and example["x"][0]["content"] == "sys"
    assert "return a + b" in example["s"]  # the passing step is the solution
    assert store.feedback_counts()["test_pass"] == 1


def test_denial_with_reason_stops_and_queues_reprompt_example(repo):
    approver = ScriptedApprover(Decision("no", reason="never touch app.py, edit utils.py"))
    agent, store = make_agent(repo, [call("write_file", path="app.py", content="x = 1\n")], approver)
    result = agent.ask("Rewrite app.py")
    assert result.stop_reason == "denied"
    assert (repo / "app.py").read_text().startswith("def add")
    [example] = store.pending_examples()
    assert example["template"] == "reprompt" and "never touch app.py" in example["f"]
    [tool_call] = store.message_tool_calls(example["message_id"])
    assert tool_call["decision"] == "denied"


def test_edited_arguments_run_and_become_the_solution(repo):
    approver = ScriptedApprover(Decision("edit", args={"path": "notes.txt", "content": "hello\n"}))
    agent, store = make_agent(repo, [call("write_file", path="app.txt", content="hi\n"), "Done."], approver)
    agent.ask("Write a note")
    assert (repo / "notes.txt").read_text() == "hello\n" and not (repo / "app.txt").exists()
    [example] = store.pending_examples()
    assert 'notes.txt' in example["s"] and "app.txt" not in example["s"]


def test_path_outside_repo_is_refused_before_any_prompt(repo):
    approver = ScriptedApprover()
    agent, store = make_agent(repo, [call("write_file", path="../evil.txt", content="x"),
                                     call("edit", path=".git/config", search="a", replace="b"), "ok"], approver)
    result = agent.ask("do it")
    assert approver.asked == []
    assert [c.decision for c in result.calls] == ["refused", "refused"]
    assert not (repo.parent / "evil.txt").exists()
    assert [f["kind"] for f in result.feedback] == ["tool_error", "tool_error"]


def test_malformed_call_goes_back_as_error_and_is_feedback(repo):
    agent, store = make_agent(repo, ['<tool name="read_file">\n<arg name="pth">app.py</arg>\n</tool>', "sorry"])
    result = agent.ask("read app.py")
    assert [f["kind"] for f in result.feedback] == ["parse_error"]
    rows = store.session_messages(agent.session_id)
    assert "malformed" in rows[3]["content"] and rows[3]["role"] == "user"


def test_followup_is_hindsight_feedback_on_the_previous_reply(repo):
    agent, store = make_agent(repo, ["Sure, here is a long explanation...", "ok"])
    agent.ask("explain add")
    first_reply = agent.last_reply_id
    agent.ask("Answer in one line please.")
    [example] = store.pending_examples()
    assert example["message_id"] == first_reply and example["template"] == "hindsight"
    assert example["f"] == "Answer in one line please."


def test_no_learn_records_feedback_but_queues_nothing(repo):
    agent, store = make_agent(repo, ["a", "b"], learn=False)
    agent.ask("q1")
    agent.ask("q2")
    assert store.feedback_counts()["followup"] == 1 and store.queue_length() == 0


def test_undo_restores_through_git_and_refuses_over_user_changes(repo):
    edit = call("edit", path="app.py", search="return a - b", replace="return a + b")
    agent, store = make_agent(repo, [edit, "done", edit, "done"],
                              ScriptedApprover(Decision("yes"), Decision("yes")))
    agent.ask("fix")
    assert "a + b" in (repo / "app.py").read_text()
    assert agent.undo("I prefer to fix it myself") == "reverted app.py"
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a - b\n"
    undo = [e for e in store.pending_examples() if "undid" in e["f"]]
    assert undo and "I prefer to fix it myself" in undo[0]["f"]
    with pytest.raises(UndoRefused, match="nothing to undo"):
        agent.undo()
    agent.ask("fix again")
    (repo / "app.py").write_text("# the user's own edit\n")
    with pytest.raises(UndoRefused, match="changed since"):
        agent.undo()
    assert (repo / "app.py").read_text() == "# the user's own edit\n"


def test_resume_replays_the_stored_conversation(repo):
    agent, store = make_agent(repo, ["first answer"])
    agent.ask("hello")
    again = Agent(ScriptedEngine(["second"]), store, agent.session_id, Workspace(repo), agent.tools,
                  ScriptedApprover(), FeedbackRecorder(store), system_prompt="other")
    assert again.messages == agent.messages and again.last_reply_id == agent.last_reply_id


def test_an_identical_repeated_call_is_refused_and_ends_the_turn(repo):
    """Issue 16: the bundled model repeated one run_tests call until the budget ran out; a repeat is
    refused (and is feedback) and the turn ends with a plain message instead."""
    grep = call("grep", pattern="nothing matches this")
    engine = ScriptedEngine([grep, grep, grep, "never reached"])
    agent, store = make_agent(repo, engine)
    result = agent.ask("find it")
    assert [c.decision for c in result.calls] == ["auto", "refused"]
    assert "exact call" in result.calls[1].output
    assert result.stop_reason == "repeated_call" and "repeat the same tool call" in result.final_text
    assert [f["kind"] for f in result.feedback] == ["tool_error"] and result.turns == 2
    assert len(engine.calls) == 2  # the budget was not spent
