"""The one probe set: prompts every adapter version is asked (the gate's checks, `adapters diff`, the step bench)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from continualcode.learning.checks import Check

if TYPE_CHECKING:
    pass


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


GENERAL_PROBES: tuple[Check, ...] = (
    Check(_user("What is 2 + 3?"), [r"\b5\b"]),
    Check(_user("What is the capital of France?"), [r"Paris"]),
    Check(_user("Write a Python function add(a, b) that returns the sum of a and b."),
          [r"def add\(", r"a\s*\+\s*b"]),
    Check(_user("What color is the sky on a clear day?"), [r"(?i)\bblue\b"]),
)
"""Checks the base SmolLM2 passes greedily within 32 tokens (so a regression shows) and a collapsed
model fails (no constant answer passes all four)."""


DEFAULT_PROBES = (
    "Write a Python function that returns the largest of three numbers.",
    "What does `git stash` do? Answer briefly.",
    "Is 17 a prime number?",
)
