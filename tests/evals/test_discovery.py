"""The discovery bench's loop and statistics, with the scripted engine and real sandboxed tests."""

from __future__ import annotations

import json

import pytest

from continualcode.engines.base import SamplingParams
from continualcode.engines.scripted import ScriptedEngine
from continualcode.evals.discovery import (
    Attempt,
    Discovery,
    Run,
    hard_problems,
    parse_problems,
    screen,
)
from continualcode.evals.discovery_report import (
    bootstrap_ci,
    discovery_at,
    markdown_table,
    summarize,
)
from continualcode.evals.humaneval import load_problems


@pytest.fixture(scope="module")
def problem():
    return load_problems()["HumanEval/0"]


def right(problem) -> str:
    return f"```python\ndef has_close_elements(numbers, threshold):\n{problem.canonical_solution}```"


WRONG = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"


def bench(engine, budget=3):
    return Discovery(engine, None, budget=budget, sampling=SamplingParams(max_new_tokens=16))


def test_best_of_k_stops_at_the_first_pass_and_shares_attempt_one(problem):
    engine = ScriptedEngine([WRONG, WRONG, right(problem), WRONG, right(problem)])
    runner = bench(engine)
    run = runner.run(problem, 0, "best-of-k")
    assert run.solved_at == 3 and [a.status for a in run.attempts] == ["failed", "failed", "passed"]
    assert all(call == problem.messages() for call in engine.calls)  # independent samples of one prompt
    multi = runner.run(problem, 0, "multi-turn")
    assert multi.attempts[0].shared and multi.solved_at == 3 and len(engine.calls) == 5  # attempt 1 reused
    retry = engine.calls[3]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert "AssertionError" in retry[-1]["content"] and retry[1]["content"] == WRONG


def test_the_budget_bounds_a_run_and_sdpo_needs_an_adapter(problem):
    run = bench(ScriptedEngine([WRONG], loop=True), budget=2).run(problem, 1, "best-of-k")
    assert run.solved_at is None and len(run.attempts) == 2
    with pytest.raises(ValueError, match="TaskAdapter"):
        bench(ScriptedEngine([WRONG])).run(problem, 0, "sdpo")


def fake_run(seed: int, method: str, solved_at: int | None, budget: int = 4) -> Run:
    learn_s = 1.0 if method == "sdpo" else 0.0
    attempts = [Attempt(n, "passed" if n == solved_at else "failed", 2.0, 0.1, 10, learn_s=learn_s)
                for n in range(1, (solved_at or budget) + 1)]
    return Run(f"HumanEval/{seed}", seed, method, budget, attempts)


def test_discovery_at_k_and_the_seed_bootstrap():
    runs = [fake_run(0, "sdpo", 1), fake_run(0, "sdpo", None), fake_run(1, "sdpo", 3), fake_run(1, "sdpo", 2)]
    assert [discovery_at(runs, k) for k in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 0.75]
    low, high = bootstrap_ci(runs, 2)
    assert (low, high) == (0.5, 0.5)  # both seeds solve one of their two problems by k=2
    low, high = bootstrap_ci(runs, 1)
    assert low == 0.0 and high == 0.5  # seed 0 alone: 0.5, seed 1 alone: 0.0
    summary = summarize(runs + [fake_run(0, "best-of-k", None)], 4, ["sdpo", "best-of-k"])
    row = summary["methods"]["sdpo"]
    assert row["solved"] == 3 and row["attempts"] == 10 and row["seconds_per_attempt"]["learn"] == 1.0
    assert summary["methods"]["best-of-k"]["discovery"] == [0.0] * 4
    assert "| sdpo | 0.25 [0.00, 0.50]" in markdown_table(summary)


def test_runs_round_trip_through_json():
    run = fake_run(0, "sdpo", 2)
    assert Run.from_json(json.loads(json.dumps(run.to_json()))).solved_at == 2


def test_screen_caches_and_hard_keeps_low_pass_rates(tmp_path, problem):
    problems = load_problems()
    other = problems["HumanEval/2"]
    engine = ScriptedEngine([right(problem), WRONG, WRONG, WRONG])
    cache = tmp_path / "screen.json"
    sampling = SamplingParams(temperature=0.8)
    screened = screen(engine, [problem, other], samples=2, sampling=sampling, cache=cache)
    assert screened["HumanEval/0"]["passed"] == 1 and screened["HumanEval/2"]["passed"] == 0
    again = screen(ScriptedEngine([]), [problem, other], samples=2, sampling=sampling, cache=cache)
    assert again == screened  # no sampling the second time: the engine has no replies
    assert [p.task_id for p in hard_problems([problem, other], screened, 0.25)] == ["HumanEval/2"]
    assert [p.task_id for p in hard_problems([problem, other], screened, 0.5)] == ["HumanEval/0", "HumanEval/2"]


def test_parse_problems():
    assert [p.number for p in parse_problems("humaneval:3,4")[0]] == [3, 4]
    pool, hard = parse_problems("humaneval:hard")
    assert hard and len(pool) == 164
    with pytest.raises(ValueError, match="unknown problem set"):
        parse_problems("mbpp")


def test_distinct_replies_flags_a_run_that_repeats_itself():
    from continualcode.evals.discovery_report import distinct_replies

    same = fake_run(0, "sdpo", None)
    for attempt in same.attempts:
        attempt.reply = "the same answer"
    varied = fake_run(1, "sdpo", None)
    for attempt in varied.attempts:
        attempt.reply = f"answer {attempt.number}"
    assert distinct_replies([same]) == 0.25 and distinct_replies([varied]) == 1.0
    assert distinct_replies([fake_run(2, "sdpo", 1)]) is None  # one attempt says nothing
