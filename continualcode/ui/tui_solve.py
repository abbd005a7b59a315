"""/solve inside the TUI: progress lines in the conversation, the diff, and the two
questions (apply the diff? merge the task-local adapter?) as a yes/no dialog.

The solve runs on a worker thread (as every slash command does); it reaches the UI
through `App.call_from_thread`, and a question blocks that thread until the dialog is
answered. Esc, Ctrl-Q or the app going away answer "no": nothing is applied or
merged that the user did not say yes to.
"""

from __future__ import annotations

import queue

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from continualcode.solve.solver import SolveEvents
from continualcode.ui.console import plain
from continualcode.ui.solve_view import ProgressLines, SolveUI, diff_panel


class QuestionScreen(ModalScreen[bool]):
    """A yes/no question; dismissed with True (Yes, y) or False (No, n, Esc)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="question"):
            yield Static(plain(self.question), id="question-text")
            with Horizontal(id="question-buttons"):
                yield Button("Yes (y)", id="yes", variant="success")
                yield Button("No (n)", id="no", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter on the default does nothing irreversible

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConversationProgress(ProgressLines):
    """Solve progress as lines in the conversation; what is running now goes to the subtitle."""

    def __init__(self, app) -> None:
        super().__init__()
        self.app = app
        self._subtitle = app.sub_title

    def emit(self, renderable) -> None:
        self.app.from_thread(self.app.show, renderable)

    def working(self, text: str) -> None:
        self.app.from_thread(setattr, self.app, "sub_title", f"/solve · {text}")

    def __exit__(self, *exc) -> None:
        self.app.from_thread(setattr, self.app, "sub_title", self._subtitle)


class TUISolveUI(SolveUI):
    def __init__(self, app, poll_seconds: float = 0.2) -> None:
        self.app = app
        self.poll_seconds = poll_seconds

    def progress(self) -> SolveEvents:
        return ConversationProgress(self.app)

    def show_diff(self, diff: str) -> None:
        self.app.from_thread(self.app.show, diff_panel(diff))

    def ask(self, question: str) -> bool:
        answers: queue.Queue[bool] = queue.Queue()
        if not self.app.from_thread(self.app.push_screen, QuestionScreen(question), answers.put):
            return False
        while True:  # poll, so an app that exits without answering never strands this thread
            try:
                return bool(answers.get(timeout=self.poll_seconds))
            except queue.Empty:
                if not self.app.is_running or self.app.approver.closed.is_set():
                    return False
