"""`continualcode bench discover`: SDPO between attempts vs best-of-k vs multi-turn, on HumanEval.

The paper's test-time claim (arXiv 2601.20802, §5): on hard problems, running
SDPO on the single question between attempts reaches a solution in fewer
attempts than sampling independently (best-of-k) or keeping the test feedback
in a growing conversation (multi-turn). This bench measures discovery@k, the
probability that at least one of the first k attempts passes the problem's
tests, for the three methods at the same attempt budget:

- ``best-of-k``: k independent samples of the same prompt, base weights.
- ``multi-turn``: one conversation; after a failure the test output goes back
  as the next user message ("The tests failed: ... Fix the function").
- ``sdpo``: independent samples of the same prompt, but after each failure
  `TaskAdapter.learn` runs SDPO steps on (prompt, attempt, test output) with
  the reprompt template, and the next attempt is sampled from the new weights
  (the same branch, hot-swap and guard code as ``continualcode solve``).

Paired design: attempt n of every method uses the same sampling seed (from
problem, seed, n), so attempt 1 is the same sample for all three methods; it
is generated once and shared. Each attempt runs the problem's hidden tests in
the sandbox (`continualcode.evals.humaneval`); their output is the feedback.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from continualcode.engines.base import SamplingParams
from continualcode.evals.humaneval import (
    Problem,
    ProblemError,
    load_problems,
    run_candidate,
    select,
)
from continualcode.learning.task_adapter import TaskAdapter, Turn

METHODS = ("sdpo", "best-of-k", "multi-turn")

RETRY = ("The tests failed:\n\n{feedback}\n\nFix the function. Reply with the complete corrected function "
         "in one ```python code block, with no explanation.")
"""The multi-turn method's next user message after a failure."""

SCREEN_SEED_OFFSET = 100_000
"""Screening samples use other seeds than the bench's attempts, so choosing problems whose
screening samples failed does not also choose failing first attempts."""


@dataclass
class Attempt:
    number: int
    status: str                 # passed | failed | timeout
    generate_s: float
    check_s: float
    tokens: int
    learn_s: float = 0.0        # SDPO steps after this attempt (sdpo only)
    learn: dict | None = None
    shared: bool = False        # attempt 1, sampled once for all methods
    feedback: str = ""          # the tail of the test output
    reply: str = ""             # the sampled completion


@dataclass
class Run:
    task_id: str
    seed: int
    method: str
    budget: int
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def solved_at(self) -> int | None:
        return next((a.number for a in self.attempts if a.status == "passed"), None)

    def to_json(self) -> dict:
        return {**asdict(self), "solved_at": self.solved_at}

    @classmethod
    def from_json(cls, row: dict) -> Run:
        attempts = [Attempt(**a) for a in row["attempts"]]
        return cls(row["task_id"], row["seed"], row["method"], row["budget"], attempts)


def attempt_seed(task_id: str, seed: int, number: int) -> int:
    """The sampling seed of attempt `number`: the same for every method (paired comparison)."""
    return zlib.crc32(f"{task_id}|{seed}|{number}".encode())


