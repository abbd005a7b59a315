"""Paired comparison of agent-bench reports: the counts, the sign test, and the bench script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from continualcode.evals.agent_compare import compare, shared_tasks, sign_test

ROOT = Path(__file__).resolve().parents[2]


def report(**outcomes: bool) -> dict:
    return {"tasks": [{"id": task, "resolved": resolved} for task, resolved in outcomes.items()]}


@pytest.mark.parametrize("wins, losses, p", [(0, 0, 1.0), (0, 3, 0.25), (3, 0, 0.25), (5, 5, 1.0),
                                             (0, 6, 2 / 64), (1, 6, 2 * 8 / 128)])
def test_sign_test_by_hand(wins, losses, p):
    assert sign_test(wins, losses) == pytest.approx(p)


def test_gained_and_lost_are_counted_against_the_first_report():
    ids, rows = compare({"base": report(a=True, b=False, c=True, d=False, only_here=True),
                         "learn": report(d=True, c=False, b=False, a=True)})
    assert ids == ["a", "b", "c", "d"]  # the first report's order; only_here is not shared
    base, learn = rows
    assert (base.resolved, base.gained, base.lost) == (2, [], [])
    assert (learn.resolved, learn.gained, learn.lost) == (2, ["d"], ["c"])
    assert learn.p_value == 1.0


def test_a_task_a_report_lacks_is_an_error():
    with pytest.raises(ValueError, match="learn has no result for b"):
        compare({"base": report(a=True, b=True), "learn": report(a=True)}, ["a", "b"])
    with pytest.raises(ValueError, match="two reports"):
        compare({"base": report(a=True)})
    assert shared_tasks([report(a=True, b=True), report(b=False)]) == ["b"]


def test_the_bench_script_prints_the_table_for_a_range(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(report(t1=True, t2=True, t3=False, t4=True)))
    (tmp_path / "b.json").write_text(json.dumps(report(t1=False, t2=False, t3=True, t4=False)))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "agent_compare.py"), f"no={tmp_path / 'a.json'}",
                          f"yes={tmp_path / 'b.json'}", "--range", "2-4"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)}, check=True)
    assert "3 tasks: t2 … t4" in run.stdout
    assert "| yes | 1 / 3 | 1 | 2 | 1 |" in run.stdout
    assert "yes lost: t2, t4" in run.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "agent_compare.py"), "a.json", "b.json"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "LABEL=REPORT.json" in bad.stderr
