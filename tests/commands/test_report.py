"""`continualcode report` on a real store file: history, terminal view, PNG, CLI."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from continualcode.cli import main
from continualcode.commands.report import (
    load_history,
    render_png,
    render_terminal,
    sparkline,
)
from continualcode.store.db import Store


def fill(store: Store) -> None:
    """Three batches, one rejected version, feedback of two kinds: what a short session leaves."""
    session = store.start_session("/tmp", "smollm2-135m", "embedded")
    store.add_message(session, "user", "hi")
    reply = store.add_message(session, "assistant", "hello")
    for kind in ("followup", "followup", "tool_error"):
        store.add_feedback(kind, "shorter", reply)
    for number, (loss, advantage, decision) in enumerate(
            [(0.9, -0.4, "promoted"), (0.6, -0.2, "promoted"), (0.5, -0.1, "rejected")], 1):
        version = f"v{number:04d}"
        store.add_train_step(version, [number], {"loss": loss, "first_loss": loss + 0.1, "advantage": advantage,
                                                 "steps": 2, "seconds": 5.0})
        scores = {"pass_live": 1.0, "pass_candidate": 1.0 if decision == "promoted" else 0.5, "seconds": 3.2}
        store.add_adapter_event(version, decision, {"decision": decision, "reason": f"why {number}",
                                                    "scores": scores})


def test_history_reads_steps_gate_scores_and_feedback_in_order(tmp_path):
    store = Store(tmp_path / "store.db")
    fill(store)
    history = load_history(store)
    assert [s["loss"] for s in history.steps] == [0.9, 0.6, 0.5]
    assert [s["advantage"] for s in history.steps] == [-0.4, -0.2, -0.1]
    assert [(v["version"], v["decision"], v["pass_candidate"]) for v in history.versions] == \
        [("v0001", "promoted", 1.0), ("v0002", "promoted", 1.0), ("v0003", "rejected", 0.5)]
    assert history.feedback == {"followup": 2, "tool_error": 1}
    assert load_history(store, last=2).steps[0]["loss"] == 0.6


def test_sparkline_spans_low_to_high():
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([None, 2.0, 2.0]) == " ▁▁"
    assert sparkline([]) == ""


def test_terminal_view_shows_curves_gate_table_and_feedback_bars(tmp_path):
    store = Store(tmp_path / "store.db")
    fill(store)
    console = Console(record=True, width=160)
    render_terminal(load_history(store), console)
    text = console.export_text()
    assert "loss" in text and "0.900 → 0.500" in text
    assert "v0003" in text and "rejected" in text and "1.00 → 0.50" in text and "why 3" in text
    assert "followup" in text and "██" in text


def test_empty_store_says_what_to_do(tmp_path):
    console = Console(record=True, width=120)
    render_terminal(load_history(Store(tmp_path / "store.db")), console)
    assert "nothing learned yet" in console.export_text()


def test_png_is_written_atomically_and_is_a_png(tmp_path):
    store = Store(tmp_path / "store.db")
    fill(store)
    out = tmp_path / "curves.png"
    render_png(load_history(store), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_cli_report_json_and_png(git_repo: Path, capsys):
    store = Store.for_repo(git_repo)
    fill(store)
    store.close()
    out = git_repo / "curves.png"
    assert main(["report", "--repo", str(git_repo), "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["steps"]) == 3 and data["png"] == str(out) and out.is_file()
    assert main(["report", "--repo", str(git_repo)]) == 0
    assert "promotion gate" in capsys.readouterr().out


def test_cli_report_without_a_store_is_a_usage_error(tmp_path, capsys):
    assert main(["report", "--repo", str(tmp_path)]) == 2
    assert "no store" in capsys.readouterr().err
