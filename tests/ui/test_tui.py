"""The Textual TUI driven end to end by the pilot, with the scripted engine, a real store, a real
git repo and a real adapter registry (versions are tiny real PEFT adapters).

Snapshot tests (pytest-textual-snapshot) pin the main screens; they are skipped when the plugin
is not installed. Refresh them after an intended UI change with `pytest tests/test_tui.py
--snapshot-update` and review the SVGs in tests/__snapshots__/.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from continualcode.adapters.registry import AdapterRegistry
from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.config import Settings
from continualcode.engines.scripted import ScriptedEngine
from continualcode.learning.credit import Alternative, CreditView, TokenCredit
from continualcode.ui.tui import ContinualCodeApp
from continualcode.ui.tui_widgets import (
    AdapterTimeline,
    ChatMessage,
    CreditScreen,
    ToolCallBlock,
)

SIZE = (130, 42)
needs_snapshots = pytest.mark.skipif(importlib.util.find_spec("pytest_textual_snapshot") is None,
                                     reason="pytest-textual-snapshot is not installed (pip install -e '.[dev]')")

EDIT = render_tool_call(ToolCall("edit", {"path": "app.py", "search": "return a - b", "replace": "return a + b"}))
WRITE = render_tool_call(ToolCall("write_file", {"path": "app.py", "content": "pass\n"}))
NOTE = render_tool_call(ToolCall("write_file", {"path": "notes.txt", "content": "draft\n"}))


def make_app(repo: Path, replies: list[str], **settings) -> ContinualCodeApp:
    return ContinualCodeApp(repo, Settings(engine="scripted", model="scripted", **settings),
                            engine=ScriptedEngine(replies),
                            refresh_seconds=0.2)


async def until(pilot, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition.__code__.co_names}")
        await pilot.pause(0.02)


async def ready(pilot) -> None:
    await until(pilot, lambda: pilot.app.session is not None)


async def send(pilot, text: str) -> None:
    pilot.app.query_one("#prompt").value = text
    await pilot.press("enter")


def last_block(app) -> ToolCallBlock | None:
    blocks = app.query(ToolCallBlock)
    return blocks.last() if blocks else None


async def approval(pilot) -> ToolCallBlock:
    await until(pilot, lambda: last_block(pilot.app) is not None and last_block(pilot.app).mode == "choose")
    return last_block(pilot.app)


async def credit_screen(pilot) -> CreditScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, CreditScreen) and pilot.app.screen.query("Footer"))
    return pilot.app.screen


async def idle(pilot) -> None:
    await until(pilot, lambda: not pilot.app.busy)
    await pilot.pause(0.05)


def publish_two_versions(repo: Path, tmp_path: Path) -> AdapterRegistry:
    """v0001 → v0002 (live), both tiny real PEFT adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=64))
    adapter = tmp_path / "tiny-adapter"
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    registry = AdapterRegistry.for_repo(repo)
    common = dict(base_model="tiny", base_checksum=None)
    registry.publish_from_dir(adapter, parent=None, examples=[], metrics={"loss": 0.25, "advantage": -0.1},
                              **common)
    registry.set_promotion("v0001", "promoted", "gate off")
    registry.publish_from_dir(adapter, parent="v0001", examples=[], metrics={"loss": 0.125}, **common)
    registry.set_promotion("v0002", "promoted", "gate off")
    registry.set_live("v0002", reason="test")
    return registry


@pytest.fixture
def closing():
    apps: list[ContinualCodeApp] = []
    yield apps.append
    for app in apps:
        if app.session is not None:
            app.session.close()


