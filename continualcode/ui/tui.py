"""The full-screen interface (`python -m continualcode --tui`), built with Textual.

It is another face of the same `Session` as the REPL: the agent loop, the slash
commands, the store and the trainer are shared, only the approver and the event
sink differ. `Agent.ask` runs in a worker thread; its events reach the UI through
`App.call_from_thread`, and an approval request blocks that thread on a queue until
the user answers in the tool-call block.

Layout: the conversation (streamed replies, tool calls as collapsible blocks with
approve / always / deny-with-reason / edit-arguments controls) and the prompt on the
left; on the right the adapter timeline (select a version to inspect it or roll back)
and the live training status. `/credit [N]` (or Ctrl-O) opens the credit view;
`/solve` shows its attempts in the conversation and asks its questions in a dialog.
Every action has a key, listed in the footer; styles live in tui.tcss.
"""

from __future__ import annotations

import threading
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Footer, Header, Label, Static

from continualcode.agent.loop import Decision
from continualcode.agent.tool_calls import ToolCall
from continualcode.config import Settings
from continualcode.paths import log_path, state_dir
from continualcode.ui.console import plain, route_library_output
from continualcode.ui.slash import (
    SLASH_COMMANDS,
    QuitRequested,
    SlashError,
    cmd_solve,
    run_slash,
)
from continualcode.ui.tui_bridge import STOPPED, TUIApprover, TUIEvents
from continualcode.ui.tui_widgets import (
    AdapterTimeline,
    ChatMessage,
    CreditScreen,
    PromptInput,
    ToolCallBlock,
    TrainingStatus,
    timeline_rows,
    version_detail,
)


