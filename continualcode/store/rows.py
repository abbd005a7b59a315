"""Row encoding shared by the store's tables: the allowed values, JSON columns, timestamps."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from continualcode.store.redact import redact


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked; the message says what to do."""


class StoreVersionError(StoreError):
    """The file was written by a newer continualcode than this one."""


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
    if "edited_arguments" in record:
        record["edited_arguments"] = encode(record["edited_arguments"])
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