@pytest.mark.anyio
async def test_prompt_approve_deny_timeline_rollback_credit(git_repo, tmp_path, closing):
    registry = publish_two_versions(git_repo, tmp_path)
    app = make_app(git_repo, [f"I will fix it.\n{EDIT}", "Fixed add.", f"Rewriting.\n{WRITE}"])
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.session.engine.adapter_version == "v0002"  # the live version was loaded at start

        await send(pilot, "fix add in app.py")
        block = await approval(pilot)
        assert "return a + b" in _text(block.preview)
        await pilot.press("y")
        await idle(pilot)
        assert (git_repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"
        assert "approved · ok" in block.title
        replies = [m.text for m in app.query(ChatMessage) if m.role == "assistant"]
        assert replies == ["I will fix it.", "Fixed add."]  # the raw call moved into its block

        await send(pilot, "now rewrite app.py from scratch")
        block = await approval(pilot)
        await pilot.press("n")
        assert block.mode == "reason" and app.focused is block.reason
        await pilot.press(*"keep the function")
        await pilot.press("enter")
        await idle(pilot)
        assert "return a + b" in (git_repo / "app.py").read_text()
        assert "denied: keep the function" in block.title
        store = app.session.store
        assert store.feedback_counts() == {"followup": 1, "denial": 1}
        [denial] = [e for e in store.pending_examples() if e["template"] == "reprompt"]
        assert "Reason: keep the function" in denial["f"]
        assert app.focused is app.query_one("#prompt")

        await pilot.press("ctrl+t")
        timeline = app.query_one(AdapterTimeline)
        assert app.focused is timeline
        await until(pilot, lambda: timeline.row_count == 3)
        assert [timeline.get_row_at(i)[1] for i in range(3)] == ["v0002", "v0001", "base"]
        assert timeline.get_row_at(0)[0] == "●"
        await pilot.press("down", "enter")
        detail = _text(app.query_one("#version-detail"))
        assert "v0001" in detail and "lineage  v0001 ← base" in detail and "loss 0.25" in detail
        await pilot.press("r")
        await idle(pilot)
        assert registry.live().version == "v0001" and app.session.engine.adapter_version == "v0001"
        await until(pilot, lambda: timeline.get_row_at(1)[0] == "●")

        await pilot.press("ctrl+o")
        await credit_screen(pilot)
        message = _text(app.screen.query_one("#credit-error"))
        assert "unavailable" in message and "scripted engine" in message
        await pilot.press("escape")
        assert not isinstance(app.screen, CreditScreen)


@pytest.mark.anyio
async def test_edit_arguments_always_and_escape(git_repo, closing):
    app = make_app(git_repo, [f"Writing.\n{NOTE}", "Done.", f"Again.\n{NOTE}", "Done again.", f"Once more.\n{EDIT}"])
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "write a note")
        block = await approval(pilot)
        await pilot.press("e")
        assert block.mode == "edit"
        block.editors["content"].text = "edited by me\n"
        await pilot.press("ctrl+s")
        await idle(pilot)
        assert (git_repo / "notes.txt").read_text() == "edited by me\n"
        [example] = app.session.store.pending_examples()
        assert "edited by me" in example["s"]  # the corrected call is the solution

        await send(pilot, "again")
        await approval(pilot)
        await pilot.press("a")
        await idle(pilot)
        assert "always" in last_block(app).title

        await send(pilot, "and fix app.py")  # `always` was for write_file only: edit still asks
        block = await approval(pilot)
        await pilot.press("escape")  # Stop: a pending approval is answered with a denial
        await idle(pilot)
        assert "denied: stopped by the user" in block.title
        assert (git_repo / "app.py").read_text() == "def add(a, b):\n    return a - b\n"


