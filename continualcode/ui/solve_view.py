"""How a solve looks on the terminal: live progress, the diff, the two questions, the summary."""

from __future__ import annotations

import sys

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from continualcode.agent.tool_calls import ToolCall
from continualcode.solve.solver import AttemptReport, SolveEvents, SolveOutcome
from continualcode.ui.console import plain, visible


class ProgressLines(SolveEvents):
    """One rule per attempt, a line per tool call, the check result, the SDPO step metrics.

    Where the lines go is the subclass's: ``emit`` prints a rich renderable and
    ``working`` says what is running now (the model writing, the check, the steps).
    """

    def __init__(self) -> None:
        self._chars = 0
        self._attempt = 0
        self._budget = 0

    def emit(self, renderable) -> None:
        raise NotImplementedError

    def working(self, text: str) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def on_attempt_start(self, number: int, budget: int) -> None:
        self._attempt, self._budget, self._chars = number, budget, 0
        self.emit(Rule(f"attempt {number}/{budget}"))
        self.working(f"attempt {number}/{budget}: the agent is working")

    def on_text(self, piece: str) -> None:
        self._chars += len(piece)
        self.working(f"attempt {self._attempt}/{self._budget}: writing ({self._chars} chars)")

    def on_tool(self, call: ToolCall, ok: bool, output: str) -> None:
        target = call.args.get("path") or call.args.get("command") or ""
        mark = "[green]ok[/green]" if ok else "[red]failed[/red]"
        self.emit(Text.from_markup(f"  · {escape(call.name)} {escape(visible(target[:60]))} {mark}"))
        self.working(f"attempt {self._attempt}/{self._budget}: the agent is working")

    def on_check(self, attempt: AttemptReport) -> None:
        if attempt.passed:
            self.emit(Text.from_markup(f"  check [bold green]PASSED[/bold green] · {attempt.seconds:.1f} s · "
                                       f"changed {escape(visible(', '.join(attempt.changed_files) or 'nothing'))}"))
            return
        tail = "\n".join(attempt.check_output.strip().splitlines()[-6:])
        self.emit(Text.from_markup(f"  check [bold red]FAILED[/bold red] (exit {attempt.exit_code}) · "
                                   f"{attempt.seconds:.1f} s · {len(attempt.tool_calls)} tool call(s)"))
        if tail:
            self.emit(Panel(plain(tail), border_style="red", expand=False))

    def on_learn_start(self, number: int, turns: int) -> None:
        self.working(f"SDPO steps on attempt {number}'s {turns} turn(s)")

    def on_learn(self, number: int, metrics: dict) -> None:
        if metrics.get("skipped"):
            self.emit(Text(f"  no SDPO step: {metrics['skipped']}", style="yellow"))
            return
        line = Text(f"  SDPO · {metrics['steps']} step(s) on {metrics['examples']} turn(s) · loss "
                    f"{metrics['first_loss']:.4f} → {metrics['loss']:.4f} · divergence {metrics['divergence']:.4f} · "
                    f"advantage {metrics['advantage']:+.3f} · {metrics['seconds']:.1f} s")
        if metrics.get("rolled_back"):
            line.append(f" · rolled back: {metrics['rolled_back']}", style="yellow")
        self.emit(line)


class RichProgress(ProgressLines):
    """The lines on a terminal console, with a spinner line for what is running now."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console
        self.status = console.status("starting", spinner="dots")

    def __enter__(self) -> RichProgress:
        self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        self.status.stop()

    def emit(self, renderable) -> None:
        self.console.print(renderable, highlight=False)

    def working(self, text: str) -> None:
        self.status.update(text)


def diff_panel(diff: str) -> Panel:
    return Panel(Syntax(diff, "diff", word_wrap=True), title="diff of the passing attempt", expand=False)


class SolveUI:
    """What a solve needs from the interface it runs in: progress, the diff, yes/no questions."""

    def progress(self) -> SolveEvents:
        raise NotImplementedError

    def show_diff(self, diff: str) -> None:
        raise NotImplementedError

    def ask(self, question: str) -> bool:
        raise NotImplementedError


class TerminalUI(SolveUI):
    """The CLI and the REPL: a rich console; questions read the terminal, and are "no" without one."""

    def __init__(self, console: Console):
        self.console = console

    def progress(self) -> SolveEvents:
        return RichProgress(self.console)

    def show_diff(self, diff: str) -> None:
        self.console.print(diff_panel(diff))

    def ask(self, question: str) -> bool:
        if not sys.stdin.isatty():  # no one to say yes
            return False
        from rich.prompt import Confirm

        return Confirm.ask(question, console=self.console, default=False)


def summary(outcome: SolveOutcome, finished: dict):
    """The closing panel: solved or not, attempts, what happened to the diff and the adapter."""
    table = Table(show_header=False, box=None)
    table.add_row("result", "[green]solved[/green]" if outcome.solved else "[red]not solved[/red]")
    table.add_row("attempts", f"{len(outcome.attempts)}/{outcome.budget} ({outcome.method})")
    if outcome.solved:
        if finished["applied"]:
            table.add_row("diff", f"applied to {', '.join(finished['applied_files']) or 'the tree'}")
        else:
            reason = finished.get("apply_error") or "not applied"
            table.add_row("diff", f"{reason}; saved as {finished['patch_file']} (git apply FILE)")
    adapter = finished["adapter"]
    if adapter["decision"] == "merged":
        where = "live" if adapter["live"] else "kept, not live (the main line moved on during the solve)"
        parent = adapter["branched_from"] or "base"
        table.add_row("adapter", f"merged as {adapter['version']} (parent {parent}), {where}")
    elif adapter["decision"] == "discarded":
        table.add_row("adapter", f"task-local learning ({adapter['steps']} steps) discarded")
    return Group(table)
