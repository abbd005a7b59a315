"""The TUI's widgets: chat messages, tool-call blocks with approval controls, the adapter
timeline, the training status and the credit screen.

Split from `continualcode.ui.tui` (the app: layout, bindings, threads) so each file stays
short. The widgets know nothing of the agent thread: a tool-call block is handed a
callback that delivers the user's `Decision`, and the app wires that to the blocked
approver.
"""

from __future__ import annotations

import math
from typing import Callable

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    Collapsible,
    DataTable,
    Footer,
    Input,
    Label,
    Sparkline,
    Static,
    TextArea,
)

from continualcode.agent.loop import Decision
from continualcode.agent.tool_calls import ToolCall
from continualcode.learning.credit import NEUTRAL_BAND, CreditView
from continualcode.ui.console import plain
from continualcode.ui.credit_view import alternatives_table, credit_text, header, legend

RESULT_LIMIT = 3000
"""Characters of tool output shown in a block (the model saw all of it)."""


class PromptInput(Input):
    """The prompt line: Enter sends, Tab accepts the slash-command completion."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def action_complete(self) -> None:
        if self.value.startswith("/") and self.cursor_at_end:
            self.action_cursor_right()  # accepts the suggestion when there is one
        else:
            self.screen.focus_next()


class ChatMessage(Static):
    """One turn in the conversation; assistant turns grow as text streams in."""

    def __init__(self, role: str, text: str = "", message_id: int | None = None) -> None:
        super().__init__(plain(text), classes=role)
        self.role, self.text, self.message_id = role, text, message_id

    def append(self, piece: str) -> None:
        self.set_text(self.text + piece)

    def set_text(self, text: str) -> None:
        self.text = text
        self.update(plain(text))


class ToolCallBlock(Collapsible):
    """A tool call: its preview, approve / always / deny-with-reason / edit controls, then its result."""

    BINDINGS = [
        Binding("y", "answer('yes')", "Approve"),
        Binding("a", "answer('always')", "Always"),
        Binding("n", "deny", "Deny…"),
        Binding("e", "edit", "Edit args…"),
        Binding("ctrl+s", "run_edited", "Run edited"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, call: ToolCall) -> None:
        self.call = call
        self.deliver: Callable[[Decision], None] | None = None
        self.mode = "idle"  # idle | choose | reason | edit | done
        self.verdict: str | None = None  # the user's answer, as the title shows it
        self.preview = Static(classes="preview")
        self.controls = Horizontal(
            Button("Approve (y)", id="approve", variant="success"),
            Button("Always (a)", id="always", variant="primary"),
            Button("Deny (n)", id="deny", variant="error"),
            Button("Edit (e)", id="edit"),
            classes="controls",
        )
        self.reason = Input(placeholder="why not? (the agent learns from it) — Enter to deny, Esc to go back",
                            classes="reason")
        self.editors = {key: TextArea(value, classes="arg") for key, value in call.args.items()}
        edit_parts = []
        for key, editor in self.editors.items():
            edit_parts += [Label(key), editor]
        self.edit_form = Vertical(*edit_parts, Button("Run edited (ctrl+s)", id="run-edited", variant="warning"),
                                  classes="edit-form")
        self.result = Static(classes="result")
        for part in (self.controls, self.reason, self.edit_form, self.result):
            part.display = False  # here, not in on_mount: an approval request can arrive before mounting ends
        super().__init__(self.preview, self.controls, self.reason, self.edit_form, self.result,
                         title=_call_title(call), collapsed=True)

    # -- asking ------------------------------------------------------------------------
    def ask(self, preview: str, deliver: Callable[[Decision], None]) -> None:
        """Show the controls; `deliver` hands the user's answer to the waiting agent thread."""
        self.deliver = deliver
        self.preview.update(Syntax(preview, "diff", word_wrap=True) if preview.startswith(("---", "@@"))
                            else plain(preview))
        self.add_class("pending")
        self.title = f"{_call_title(self.call)} · allow?"
        self.collapsed = False
        self._set_mode("choose")

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self.controls.display = mode == "choose"
        self.reason.display = mode == "reason"
        self.edit_form.display = mode == "edit"
        self.refresh_bindings()
        target = {"choose": "#approve", "reason": ".reason", "edit": ".arg"}.get(mode)
        if target:
            self.query(target).first().focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = {"answer": ("choose",), "deny": ("choose",), "edit": ("choose",),
                   "run_edited": ("edit",), "back": ("reason", "edit")}
        if action in allowed:
            return self.mode in allowed[action]
        return True

    def action_answer(self, kind: str) -> None:
        self.resolve(Decision(kind))

    def action_deny(self) -> None:
        self._set_mode("reason")

    def action_edit(self) -> None:
        self._set_mode("edit")

    def action_back(self) -> None:
        self._set_mode("choose")

    def action_run_edited(self) -> None:
        self.resolve(Decision("edit", args={key: editor.text for key, editor in self.editors.items()}))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"approve": lambda: self.action_answer("yes"), "always": lambda: self.action_answer("always"),
                   "deny": self.action_deny, "edit": self.action_edit, "run-edited": self.action_run_edited}
        actions[event.button.id]()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the reason box must not reach the app's prompt handler
        self.resolve(Decision("no", reason=event.value.strip() or None))

    def resolve(self, decision: Decision) -> None:
        if self.mode in ("idle", "done") or self.deliver is None:
            return
        deliver, self.deliver = self.deliver, None
        self.remove_class("pending")
        label = {"yes": "approved", "no": "denied", "edit": "edited"}.get(decision.kind, decision.kind)
        self.verdict = label + (f": {decision.reason}" if decision.reason else "")
        self.title = f"{_call_title(self.call)} · {self.verdict}"
        self._set_mode("done")
        deliver(decision)
        self.post_message(self.Answered(self))

    class Answered(Message):
        """The user answered; the app gives the prompt its focus back."""

        def __init__(self, block: ToolCallBlock) -> None:
            super().__init__()
            self.block = block

    # -- after running -----------------------------------------------------------------
    def show_result(self, ok: bool | None, output: str, decision: str, exit_code: int | None) -> None:
        self.add_class("ok" if ok else "failed")
        if decision in ("denied", "refused"):
            self.title = f"{_call_title(self.call)} · {self.verdict or decision}"
        else:
            status = "ok" if ok else "failed" + (f" (exit {exit_code})" if exit_code not in (None, 0) else "")
            self.title = f"{_call_title(self.call)} · {decision} · {status}"
        shown = output if len(output) <= RESULT_LIMIT else output[:RESULT_LIMIT] + "\n… (truncated here)"
        self.result.update(plain(shown or "(no output)"))
        self.result.display = True
        self.collapsed = bool(ok)