@pytest.mark.anyio
async def test_slash_completion_and_commands(git_repo, closing):
    app = make_app(git_repo, ["Hello."])
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press(*"/sta")
        await until(pilot, lambda: app.query_one("#prompt")._suggestion == "/status")
        await pilot.press("tab")
        assert app.query_one("#prompt").value == "/status"
        await pilot.press("enter")
        await idle(pilot)
        outputs = app.query(".output")
        assert outputs and "serving adapter" in _text(outputs.last())
        await send(pilot, "/credit x")
        assert "usage: /credit [N]" in [m.text for m in app.query(ChatMessage)][-1]
        await send(pilot, "/bogus")
        await idle(pilot)
        assert "unknown command" in [m.text for m in app.query(ChatMessage)][-1]
        await send(pilot, "hi")
        await idle(pilot)
        await send(pilot, "/credit")  # a reply with feedback exists now, but the scripted engine has no model
        await credit_screen(pilot)
        assert "scripted engine" in _text(app.screen.query_one("#credit-error"))
        await pilot.press("escape")
        first = app.session.session_id
        await send(pilot, "/clear")
        await idle(pilot)
        assert app.session.session_id != first
        assert not [m for m in app.query(ChatMessage) if m.role in ("user", "assistant")]  # the pane was cleared
        assert f"new conversation (session {app.session.session_id})" in _text(app.query(".output").last())
        await send(pilot, "/quit")
        await until(pilot, lambda: app.return_code == 0)


@pytest.mark.anyio
@pytest.mark.parametrize("answer", ["y", "n"])
async def test_solve_shows_attempts_and_asks_before_applying(git_repo, closing, answer):
    import sys

    from continualcode.ui.tui_solve import QuestionScreen

    (git_repo / "check_app.py").write_text("from app import add\n\nassert add(1, 2) == 3\n")
    wrong = render_tool_call(ToolCall("edit", {"path": "app.py", "search": "return a - b", "replace": "return a * b"}))
    app = make_app(git_repo, [wrong, "Done.", EDIT, "Fixed."], repair=False)  # scripted tool loop
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, f'/solve "make add add" --check "{sys.executable} -B check_app.py" --budget 2 '
                          "--method best-of-k")
        await until(pilot, lambda: isinstance(app.screen, QuestionScreen))
        assert "Apply this diff" in app.screen.question
        assert (git_repo / "app.py").read_text().endswith("return a - b\n")  # untouched while asking
        shown = "\n".join(_text(w) for w in app.main_screen.query(".output"))
        assert "attempt 1/2" in shown and "FAILED" in shown and "attempt 2/2" in shown and "PASSED" in shown
        assert "+    return a + b" in shown  # the diff of the passing attempt
        await pilot.press(answer)
        await idle(pilot)
        summary = _text(app.main_screen.query(".output").last())
        assert "solved" in summary and "2/2" in summary
        applied = (git_repo / "app.py").read_text().endswith("return a + b\n")
        assert applied == (answer == "y")
        assert ("applied to app.py" in summary) == (answer == "y")


def _text(widget) -> str:
    from rich.console import Console

    console = Console(width=120, record=True, file=open("/dev/null", "w"))
    console.print(widget.content)
    return console.export_text()


# -- snapshots -----------------------------------------------------------------------------------

def synthetic_credit() -> CreditView:
    """A fixed view (no model): tokens spanning disagree / neutral / reinforce, with alternatives."""
    pieces = [("Sure", -1.6), (",", 0.02), (" here", -0.3), (" is", 0.0), (" a", 0.05), (" long", -2.4),
              (" answer", 0.4), (".", 1.3), ("<|im_end|>", 0.01)]
    tokens = [TokenCredit(i, 100 + i, text, adv, -1.0 + adv, -1.0, [Alternative(7, "Yes", 0.61),
                                                                   Alternative(100 + i, text, 0.2),
                                                                   Alternative(9, "No", 0.05)])
              for i, (text, adv) in enumerate(pieces)]
    return CreditView(message_id=4, example_id=2, feedback="Answer with YES or NO only.", solution=None,
                      template="reprompt", trained_on=True, adapter_version=None, student="the base model",
                      teacher="the base model, reading the feedback", tokens=tokens)


@needs_snapshots
def test_snapshot_approval_prompt(git_repo, snap_compare, closing):
    app = make_app(git_repo, [f"I will fix it.\n{EDIT}", "Fixed add."])
    closing(app)

    async def run_before(pilot):
        await ready(pilot)
        await send(pilot, "fix add in app.py")
        await approval(pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(1.0)  # a loaded CI machine renders slowly

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)
    app.approver.release()


