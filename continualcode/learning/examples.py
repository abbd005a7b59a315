"""How a judged reply becomes a `TrainingExample`: one rule for the trainer, the credit view,
the task adapter and the benchmarks.

y's sampled token ids are used when they still spell y for this tokenizer;
otherwise (redacted, produced by another tokenizer or the scripted engine,
missing) y is re-tokenized and the token that ends an assistant turn is
appended, and the sampler's log-probs are dropped (the importance ratio then
counts as 1).
"""

from __future__ import annotations

from continualcode.engines.prompt import turn_end_id
from continualcode.learning.types import TrainingExample


def response_tokens(tokenizer, text: str, ids: list[int] | None = None,
                    logprobs: list[float] | None = None) -> tuple[list[int], list[float] | None]:
    """(token ids of y, the sampler's log-probs or None) by the rule above."""
    if ids and _ids_spell(tokenizer, ids, text):
        return list(ids), (list(logprobs) if logprobs is not None and len(logprobs) == len(ids) else None)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    end = turn_end_id(tokenizer)
    return ids + ([end] if end is not None else []), None


def training_example(row: dict, tokenizer) -> TrainingExample:
    """A stored example row (continualcode.store.training) as `sdpo_step` receives it."""
    ids, logprobs = response_tokens(tokenizer, row["y"], None if row.get("redacted") else row.get("y_token_ids"),
                                    row.get("y_logprobs"))
    return TrainingExample(messages=row["x"], response_ids=ids, feedback=row.get("f"),
                           solution=row.get("s"), template=row.get("template"), old_logprobs=logprobs,
                           meta={"id": row["id"]})


def _ids_spell(tokenizer, ids: list[int], text: str) -> bool:
    try:
        return tokenizer.decode(ids, skip_special_tokens=True).strip() == text.strip()
    except (ValueError, TypeError, OverflowError):
        return False
