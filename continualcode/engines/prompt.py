"""The one prompt renderer and the one stop rule, shared by every engine and by training.

SDPO's importance ratio compares the log-prob a token had when it was sampled
with its log-prob in the training forward, so both must condition on the same
prompt ids: the embedded engine, the vLLM engine (which sends token ids, not
text) and the student/teacher batch builder all call `render_prompt`. No torch
here: rendering needs only a tokenizer.
"""

from __future__ import annotations

from typing import Iterable

from continualcode.engines.base import Message


def render_prompt(tokenizer, messages: list[Message]) -> list[int]:
    """Chat-template token ids of `messages` followed by the assistant generation prompt.

    The template is rendered to text and tokenized without adding special
    tokens again (the template already wrote them).
    """
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_ids(tokenizer, model=None) -> set[int]:
    """Every token id that ends generation: the tokenizer's eos and the model's generation config's."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def turn_end_id(tokenizer) -> int | None:
    """The token that ends an assistant turn (appended when a stored reply is re-tokenized)."""
    return tokenizer.eos_token_id


def find_stop(text: str, stops: Iterable[str]) -> int | None:
    """Index just past the earliest stop string in `text` (the stop string is kept), or None."""
    best = None
    for stop in stops:
        at = text.find(stop)
        if stop and at >= 0 and (best is None or at + len(stop) < best):
            best = at + len(stop)
    return best


def cut_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """(`text` up to and including the earliest stop string, whether one was found)."""
    at = find_stop(text, stops)
    return (text, False) if at is None else (text[:at], True)