@needs_snapshots
def test_snapshot_timeline(git_repo, tmp_path, snap_compare, closing):
    publish_two_versions(git_repo, tmp_path)
    app = make_app(git_repo, [])
    closing(app)

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: app.query_one(AdapterTimeline).row_count == 3)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(1.0)  # a loaded CI machine renders slowly

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)


@needs_snapshots
def test_snapshot_credit_view(git_repo, snap_compare, closing):
    app = make_app(git_repo, [])
    closing(app)

    async def run_before(pilot):
        await ready(pilot)
        await app.push_screen(CreditScreen(synthetic_credit()))
        await pilot.press("right")  # from the worst token (" long") to the next one
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(1.0)  # a loaded CI machine renders slowly

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)


@pytest.mark.anyio
async def test_credit_screen_selection_and_click(git_repo, closing):
    app = make_app(git_repo, [])
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await app.push_screen(CreditScreen(synthetic_credit()))
        screen = app.screen
        assert screen.selected == 5  # opens on the strongest disagreement
        await pilot.press("left")
        assert screen.selected == 4
        await pilot.press("p")
        assert screen.selected == 2
        await pilot.press("n", "n")
        assert screen.selected == 5
        detail = _text(screen.query_one("#credit-detail"))
        assert "' long'" in detail and "'Yes'" in detail and "0.610" in detail
        await pilot.click("#credit-tokens", offset=(0, 0))  # tokens are clickable
        assert screen.selected == 0


@pytest.mark.slow
@pytest.mark.anyio
async def test_credit_view_on_the_real_model(git_repo, small_engine, closing):
    from continualcode.agent.feedback import FeedbackRecorder
    from continualcode.learning.credit import credit_for_message

    settings = Settings(model="smollm2-135m", engine="embedded", dtype="fp32", learn=False)
    app = ContinualCodeApp(git_repo, settings, engine=small_engine, refresh_seconds=0.2)
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        store, session = app.session.store, app.session.session_id
        store.add_message(session, "user", "Is water wet? Answer YES or NO.")
        ids = small_engine.tokenizer("Water is wet, so yes.", add_special_tokens=False)["input_ids"]
        reply = store.add_message(session, "assistant", "Water is wet, so yes.", token_ids=ids)
        FeedbackRecorder(store).record("denial", "I said YES or NO only.", reply)
        await pilot.press("ctrl+o")
        screen = await credit_screen(pilot)
        expected = credit_for_message(small_engine, None, store, reply)
        assert [t.advantage for t in screen.view.tokens] == pytest.approx([t.advantage for t in expected.tokens],
                                                                          abs=1e-5)
        await pilot.press("right")
        token = screen.view.tokens[screen.selected]
        detail = _text(screen.query_one("#credit-detail"))
        assert f"position {token.position}" in detail and repr(token.teacher_top[0].text) in detail


@pytest.mark.anyio
async def test_training_panel_shows_what_the_trainer_is_doing(git_repo, closing):
    """The recipe's progress (round, step, rollouts, seconds) reaches the side panel, as /status shows it."""
    from continualcode.learning.trainer import TrainerStatus

    phase = "training example 3: round 1/2 · step 2/4 · 4 rollouts sampled · 12 s"

    class Busy:
        def status(self) -> TrainerStatus:
            return TrainerStatus(running=True, queue=1, live_version="v0002", last_metrics={"loss": 0.5},
                                 last_error=None, steps_done=2, recent_losses=[0.7, 0.5], phase=phase)

        def stop(self, *_, **__) -> None:
            pass

    app = make_app(git_repo, ["Hello."])
    closing(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.session.trainer = Busy()
        app.refresh_side()
        text = _text(app.query_one("#train-text"))
        assert "learning  running" in text and f"now       {phase}" in text and "live      v0002" in text
        app.session.trainer = None
