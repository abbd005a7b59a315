"""Row encoding shared by the store's tables: the allowed values, JSON columns, timestamps, and
`prepare_row`, the one place every written row passes through (redaction, JSON encoding)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from continualcode.store.redact import redact


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked; the message says what to do."""


class StoreVersionError(StoreError):
    """The file was written by a newer continualcode than this one."""


class StoreCorruptError(StoreError):
    """The file is not an SQLite database, or a page of it is damaged."""


class StoreLockedError(StoreError):
    """Another process held the write lock for longer than the busy timeout."""


ROLES = ("system", "user", "assistant", "tool")
DECISIONS = ("approved", "always", "denied", "edited", "auto", "refused")
FEEDBACK_KINDS = ("followup", "denial", "edit", "tool_error", "test_failure", "test_pass",
                  "undo", "parse_error", "hook", "hook_pass", "manual")
EXAMPLE_STATUSES = ("pending", "training", "trained", "skipped", "failed")
ADAPTER_EVENTS = ("created", "promoted", "rejected", "rollback")
TOOL_CALL_FIELDS = ("decision", "decision_reason", "edited_arguments", "result", "exit_code",
                    "ok", "duration")
JSON_COLUMNS = {"token_ids", "logprobs", "arguments", "edited_arguments", "x", "y_token_ids",
                 "y_logprobs", "example_ids", "metrics", "detail"}
REDACTED_COLUMNS = {"title", "content", "arguments", "decision_reason", "edited_arguments", "result",
                    "text", "x", "y", "f", "s", "error", "detail"}
"""Every column of every table that holds free text (what a person, the model or a tool wrote)."""
SPELLING_COLUMNS = {"content": ("token_ids", "logprobs"), "y": ("y_token_ids", "y_logprobs")}
"""A text column and the sampled token ids and log-probs that spell it."""



def utc_now() -> str:
    """The store's timestamp format: ISO-8601 UTC, millisecond precision, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")



def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def tool_call_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(TOOL_CALL_FIELDS)
    if unknown:
        raise ValueError(f"unknown tool call fields {sorted(unknown)}; known: {', '.join(TOOL_CALL_FIELDS)}")
    if fields.get("decision") is not None:
        check_choice("decision", fields["decision"], DECISIONS)
    record = dict(fields)
    if record.get("ok") is not None:
        record["ok"] = int(bool(record["ok"]))
    return record


def encode(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decode(row: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_COLUMNS.intersection(row):
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def redact_json(value: Any) -> Any:
    """Redact every string inside a JSON-like value (x is a list of message dicts)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_json(item) for key, item in value.items()}
    return value


def prepare_row(record: dict[str, Any]) -> dict[str, Any]:
    """`record` as the store writes it: secrets redacted from every text column, lists and
    objects encoded as JSON. Every insert and update goes through here.

    When redaction changes a text that has sampled tokens (a message's content,
    an example's y), the token ids and log-probs still spell the secret: they
    are dropped and the row is flagged `redacted`, and the trainer re-tokenizes
    the text (`learning/examples.py:response_tokens`).
    """
    row = dict(record)
    for column in REDACTED_COLUMNS.intersection(row):
        row[column] = redact_json(row[column])
    for text, tokens in SPELLING_COLUMNS.items():
        if text in row and row[text] != record[text]:
            row.update(dict.fromkeys(tokens), redacted=1)
    for column in JSON_COLUMNS.intersection(row):
        row[column] = encode(row[column])
    return row
