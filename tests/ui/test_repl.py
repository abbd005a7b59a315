"""The real REPL in a real pseudo-terminal (pexpect), driven with the scripted engine."""

from __future__ import annotations

import json
import os
import sys

import pexpect

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.store.db import Store


def spawn(repo, script, *extra):
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "120", "LINES": "40",
           "XDG_CONFIG_HOME": str(repo.parent / "xdg")}
    child = pexpect.spawn(sys.executable, ["-m", "continualcode", "--engine", "scripted", "--script", str(script),
                                           "--repo", str(repo), *extra],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 120))
    child.expect("ready in")
    return child


def prompt(child):
    """Wait until prompt-toolkit shows the input prompt (it enables bracketed paste first)."""
    child.expect(r"\x1b\[\?2004h")


def test_ask_approve_deny_undo_quit_records_feedback(git_repo, tmp_path):
    edit = render_tool_call(ToolCall("edit", {"path": "app.py", "search": "return a - b", "replace": "return a + b"}))
    write = render_tool_call(ToolCall("write_file", {"path": "app.py", "content": "pass\n"}))
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([f"I will fix it.\n{edit}", "Fixed add.", f"Rewriting.\n{write}"]))
    child = spawn(git_repo, script)
    prompt(child)
    child.sendline("fix add in app.py")
    child.expect(r"allow\?")
    child.sendline("y")
    child.expect("Fixed add.")
    prompt(child)
    child.sendline("now rewrite app.py from scratch")
    child.expect(r"allow\?")
    child.sendline("n")
    child.expect("reason")
    child.sendline("keep the existing function")
    child.expect(r"\(denied\)")
    prompt(child)
    assert "a + b" in (git_repo / "app.py").read_text()
    child.sendline("/undo wrong approach")
    child.expect("reverted app.py")
    prompt(child)
    child.sendline("/bogus")
    child.expect("unknown command")
    prompt(child)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (git_repo / "app.py").read_text() == "def add(a, b):\n    return a - b\n"

    store = Store.for_repo(git_repo)
    counts = store.feedback_counts()
    assert counts == {"followup": 1, "denial": 1, "undo": 1}
    examples = store.pending_examples()
    by_template = sorted((e["template"], e["f"][:40]) for e in examples)
    assert [t for t, _ in by_template] == ["hindsight", "reprompt", "reprompt"]
    assert any("keep the existing function" in e["f"] for e in examples)
    assert any("wrong approach" in e["f"] for e in examples)
    exclude = (git_repo / ".git" / "info" / "exclude").read_text()
    assert ".continualcode/" in exclude


def test_ctrl_d_exits_cleanly_and_resume_continues(git_repo, tmp_path):
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["Hello there.", "Second answer."]))
    child = spawn(git_repo, script)
    prompt(child)
    child.sendline("hi")
    child.expect("Hello there.")
    prompt(child)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    child = spawn(git_repo, script, "--resume")
    prompt(child)
    child.sendline("/resume")
    child.expect("hi")
    prompt(child)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
