"""Auto-commit: the agent's edits become commits naming the adapter version (real git repo)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from continualcode.agent.autocommit import commit_message
from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.loop import Agent, AgentEvents, Decision
from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.engines.scripted import ScriptedEngine
from continualcode.store.db import Store
from continualcode.tools import default_tools
from continualcode.tools.workspace import Workspace


class Yes:
    def approve(self, call, preview):
        return Decision("yes")


class Notices(AgentEvents):
    def __init__(self):
        self.lines: list[str] = []

    def on_notice(self, text: str) -> None:
        self.lines.append(text)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def agent(repo: Path, replies: list[str], *, auto_commit: bool, version: str | None = None):
    store = Store.for_repo(repo)
    engine = ScriptedEngine(replies)
    if version:
        engine.load_adapter(None, version)
    events = Notices()
    session = store.start_session(repo, "scripted", "scripted")
    return Agent(engine, store, session, Workspace(repo), default_tools(), Yes(), FeedbackRecorder(store),
                 system_prompt="sys", events=events, auto_commit=auto_commit), events


def call(name: str, **args: str) -> str:
    return render_tool_call(ToolCall(name, args))


def test_each_write_is_its_own_commit_naming_the_adapter(git_repo):
    (git_repo / "user.txt").write_text("the user's staged work\n")
    git(git_repo, "add", "user.txt")
    replies = [call("edit", path="app.py", search="a - b", replace="a + b"),
               call("write_file", path="src/new.py", content="X = 1\n"), "Done."]
    bot, events = agent(git_repo, replies, auto_commit=True, version="v0007")
    bot.ask("fix add and add a module")
    subjects = git(git_repo, "log", "--format=%s", "-3").splitlines()
    assert subjects == ["continualcode: write_file src/new.py", "continualcode: edit app.py", "init"]
    assert "Written by adapter v0007" in git(git_repo, "log", "-1", "--format=%b")
    assert git(git_repo, "show", "--name-only", "--format=", "HEAD~1").split() == ["app.py"]
    assert git(git_repo, "diff", "--cached", "--name-only").split() == ["user.txt"]  # still staged, not committed
    assert any(line.startswith("auto-committed app.py") for line in events.lines)


def test_off_by_default_and_failed_edits_are_not_committed(git_repo):
    head = git(git_repo, "rev-parse", "HEAD")
    bot, _ = agent(git_repo, [call("edit", path="app.py", search="a - b", replace="a + b"), "ok"], auto_commit=False)
    bot.ask("fix")
    bot, _ = agent(git_repo, [call("edit", path="app.py", search="no such text", replace="x"), "ok"], auto_commit=True)
    bot.ask("break")
    assert git(git_repo, "rev-parse", "HEAD") == head


def test_a_refused_commit_is_reported_not_raised(git_repo):
    bot, events = agent(git_repo, [call("write_file", path="a.txt", content="1\n"), "ok"], auto_commit=True)
    (git_repo / ".git" / "index.lock").write_text("")  # another git process holds the index
    result = bot.ask("write a")
    assert result.stop_reason == "answered" and (git_repo / "a.txt").read_text() == "1\n"
    assert any("auto-commit of a.txt skipped" in line for line in events.lines)


def test_message_for_base_weights():
    assert commit_message("edit", "app.py", None).endswith("Written by adapter base.\n")


def test_a_path_with_pathspec_magic_commits_only_that_file(git_repo):
    """Issue 13 item 5: `:(glob)**` is a file name, not git's "every file" pathspec."""
    (git_repo / "app.py").write_text("def add(a, b):\n    return 'the user is editing this'\n")
    (git_repo / "notes.txt").write_text("untracked and private\n")
    bot, events = agent(git_repo, [call("write_file", path=":(glob)**", content="X = 1\n"), "ok"], auto_commit=True)
    bot.ask("write the file")
    assert git(git_repo, "show", "--name-only", "--format=", "HEAD").split() == [":(glob)**"]
    assert git(git_repo, "status", "--porcelain").splitlines() == [" M app.py", "?? notes.txt"]
    assert any(line.startswith("auto-committed :(glob)**") for line in events.lines)