class Discovery:
    """Runs the methods on problems with one serving engine and one task adapter (reset per run)."""

    def __init__(self, engine, adapter: TaskAdapter | None, *, budget: int, sampling: SamplingParams,
                 timeout: float = 10.0, on_attempt=None):
        self.engine, self.adapter, self.budget = engine, adapter, budget
        self.sampling, self.timeout = sampling, timeout
        self.on_attempt = on_attempt or (lambda run, attempt: None)
        self._first: dict[tuple[str, int], tuple] = {}

    def run(self, problem: Problem, seed: int, method: str) -> Run:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if method == "sdpo" and self.adapter is None:
            raise ValueError("the sdpo method needs a TaskAdapter")
        if self.adapter is not None:
            self.adapter.reset()  # base weights on the engine and in the branch
        run = Run(problem.task_id, seed, method, self.budget)
        messages = problem.messages()
        for number in range(1, self.budget + 1):
            if method == "sdpo":
                self.adapter.serve()
            completion, execution, generate_s, shared = self._sample(problem, seed, number, messages)
            attempt = Attempt(number, execution.status, round(generate_s, 3), round(execution.seconds, 3),
                              len(completion.token_ids), shared=shared, feedback=execution.feedback()[-300:],
                              reply=completion.text)
            run.attempts.append(attempt)
            if execution.passed or number == self.budget:
                self.on_attempt(run, attempt)
                break
            feedback = execution.feedback()
            if method == "sdpo":
                turn = Turn(list(messages), completion.text, completion.token_ids, completion.logprobs)
                attempt.learn = self.adapter.learn([turn], feedback)
                attempt.learn_s = round(attempt.learn["seconds"] + attempt.learn.get("swap_seconds", 0.0), 3)
            elif method == "multi-turn":
                messages = messages + [{"role": "assistant", "content": completion.text},
                                       {"role": "user", "content": RETRY.format(feedback=feedback)}]
            self.on_attempt(run, attempt)
        if self.adapter is not None:
            self.adapter.reset()
        return run

    def _sample(self, problem: Problem, seed: int, number: int, messages: list[dict]):
        key = (problem.task_id, seed)
        if number == 1 and key in self._first:
            return (*self._first[key], True)
        params = SamplingParams(**{**self.sampling.__dict__, "seed": attempt_seed(problem.task_id, seed, number)})
        started = time.perf_counter()
        completion = self.engine.generate(messages, params)
        generate_s = time.perf_counter() - started
        execution = run_candidate(problem, completion.text, timeout=self.timeout)
        if number == 1:
            self._first[key] = (completion, execution, generate_s)
        return completion, execution, generate_s, False


# -- choosing problems -----------------------------------------------------------------

def screen(engine, problems: list[Problem], *, samples: int, sampling: SamplingParams, cache: Path | None,
           timeout: float = 10.0, on_problem=None) -> dict[str, dict]:
    """Pass counts of `samples` base-model samples per problem, cached per model and sampling config."""
    config = f"samples={samples} T={sampling.temperature} top_p={sampling.top_p} max={sampling.max_new_tokens}"
    stored = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    results = {}
    for problem in problems:
        entry = stored.get(problem.task_id)
        if entry is None or entry.get("config") != config:
            passed = 0
            for i in range(samples):
                params = SamplingParams(**{**sampling.__dict__,
                                           "seed": attempt_seed(problem.task_id, SCREEN_SEED_OFFSET, i)})
                text = engine.generate(problem.messages(), params).text
                passed += run_candidate(problem, text, timeout=timeout).passed
            entry = {"config": config, "samples": samples, "passed": passed}
            stored[problem.task_id] = entry
            if cache is not None:
                _write_json(cache, stored)
        results[problem.task_id] = entry
        if on_problem is not None:
            on_problem(problem, entry)
    return results


def hard_problems(problems: list[Problem], screened: dict[str, dict], max_rate: float) -> list[Problem]:
    """Problems whose screening pass rate is at most `max_rate`, in id order."""
    return [p for p in problems if screened[p.task_id]["passed"] / screened[p.task_id]["samples"] <= max_rate]


def parse_problems(spec: str) -> tuple[list[Problem], bool]:
    """`humaneval`, `humaneval:IDS` or `humaneval:hard` -> (problems or the pool to screen, hard?)."""
    name, _, rest = spec.partition(":")
    if name.lower() != "humaneval":
        raise ProblemError(f"unknown problem set {name!r}; use humaneval, humaneval:0,5,12 or humaneval:hard")
    problems = load_problems()
    if rest.lower() == "hard":
        return list(problems.values()), True
    return (select(problems, rest) if rest else list(problems.values())), False


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_runs(path: Path) -> list[Run]:
    """Runs already in a results file (a line torn by a crash is skipped)."""
    runs = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                runs.append(Run.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
    return runs


def append_run(path: Path, run: Run) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(run.to_json()) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# -- command line ------------------------------------------------------------------------


__all__ = ["Attempt", "Discovery", "METHODS", "Run", "attempt_seed", "hard_problems", "parse_problems", "screen"]
