"""The real REPL in a real pseudo-terminal (pexpect), driven with the scripted engine."""

from __future__ import annotations

import json
import os
import sys

import pexpect

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.store.db import Store


def spawn(repo, script, *extra):
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
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
    assert [t for t, _ in by_template] == ["prefix", "reprompt", "reprompt"]  # setting followup_template
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


# -- what the user approves is what runs (issue 13, item 1) ---------------------------------------------

HOSTILE = [
    "python3 -c 'a=[7]; i=0; print(a[i])'",
    "ls files[abc].txt",
    "echo [conceal]secret[/conceal] [bold]x[/] :smile:",
    "printf 'x\x1b[2J\x1b]0;title\x07y'",
    "echo 'evil \u202e txt.exe' \r over",
]


def rendered(renderable, width=200) -> str:
    import io

    from continualcode.ui.console import SafeConsole

    buffer = io.StringIO()
    SafeConsole(file=buffer, width=width, force_terminal=True, color_system=None).print(renderable)
    return buffer.getvalue()


def test_the_approval_box_shows_the_exact_command():
    from continualcode.tools import default_tools
    from continualcode.ui.console import visible
    from continualcode.ui.repl import approval_box

    bash = default_tools()["bash"]
    for command in HOSTILE:
        preview = bash.preview({"command": command}, None)
        shown = rendered(approval_box(ToolCall("bash", {"command": command}), preview))
        assert visible(f"$ {command}") in shown, (command, shown)
        assert "\x1b" not in shown and "\r" not in shown and "\u202e" not in shown


def test_model_text_and_tool_output_are_never_markup():
    import io

    from continualcode.tools.base import ToolResult
    from continualcode.ui.console import SafeConsole
    from continualcode.ui.repl import ConsoleEvents

    buffer = io.StringIO()
    events = ConsoleEvents(SafeConsole(file=buffer, width=120, force_terminal=True, color_system=None))
    events.on_text("see a[i] and [red]x[/red]")
    events.on_tool_result(ToolCall("read_file", {"path": "p.py"}), ToolResult(True, 'SEP = r"[/\\\\]"\n[/]'), "auto")
    events.on_notice("committed [bold]x[/bold]")
    out = buffer.getvalue()
    assert "a[i]" in out and "[red]x[/red]" in out and 'r"[/\\\\]"' in out and "[/]" in out
    assert "[bold]x[/bold]" in out


def test_a_hostile_command_reaches_the_real_repls_approval_box_intact(git_repo, tmp_path):
    command = "python3 -c 'a=[7]; i=0; print(a[i])' # [conceal]hidden[/conceal]"
    call = render_tool_call(ToolCall("bash", {"command": command}))
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([f"Running it.\n{call}", "Done."]))
    child = spawn(git_repo, script)
    prompt(child)
    child.sendline("run it")
    child.expect(r"allow\?")
    assert "print(a[i])" in child.before and "[conceal]hidden[/conceal]" in child.before
    child.sendline("y")
    child.expect("Done.")
    prompt(child)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