def _call_title(call: ToolCall) -> str:
    first = next(iter(call.args.values()), "")
    first = first.splitlines()[0] if first else ""
    return f"⚙ {call.name} {first[:60]}".rstrip()


class AdapterTimeline(DataTable):
    """Adapter versions newest first (● live), then the base model; Enter inspects, r rolls back."""

    BINDINGS = [
        Binding("enter", "inspect", "Inspect"),
        Binding("r", "rollback", "Roll back here"),
        Binding("escape", "leave", "Back to prompt"),
    ]

    class Selected(Message):
        def __init__(self, version: str, action: str) -> None:
            super().__init__()
            self.version, self.action = version, action

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: list[tuple] | None = None

    def on_mount(self) -> None:
        self.add_column("", width=1)  # the live marker: a fixed width, so a redraw cannot narrow it
        self.add_columns("version", "parent", "gate", "ex", "loss")

    def show(self, rows: list[dict]) -> None:
        """Redraw when the versions changed (called on every refresh tick)."""
        shown = [(r["version"], r["parent"], r["gate"], r["live"], r["corrupt"], r["examples"], r.get("loss"))
                 for r in rows]
        if shown == self._shown:
            return
        self._shown = shown
        current = self.cursor_row
        self.clear()
        any_live = any(r["live"] for r in rows)
        for r in reversed(rows):
            gate = Text("corrupt", "red") if r["corrupt"] else Text(r["gate"] or "", _GATE_STYLE.get(r["gate"], ""))
            loss = f"{r['loss']:.3f}" if isinstance(r.get("loss"), (int, float)) else ""
            self.add_row("●" if r["live"] else "", r["version"], r["parent"], gate, str(r["examples"]), loss,
                         key=r["version"])
        self.add_row("" if any_live else "●", "base", "", "", "", "", key="base")
        self.move_cursor(row=min(current, self.row_count - 1))

    def selected_version(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def action_inspect(self) -> None:
        if version := self.selected_version():
            self.post_message(self.Selected(version, "inspect"))

    def action_rollback(self) -> None:
        if version := self.selected_version():
            self.post_message(self.Selected(version, "rollback"))

    def action_leave(self) -> None:
        self.app.action_focus_prompt()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_inspect()


_GATE_STYLE = {"promoted": "green", "rejected": "red", "pending": "yellow"}


def timeline_rows(registry) -> list[dict]:
    """The registry's versions as the timeline shows them (oldest first)."""
    return [{"version": v.version, "parent": v.parent or "base", "gate": v.decision, "live": v.live,
             "corrupt": v.corrupt, "examples": v.n_examples, "loss": v.metrics.get("loss")}
            for v in registry.list()]


def version_detail(registry, store, version: str) -> Text:
    """What the timeline's Enter shows: lineage, commit, gate verdict, metrics, what it learned."""
    if version == "base":
        return Text("base model: no adapter. r rolls back to it.")
    v = registry.get(version)
    text = Text(f"{v.version}", "bold")
    text.append(" ● live" if v.live else "", "green")
    text.append(f"\nlineage  {' ← '.join(registry.lineage(version) + ['base'])}")
    text.append(f"\ncreated  {str(v.created)[:19]}  commit {(v.commit or '-')[:10]}")
    promotion = v.promotion
    text.append(f"\ngate     {v.decision or '-'} {promotion.get('reason', '')}".rstrip())
    for key, value in (promotion.get("scores") or {}).items():
        text.append(f"\n  {key}: {value}")
    metrics = v.metrics
    if metrics:
        text.append("\nmetrics  " + ", ".join(f"{k} {metrics[k]:.4g}" for k in
                                              ("loss", "divergence", "advantage", "steps") if k in metrics))
    for example_id in v.examples[:5]:
        row = store.example(example_id) or {}
        text.append(f"\n#{example_id} " + (row.get("f") or "")[:70].replace("\n", " "), "dim")
    if v.corrupt:
        text.append(f"\ncorrupt: {v.corrupt}", "red")
    return text


class TrainingStatus(Vertical):
    """Queue, last step's loss and mean advantage, and a sparkline of recent step losses."""

    def compose(self) -> ComposeResult:
        yield Static(id="train-text")
        yield Sparkline([], id="losses", summary_function=max)

    def show(self, *, learning: str, queue: int, live: str | None, last: dict | None,
             losses: list[float], error: str | None, phase: str | None = None) -> None:
        lines = [f"learning  {learning}", f"queue     {queue} pending", f"live      {live or 'base'}"]
        if phase and phase != "idle":  # the event's round, step, rollouts sampled, prompts expanded, seconds
            lines.append(f"now       {phase}")
        if last:
            lines.append(f"last step loss {last.get('loss', math.nan):.4f}")
            lines.append(f"mean advantage {last.get('advantage', math.nan):+.3f}")
        if losses:
            lines.append(f"{len(losses)} recent step(s)")
        text = Text("\n".join(lines))
        if error:
            text.append(f"\nerror: {error}", "red")
        self.query_one("#train-text", Static).update(text)
        self.query_one("#losses", Sparkline).data = list(losses)


class CreditScreen(Screen):
    """A judged reply coloured by the teacher's advantage; ←/→ select a token to see the teacher's top-k."""

    BINDINGS = [
        Binding("left", "move(-1)", "Prev token"),
        Binding("right", "move(1)", "Next token"),
        Binding("n", "jump(1)", "Next disagreement"),
        Binding("p", "jump(-1)", "Prev disagreement"),
        Binding("escape,q", "app.pop_screen", "Close"),
    ]

    def __init__(self, view: CreditView | None, error: str | None = None, band: float = NEUTRAL_BAND) -> None:
        super().__init__()
        self.view, self.error, self.band = view, error, band
        self.selected = 0

    def compose(self) -> ComposeResult:
        if self.view is None:
            yield Static(Text("Credit view unavailable\n\n", "bold") + plain(self.error or ""), id="credit-error")
        else:
            yield Static(header(self.view), id="credit-header")
            with VerticalScroll(id="credit-body", can_focus=False):  # ←/→ select tokens, not scroll
                yield Static(id="credit-tokens")
            yield Static(legend(self.view, self.band), id="credit-legend")
            yield Static(id="credit-detail")
        yield Footer()

    def on_mount(self) -> None:
        if self.view is not None and self.view.tokens:
            worst = min(self.view.tokens, key=lambda t: t.advantage)
            self.select_token(worst.position if worst.advantage <= -self.band else 0)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("move", "jump"):
            return self.view is not None and bool(self.view.tokens)
        return True

    def select_token(self, position: int) -> None:
        if self.view is None or not self.view.tokens:
            return
        self.selected = max(0, min(position, len(self.view.tokens) - 1))
        self.query_one("#credit-tokens", Static).update(
            credit_text(self.view, self.band, self.selected, click_action="screen.select_token"))
        self.query_one("#credit-detail", Static).update(alternatives_table(self.view.tokens[self.selected]))

    def action_select_token(self, position: int) -> None:
        self.select_token(position)

    def action_move(self, step: int) -> None:
        self.select_token(self.selected + step)

    def action_jump(self, direction: int) -> None:
        """To the next (or previous) token the teacher disagrees with."""
        if self.view is None:
            return
        positions = [t.position for t in self.view.tokens if t.advantage <= -self.band]
        ahead = [p for p in positions if (p - self.selected) * direction > 0]
        if ahead:
            self.select_token(min(ahead, key=lambda p: abs(p - self.selected)))