class ContinualCodeApp(App):
    CSS_PATH = "tui.tcss"
    TITLE = "continualcode"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+t", "adapters", "Adapters"),
        Binding("ctrl+o", "credit", "Credit"),
        Binding("ctrl+b", "toggle_side", "Side panel"),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("f1", "help", "Help"),
    ]

    def __init__(self, repo: Path, settings: Settings, *, resume: str | None = None, engine=None,
                 start_trainer: bool = True, refresh_seconds: float = 1.0) -> None:
        super().__init__()
        self.repo, self.settings, self.resume = Path(repo), settings, resume
        self.engine, self.start_trainer, self.refresh_seconds = engine, start_trainer, refresh_seconds
        self.session = None
        self.busy = False
        self.approver = TUIApprover(self)
        self.events = TUIEvents(self)
        self._cancel: threading.Event | None = None
        self._reply: ChatMessage | None = None
        self._last_reply: ChatMessage | None = None
        self._block: ToolCallBlock | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="chat"):
                yield VerticalScroll(id="conversation")
                commands = sorted(SLASH_COMMANDS)
                yield PromptInput(placeholder="Ask the agent, or / for commands (Tab completes)", id="prompt",
                                  suggester=SuggestFromList(commands, case_sensitive=False))
            with Vertical(id="side"):
                yield Label("Adapters", classes="side-title")
                yield AdapterTimeline(id="timeline")
                yield Static(id="version-detail")
                yield Label("Training", classes="side-title")
                yield TrainingStatus(id="training")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.settings.model} · {self.settings.engine} engine · loading…"
        self.say(f"opening {self.repo.name} …", "notice")
        self.main_screen.query_one("#prompt").focus()
        self.run_worker(self._open_session, thread=True, group="session", exit_on_error=False)
        self.set_interval(self.refresh_seconds, self.refresh_side)

    def _open_session(self) -> None:
        from continualcode.session import open_session

        try:
            session = open_session(self.repo, self.settings, self.approver, self.events, resume=self.resume,
                                   engine=self.engine, start_trainer=self.start_trainer)
        except Exception as exc:  # shown, not raised: the user can read it and quit
            self.from_thread(self.say, f"cannot open the session: {type(exc).__name__}: {exc}", "error")
            return
        route_library_output(log_path(self.repo))  # again, now that the engine imported transformers
        self.from_thread(self._session_ready, session)

    def _session_ready(self, session) -> None:
        self.session = session
        learning = "on" if session.trainer else "off"
        self.sub_title = f"{self.settings.model} · {self.settings.engine} · learning {learning}"
        self._replay()
        self.say(f"ready · adapter {session.engine.adapter_version or 'base'} · learning {learning} · "
                 "F1 for help", "notice")
        self.refresh_side()

    @property
    def main_screen(self):
        """The conversation screen (queries must not land on a credit screen pushed above it)."""
        return self.screen_stack[0]

    def _replay(self) -> None:
        """Show the agent's conversation from the start (after --resume, /resume or /clear)."""
        self.main_screen.query_one("#conversation").remove_children()
        self._reply = self._last_reply = self._block = None
        for message in self.session.agent.messages[1:]:  # [0] is the system prompt
            tool_result = message["role"] == "user" and message["content"].startswith("<result ")
            self.say(message["content"], "notice" if tool_result else message["role"])

    # -- thread bridge -----------------------------------------------------------------------
    def from_thread(self, callback, *args) -> bool:
        """Run `callback` on the UI thread and wait for it; False when the app has gone."""
        try:
            self.call_from_thread(callback, *args)
            return True
        except RuntimeError:
            return False

    # -- conversation ------------------------------------------------------------------------
    def say(self, text: str, role: str = "notice") -> ChatMessage:
        """Add a line of conversation: role user, assistant, notice or error."""
        return self.show(ChatMessage(role, text))

    def show(self, content):
        """Add a widget, or a rich renderable (slash-command output), to the conversation."""
        widget = content if isinstance(content, Widget) else Static(content, classes="output")
        conversation = self.main_screen.query_one("#conversation", VerticalScroll)
        conversation.mount(widget)
        conversation.scroll_end(animate=False)
        return widget

    def stream_text(self, piece: str) -> None:
        if self._reply is None:
            self._reply = self.say("", "assistant")
        self._reply.append(piece)
        self.main_screen.query_one("#conversation").scroll_end(animate=False)

    def end_reply(self, message_id: int, finish_reason: str) -> None:
        if self._reply is None:
            self._reply = self.say("", "assistant")
        self._reply.message_id = message_id
        if finish_reason == "cancelled":
            self._reply.append("  (stopped)")
        self._last_reply = self._reply
        self._reply = None

    def add_tool_call(self, call: ToolCall) -> None:
        reply = self._last_reply
        if reply is not None and call.raw and call.raw in reply.text:  # the block replaces the raw call text
            reply.set_text(reply.text.replace(call.raw, "").rstrip())
        self._block = ToolCallBlock(call)
        self.show(self._block)

    def request_approval(self, preview: str, deliver) -> None:
        self._block.ask(preview, deliver)
        self.main_screen.query_one("#conversation").scroll_end(animate=False)

    def tool_result(self, ok, output: str, decision: str, exit_code) -> None:
        if self._block is not None:
            self._block.show_result(ok, output, decision, exit_code)

    def on_tool_call_block_answered(self, message: ToolCallBlock.Answered) -> None:
        self.action_focus_prompt()

    # -- input -------------------------------------------------------------------------------
    def on_input_submitted(self, event) -> None:
        if event.input.id != "prompt":
            return
        line = event.value
        if not line.strip():
            return
        if self.session is None:
            self.notify("still loading the model…", severity="warning")
            return
        if self.busy:
            self.notify("the agent is working: wait for it, or press Esc to stop it", severity="warning")
            return
        event.input.value = ""
        if line.lstrip().startswith("/"):
            self.slash(line.strip())
        else:
            self.say(line, "user")
            self._start(self._ask, line)

    def _start(self, work, *args) -> None:
        self.busy = True
        self.run_worker(lambda: work(*args), thread=True, group="agent", exit_on_error=False)

    def _ask(self, line: str) -> None:
        self._cancel = threading.Event()
        try:
            result = self.session.agent.ask(line, cancel=self._cancel)
            notes = [] if result.stop_reason in {"answered", "cancelled"} else [f"({result.stop_reason})"]
            if result.examples:
                notes.append(f"{len(result.examples)} feedback example(s) queued for training")
            if notes:
                self.from_thread(self.say, " · ".join(notes), "notice")
        except Exception as exc:  # shown in the conversation; the session stays usable
            self.from_thread(self.say, f"{type(exc).__name__}: {exc}", "error")
        finally:
            self.from_thread(self._idle)

    def _idle(self) -> None:
        self.busy, self._reply = False, None
        self.refresh_side()

    def slash(self, line: str) -> None:
        name, _, arg = line.partition(" ")
        if name.lower() == "/quit":
            self.action_quit()
        elif name.lower() == "/credit":
            self.open_credit(arg.strip())
        elif name.lower() == "/solve":
            self.say(line, "user")
            self._start(self._run_slash, line, lambda: self._solve(arg))
        else:
            if name.lower() == "/adapters":
                self.action_adapters()
            self._start(self._run_slash, line)

    def _run_slash(self, line: str, run=None) -> None:
        """Run one slash command (``run`` instead of the table's handler, when given) and show its output."""
        try:
            conversation = self.session.session_id
            output = run() if run is not None else run_slash(self.session, line)
            if self.session.session_id != conversation:  # /clear or /resume switched conversations
                self.from_thread(self._replay)
            if output is not None:
                self.from_thread(self.show, plain(output) if isinstance(output, str) else output)
        except QuitRequested:
            self.from_thread(self.exit)
        except SlashError as exc:
            self.from_thread(self.say, str(exc), "error")
        except Exception as exc:
            self.from_thread(self.say, f"{line}: {type(exc).__name__}: {exc}", "error")
        finally:
            self.from_thread(self._idle)

    def _solve(self, arg: str):
        """/solve with its progress in the conversation and its questions as dialogs (tui_solve)."""
        from continualcode.ui.tui_solve import TUISolveUI

        return cmd_solve(self.session, arg, ui=TUISolveUI(self))

    # -- credit ------------------------------------------------------------------------------
    def open_credit(self, arg: str = "") -> None:
        if self.session is None or self.busy:
            self.notify("wait for the agent to finish first", severity="warning")
            return
        if arg and not arg.isdigit():
            self.say("usage: /credit [N]  (N-th most recent reply with feedback; default 1)", "error")
            return
        self.notify("scoring the reply with the teacher and the student…")
        self._start(self._credit, int(arg or 1))

    def _credit(self, n: int) -> None:
        from continualcode.learning.credit import CreditUnavailable, credit_for_turn

        try:
            view = credit_for_turn(self.session.engine, self.session.store, self.session.registry,
                                   self.session.session_id, n)
            self.from_thread(self.push_screen, CreditScreen(view))
        except CreditUnavailable as exc:
            self.from_thread(self.push_screen, CreditScreen(None, str(exc)))
        except Exception as exc:  # e.g. a corrupt adapter: shown, and the session stays usable
            self.from_thread(self.say, f"/credit: {type(exc).__name__}: {exc}", "error")
        finally:
            self.from_thread(self._idle)

    # -- side panel --------------------------------------------------------------------------
    def refresh_side(self) -> None:
        if self.session is None or not self.is_running:  # a last timer tick may fire while shutting down
            return
        self.main_screen.query_one(AdapterTimeline).show(timeline_rows(self.session.registry))
        trainer, store = self.session.trainer, self.session.store
        if trainer is not None:
            status = trainer.status()
            self.main_screen.query_one(TrainingStatus).show(
                learning="running" if status.running else "stopped", queue=status.queue,
                live=status.live_version, last=status.last_metrics, losses=status.recent_losses,
                error=status.last_error, phase=status.phase)
        else:  # no trainer here (scripted engine, --no-learn): show what the store knows
            steps = list(reversed(store.recent_train_steps(20)))
            live = self.session.registry.live()
            learning = "off" if not self.settings.learn else f"no trainer for the {self.settings.engine} engine"
            self.main_screen.query_one(TrainingStatus).show(
                learning=learning, queue=store.queue_length(), live=live.version if live else None,
                last=steps[-1]["metrics"] if steps else None,
                losses=[s["metrics"].get("loss", 0.0) for s in steps], error=None)

    def on_adapter_timeline_selected(self, message: AdapterTimeline.Selected) -> None:
        if message.action == "inspect":
            self.main_screen.query_one("#version-detail", Static).update(
                version_detail(self.session.registry, self.session.store, message.version))
        elif self.busy:
            self.notify("wait for the agent to finish before rolling back", severity="warning")
        else:
            self._start(self._run_slash, f"/rollback {message.version}")

    # -- actions -----------------------------------------------------------------------------
    def action_focus_prompt(self) -> None:
        self.main_screen.query_one("#prompt").focus()

    def action_stop(self) -> None:
        """Stop the generation in flight; a pending approval is answered with a denial."""
        if self._cancel is not None:
            self._cancel.set()
        if self._block is not None and self._block.mode not in ("idle", "done"):
            self._block.resolve(Decision("no", reason=STOPPED))
        self.approver.release()

    def action_adapters(self) -> None:
        self.main_screen.query_one("#side").display = True
        self.main_screen.query_one(AdapterTimeline).focus()

    def action_credit(self) -> None:
        self.open_credit()

    def action_toggle_side(self) -> None:
        side = self.main_screen.query_one("#side")
        side.display = not side.display

    def action_new_chat(self) -> None:
        if self.session is not None and not self.busy:
            self._start(self._run_slash, "/clear")

    def action_help(self) -> None:
        if self.session is not None and not self.busy:
            self._start(self._run_slash, "/help")

    def action_quit(self) -> None:
        self.action_stop()
        self.exit()

    def on_unmount(self) -> None:
        """However the app ends, the agent thread must not stay blocked on an approval."""
        self.approver.closed.set()
        self.approver.release()
        if self._cancel is not None:
            self._cancel.set()


def run_tui(repo: Path, settings: Settings, *, resume: str | None = None) -> int:
    state_dir(repo)
    route_library_output(log_path(repo))  # the trainer's model loading must not draw over the screen
    app = ContinualCodeApp(repo, settings, resume=resume)
    try:
        app.run()
    finally:
        if app.session is not None:
            print("saving and stopping the trainer…")
            app.session.close()
    return 0
