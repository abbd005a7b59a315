"""Between the agent's worker thread and the Textual app (continualcode.ui.tui): events and approvals.

`Agent.ask` runs in a worker thread; its events reach the UI through
`App.call_from_thread`, and an approval request blocks that thread on a queue
until the user answers in the tool-call block (or the app closes).
"""

from __future__ import annotations

import queue
import threading

from textual.app import App

from continualcode.agent.loop import AgentEvents, Decision
from continualcode.agent.tool_calls import ToolCall

STOPPED = "stopped by the user before answering"


class TUIEvents(AgentEvents):
    """Forwards the agent thread's events to the UI thread."""

    def __init__(self, app: App) -> None:
        self.app = app

    def on_text(self, piece: str) -> None:
        self.app.from_thread(self.app.stream_text, piece)

    def on_reply(self, completion, message_id: int) -> None:
        self.app.from_thread(self.app.end_reply, message_id, completion.finish_reason)

    def on_tool_call(self, call: ToolCall) -> None:
        self.app.from_thread(self.app.add_tool_call, call)

    def on_tool_result(self, call: ToolCall, result, decision: str) -> None:
        self.app.from_thread(self.app.tool_result, result.ok, result.output, decision, result.exit_code)

    def on_notice(self, text: str) -> None:
        self.app.from_thread(self.app.say, text, "notice")


class TUIApprover:
    """Blocks the agent thread until the user answers in the tool-call block."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.closed = threading.Event()
        self._waiting: set[queue.Queue] = set()

    def approve(self, call: ToolCall, preview: str) -> Decision:
        answers: queue.Queue = queue.Queue(maxsize=1)
        self._waiting.add(answers)
        try:
            if self.closed.is_set() or not self.app.from_thread(self.app.request_approval, preview, answers.put):
                return Decision("no", reason=STOPPED)
            while True:  # poll, so an app that exits without answering never strands this thread
                try:
                    return answers.get(timeout=0.25)
                except queue.Empty:
                    if self.closed.is_set() or not self.app.is_running:
                        return Decision("no", reason=STOPPED)
        finally:
            self._waiting.discard(answers)

    def release(self, reason: str = STOPPED) -> None:
        """Answer every pending request with a denial (Esc, or the app closing)."""
        for answers in list(self._waiting):
            try:
                answers.put_nowait(Decision("no", reason=reason))
            except queue.Full:
                pass
