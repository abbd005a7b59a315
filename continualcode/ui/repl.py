"""The interactive REPL (prompt-toolkit input, rich output).

Enter sends; Esc-Enter (or Alt-Enter) inserts a newline; Tab completes slash
commands; Ctrl-C stops a generation without ending the session; Ctrl-D exits.
Approval prompts offer: yes, always (this tool, this session), no (with a
reason), or edit the arguments.
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

from continualcode.agent.loop import AgentEvents, Decision
from continualcode.agent.tool_calls import ToolCall
from continualcode.config import Settings
from continualcode.ui.slash import SLASH_COMMANDS, QuitRequested, SlashError, run_slash


class ConsoleEvents(AgentEvents):
    """Streams replies to the terminal and shows tool results as panels."""

    def __init__(self, console: Console):
        self.console = console

    def on_text(self, piece: str) -> None:
        self.console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)

    def on_reply(self, completion, message_id: int) -> None:
        self.console.print()
        if completion.finish_reason == "cancelled":
            self.console.print("[yellow](stopped)[/yellow]")

    def on_tool_result(self, call: ToolCall, result, decision: str) -> None:
        style = "green" if result.ok else "red"
        output = result.output if len(result.output) < 3000 else result.output[:3000] + "\n…"
        self.console.print(Panel(output or "(no output)", title=f"{call.name} · {decision}",
                                 border_style=style, expand=False))

    def on_notice(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")


class PromptApprover:
    """Asks on the terminal before write/edit/bash/run_tests."""

    def __init__(self, prompt: PromptSession, console: Console):
        self.prompt, self.console = prompt, console

    def approve(self, call: ToolCall, preview: str) -> Decision:
        self.console.print(Panel(Syntax(preview, "diff", word_wrap=True) if preview.startswith(("---", "@@"))
                                 else preview, title=f"{call.name}?", border_style="yellow", expand=False))
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


def _bindings() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _(event):
        event.current_buffer.insert_text("\n")

    return keys


def history_path(repo: Path) -> Path:
    path = repo / ".continualcode" / "history"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run_repl(repo: Path, settings: Settings, *, resume: str | None = None, tui: bool = False) -> int:
    if tui:
        from continualcode.ui.tui import run_tui

        return run_tui(repo, settings, resume=resume)
    from continualcode.session import open_session

    console = Console(highlight=False)
    prompt = PromptSession(history=FileHistory(str(history_path(repo))),
                           completer=WordCompleter(list(SLASH_COMMANDS), sentence=True),
                           key_bindings=_bindings(), multiline=False)
    console.print(f"[bold]continualcode[/bold] · {settings.model} · {settings.engine} engine · loading…")
    session = open_session(repo, settings, PromptApprover(prompt, console), ConsoleEvents(console), resume=resume)
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
                    console.print(f"[red]{exc}[/red]")
                    continue
                if output is not None:
                    console.print(output)
                continue
            _ask(session, line, console)
    finally:
        console.print("[dim]saving and stopping the trainer…[/dim]")
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
        console.print(f"[dim]({result.stop_reason})[/dim]")
    if result.examples:
        console.print(f"[dim]{len(result.examples)} feedback example(s) queued for training[/dim]")
