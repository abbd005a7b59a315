"""The one probe set: prompts every adapter version is asked (the gate's checks, `adapters diff`, the step
bench) and the replay set that keeps them answered while a feedback is learned (``learning.recipe``)."""

from __future__ import annotations

from dataclasses import dataclass

from continualcode.learning.checks import Check
from continualcode.learning.examples import response_tokens


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


GENERAL_PROBES: tuple[Check, ...] = (
    Check(_user("What is 2 + 3?"), [r"\b5\b"]),
    Check(_user("What is the capital of France?"), [r"Paris"]),
    Check(_user("Write a Python function add(a, b) that returns the sum of a and b."),
          [r"def add\(", r"a\s*\+\s*b"]),
    Check(_user("What color is the sky on a clear day?"), [r"(?i)\bblue\b"]),
    Check(_user("What is the opposite of 'up'?"), [r"(?i)\bdown\b"]),
    Check(_user("Who wrote 'Romeo and Juliet'?"), [r"(?i)shakespeare"]),
    Check(_user("Name the first month of the year."), [r"(?i)january"]),
    Check(_user("How many days are in a week?"), [r"(?i)\b(7|seven)\b"]),
)
"""Checks the base SmolLM2 passes greedily within 32 tokens (so a regression shows; the base Qwen2.5-Coder
passes all but ``add``, whose preamble outlasts 32 tokens) and a collapsed model fails (no constant
answer passes them all). Eight, not four: where the learning bench leaves out
the probes a scenario holds out, four left too few to see a model that answers every question with a
number (docs/learning.md, "The gate on the bench")."""


DEFAULT_PROBES = (
    "Write a Python function that returns the largest of three numbers.",
    "What does `git stash` do? Answer briefly.",
    "Is 17 a prime number?",
)


def replay_prompts(exclude: list[list[dict]] = ()) -> list[list[dict]]:
    """General prompts replayed while a feedback is learned (forgetting control): the general probes,
    then the default probes, minus any conversation in ``exclude`` (a benchmark's held-out items must
    not be trained on)."""
    skip = {repr(m) for m in exclude}
    prompts = [list(c.messages) for c in GENERAL_PROBES] + [_user(text) for text in DEFAULT_PROBES]
    return [p for p in prompts if repr(p) not in skip]


@dataclass
class Accepted:
    """An answer that worked: its conversation and token ids."""

    messages: list[dict]
    response_ids: list[int]


def accepted_answers(store, tokenizer, limit: int = 4) -> list[Accepted]:
    """Recent accepted answers: solutions given to examples, and replies whose tests or hook passed.

    The gate scores their log-prob; the recipe's replay keeps them close to the pre-update policy.
    """
    found: list[Accepted] = []
    for example in store.recent_examples(limit * 4):
        if example.get("s") and example["x"]:
            found.append(Accepted(example["x"], response_tokens(tokenizer, example["s"])[0]))
    for session in store.list_sessions(20, candidates=True):  # repair winners live in candidate sessions
        for message in reversed(store.messages_with_feedback(session["id"])):
            kinds = {f["kind"] for f in message["feedback"]}
            if kinds and kinds <= {"test_pass", "hook_pass"}:
                ids, _ = response_tokens(tokenizer, message["content"], message.get("token_ids"))
                found.append(Accepted(store.conversation_before(message), ids))
    return [a for a in found if a.messages and a.response_ids][:limit]
