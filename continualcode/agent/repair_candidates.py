"""A repair candidate and what is said and kept about it (continualcode.agent.repair): sampling a round,
its diff and verdict, the closest failure, the feedback a failed one is judged by, and the side session it
is stored in for training."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from continualcode.agent.failures import Failure
from continualcode.engines.base import Completion, SamplingParams

FEEDBACK = "The check `{check}` failed with this fix (exit code {exit_code}):\n{failure}"
REPAIR_SESSION = "repair"
"""The store session kind of a stored candidate (`Store.list_sessions` leaves them out)."""


@dataclass
class Candidate:
    round: int
    index: int
    completion: Completion
    edits: dict[str, str] = field(default_factory=dict)
    error: str | None = None          # unusable reply: why
    passed: bool = False
    exit_code: int | None = None
    failure: Failure | None = None
    diff: str = ""
    message_id: int | None = None
    duplicate_of: int | None = None


def sample(engine, messages: list[dict], params: SamplingParams, n: int, cancel=None) -> list[Completion]:
    """n completions in one batch when the engine can (Engine.sample), else one at a time; each records
    the conversation it answered (`extra["messages"]`) for the training examples."""
    snapshot = [dict(m) for m in messages]
    if hasattr(engine, "sample"):
        completions = engine.sample(messages, params, n, cancel=cancel)
    else:
        completions = [engine.generate(messages, params, cancel=cancel) for _ in range(n)]
    for completion in completions:
        completion.extra["messages"] = snapshot
    return completions


def unified_diff(files: dict[str, str], edits: dict[str, str]) -> str:
    parts = []
    for path, new in edits.items():
        parts.extend(difflib.unified_diff(files[path].splitlines(keepends=True), new.splitlines(keepends=True),
                                          f"a/{path}", f"b/{path}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in parts)


def closest(candidates: list[Candidate]) -> Candidate | None:
    """The usable candidate that passed the most tests (ties: the earliest)."""
    scored = [c for c in candidates if c.failure is not None or c.passed]
    if not scored:
        return next((c for c in candidates if c.error is None), candidates[0] if candidates else None)
    return max(scored, key=lambda c: (1.0 if c.passed else c.failure.score, -c.round, -c.index))


def detail(failure: Failure) -> str:
    if failure.passed or failure.failed:
        return f"{failure.failed} failing, {failure.passed} passing"
    return "it errors before any test runs"


def candidate_feedback(check: str, candidate: Candidate) -> tuple[str, str]:
    """(feedback kind, text) a failed candidate is judged by: its check output, or why it was unusable."""
    if candidate.error:
        return "parse_error", f"This fix could not be used: {candidate.error}"
    output = candidate.failure.output if candidate.failure else ""
    return "test_failure", FEEDBACK.format(check=check, exit_code=candidate.exit_code, failure=output)


def verdict(candidate: Candidate) -> str:
    if candidate.error:
        return f"unusable ({candidate.error})"
    if candidate.duplicate_of is not None:
        return f"same fix as candidate {candidate.round}.{candidate.duplicate_of}"
    if candidate.passed:
        return "PASSED"
    return f"failed ({detail(candidate.failure)})" if candidate.failure else "failed"


def store_candidate(agent: Any, request: str, candidate: Candidate) -> int:
    """Keep a candidate with the conversation it answered, as a session of its own (kind "repair", not
    offered by /resume): its training examples read x from it like any other reply's."""
    store, completion = agent.store, candidate.completion
    session = store.start_session(repo_root=str(agent.workspace.root), model=agent.engine.model_name,
                                  engine=REPAIR_SESSION, title=f"candidate {candidate.round}.{candidate.index}: "
                                  f"{request.strip()[:60]}")
    for message in completion.extra.get("messages") or []:
        store.add_message(session, message["role"], message["content"])
    return store.add_message(session, "assistant", completion.text, token_ids=completion.token_ids,
                             logprobs=completion.logprobs, adapter_version=completion.adapter_version)
