"""The interactive REPL (prompt-toolkit input, rich output).

Enter sends; Esc-Enter (or Alt-Enter) inserts a newline; Tab completes slash
commands; Ctrl-C stops a generation without ending the session; Ctrl-D exits.
Approval prompts offer: yes, always (this tool, this session), no (with a
reason), or edit the arguments.

Everything printed goes through the display layer (`continualcode.ui.console`):
the approval box shows the exact argument text that will run, whatever
brackets, escape sequences or control characters the model put in it.
Library warnings and the trainer's model loading go to `.continualcode/log`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from continualcode.agent.loop import AgentEvents, Decision
from continualcode.agent.tool_calls import ToolCall
from continualcode.config import Settings
from continualcode.paths import history_path, log_path, state_dir
from continualcode.ui.console import SafeConsole, plain, route_library_output, visible
from continualcode.ui.slash import SLASH_COMMANDS, QuitRequested, SlashError, run_slash


class ConsoleEvents(AgentEvents):
    """Streams replies to the terminal and shows tool results as panels."""

    def __init__(self, console: Console):
        self.console = console

    def on_text(self, piece: str) -> None:
        self.console.print(plain(piece), end="", soft_wrap=True)

    def on_reply(self, completion, message_id: int) -> None:
        self.console.print()
        if completion.finish_reason == "cancelled":
            self.console.print(Text("(stopped)", "yellow"))

    def on_tool_result(self, call: ToolCall, result, decision: str) -> None:
        style = "green" if result.ok else "red"
        output = result.output if len(result.output) < 3000 else result.output[:3000] + "\n…"
        self.console.print(Panel(plain(output or "(no output)"), title=plain(f"{call.name} · {decision}"),
                                 border_style=style, expand=False))

    def on_notice(self, text: str) -> None:
        self.console.print(plain(text, "dim"))


class PromptApprover:
    """Asks on the terminal before write/edit/bash/run_tests."""

    def __init__(self, prompt: PromptSession, console: Console):
        self.prompt, self.console = prompt, console

    def approve(self, call: ToolCall, preview: str) -> Decision:
        self.console.print(approval_box(call, preview))
        while True:
            answer = self.prompt.prompt("allow? [y]es / [a]lways / [n]o / [e]dit: ").strip().lower()
            if answer in {"y", "yes"}:
                return Decision("yes")
            if answer in {"a", "always"}:
                return Decision("always")
            if answer in {"n", "no"}:
                reason = self.prompt.prompt("reason (the agent learns from it): ").strip()
                return Decision("no", reason=reason or None)
            if answer in {"e", "edit"}:
                edited = {}
                for key, value in call.args.items():
                    edited[key] = self.prompt.prompt(f"{key}: ", default=value, multiline="\n" in value)
                return Decision("edit", args=edited)
            self.console.print("answer y, a, n or e")


def approval_box(call: ToolCall, preview: str) -> Panel:
    """What will run, exactly: a diff (coloured by line, never by its content) or the literal text."""
    if preview.startswith(("---", "@@", "new file")):
        body = Syntax(visible(preview), "diff", word_wrap=True)
    else:
        body = plain(preview)
    return Panel(body, title=plain(f"{call.name}?"), border_style="yellow", expand=False)


def _bindings() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _(event):
        event.current_buffer.insert_text("\n")

    return keys


def run_repl(repo: Path, settings: Settings, *, resume: str | None = None, tui: bool = False) -> int:
    if tui:
        from continualcode.ui.tui import run_tui

        return run_tui(repo, settings, resume=resume)
    from continualcode.session import open_session

    console = SafeConsole()
    state_dir(repo)
    route_library_output(log_path(repo))
    prompt = PromptSession(history=FileHistory(str(history_path(repo))),
                           completer=WordCompleter(list(SLASH_COMMANDS), sentence=True),
                           key_bindings=_bindings(), multiline=False)
    console.print(Text("continualcode", "bold") + plain(f" · {settings.model} · {settings.engine} engine · loading…"))
    session = open_session(repo, settings, PromptApprover(prompt, console), ConsoleEvents(console), resume=resume)
    route_library_output(log_path(repo))  # again: transformers is imported now
    console.print(f"ready in {repo} · adapter {session.engine.adapter_version or 'base'} · "
                  f"learning {'on' if session.trainer else 'off'} · /help for commands")
    try:
        while True:
            try:
                line = prompt.prompt("> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not line.strip():
                continue
            if line.lstrip().startswith("/"):
                try:
                    output = run_slash(session, line)
                except QuitRequested:
                    break
                except SlashError as exc:
                    console.print(plain(str(exc), "red"))
                    continue
                if output is not None:
                    console.print(output)
                continue
            _ask(session, line, console)
    finally:
        console.print(Text("saving and stopping the trainer…", "dim"))
        session.close()
    return 0


def _ask(session, line: str, console: Console) -> None:
    """Run one request; Ctrl-C cancels the generation in flight, not the session."""
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum, frame):
        cancel.set()

    signal.signal(signal.SIGINT, interrupt)
    try:
        session.sync_live()
        result = session.agent.ask(line, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.stop_reason not in {"answered", "cancelled"}:
        console.print(Text(f"({result.stop_reason})", "dim"))
    if result.examples:
        console.print(Text(f"{len(result.examples)} feedback example(s) queued for training", "dim"))
