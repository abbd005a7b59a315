"""The store's schema, as an ordered list of migrations.

`PRAGMA user_version` holds the number of migrations applied. `Store` runs the
missing ones, in order, inside one write transaction when it opens a file, so
a half-migrated file cannot exist and two processes opening a fresh file
migrate it once. A migration is frozen once released: change the schema by
appending a new function, never by editing an old one (files written by old
versions must keep upgrading the same way).

Content types: timestamps are ISO-8601 UTC strings; columns holding lists or
objects (token ids, log-probs, tool arguments, x, metrics) are JSON text.
"""

from __future__ import annotations

from typing import Callable

import sqlite_utils

from continualcode.store.rows import REDACTED_COLUMNS, decode, prepare_row, redact_json


def v1_initial(db: sqlite_utils.Database) -> None:
    """Sessions, messages, tool calls, feedback, examples, train steps, adapter events."""
    db["sessions"].create(
        {"id": int, "created": str, "repo_root": str, "model": str, "engine": str,
         "title": str, "ended": str},
        pk="id", not_null={"created", "repo_root", "model", "engine"},
    )
    db["messages"].create(
        {"id": int, "session_id": int, "idx": int, "role": str, "content": str,
         "token_ids": str, "adapter_version": str, "created": str},
        pk="id", not_null={"session_id", "idx", "role", "content", "created"},
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db["tool_calls"].create(
        {"id": int, "message_id": int, "name": str, "arguments": str, "decision": str,
         "decision_reason": str, "edited_arguments": str, "result": str, "exit_code": int,
         "ok": int, "duration": float, "created": str},
        pk="id", not_null={"message_id", "name", "arguments", "created"},
        foreign_keys=[("message_id", "messages", "id")],
    )
    db["feedback"].create(
        {"id": int, "kind": str, "text": str, "message_id": int, "tool_call_id": int,
         "created": str},
        pk="id", not_null={"kind", "text", "message_id", "created"},
        foreign_keys=[("message_id", "messages", "id"), ("tool_call_id", "tool_calls", "id")],
    )
    db["examples"].create(
        {"id": int, "feedback_id": int, "message_id": int, "x": str, "y": str,
         "y_token_ids": str, "f": str, "s": str, "template": str, "status": str,
         "error": str, "adapter_version": str, "created": str, "updated": str},
        pk="id",
        not_null={"feedback_id", "message_id", "x", "y", "f", "template", "status",
                  "created", "updated"},
        defaults={"status": "pending"},
        foreign_keys=[("feedback_id", "feedback", "id"), ("message_id", "messages", "id")],
    )
    db["train_steps"].create(
        {"id": int, "adapter_version": str, "example_ids": str, "metrics": str, "created": str},
        pk="id", not_null={"example_ids", "metrics", "created"},
    )
    db["adapter_events"].create(
        {"id": int, "version": str, "event": str, "detail": str, "created": str},
        pk="id", not_null={"version", "event", "created"},
    )
    # One index per query the store runs (see Store's methods).
    db["messages"].create_index(["session_id", "idx"], unique=True)  # session_messages, next idx
    db["tool_calls"].create_index(["message_id"])  # message_tool_calls
    db["feedback"].create_index(["message_id"])  # messages_with_feedback
    db["feedback"].create_index(["kind"])  # feedback_counts
    db["examples"].create_index(["status", "id"])  # pending_examples, claim_examples
    db["examples"].create_index(["message_id"])  # examples_for_message
    db["examples"].create_index(["feedback_id"])
    db["adapter_events"].create_index(["version", "id"])  # adapter_events(version)


def v2_learning_signal(db: sqlite_utils.Database) -> None:
    """What SDPO's importance weight and safe re-queuing need.

    - messages.logprobs, examples.y_logprobs: the sampler's per-token log-probs
      (SDPO.md: ratio = exp(logp_now - logp_sampled)).
    - examples.redacted: y was changed by redaction, so y_token_ids and
      y_logprobs no longer spell y; the trainer re-tokenizes y and rescoring
      replaces the sampled log-probs.
    - examples.claimed_by / claimed_at: which process took a row for
      training, so rows of a killed trainer can be re-queued without stealing
      rows from a live one.
    """
    db["messages"].add_column("logprobs", str)
    db["examples"].add_column("y_logprobs", str)
    db["examples"].add_column("redacted", int, not_null_default=0)
    db["examples"].add_column("claimed_by", str)
    db["examples"].add_column("claimed_at", str)


def v3_redacted_text(db: sqlite_utils.Database) -> None:
    """Secrets out of every stored text (issue 13): from v3 on every row is written
    redacted (`rows.prepare_row`); this redacts the rows older versions wrote raw.

    - messages.redacted: redaction changed the content, so its sampled token ids
      and log-probs were dropped (they spelled the secret).
    - examples flagged `redacted` by v2 kept y's token ids: they are dropped.
    - every text column of every table is redacted in place, in batches; the store
      runs with `secure_delete`, so the space the old text held is zeroed.
    """
    db["messages"].add_column("redacted", int, not_null_default=0)
    db.execute("UPDATE examples SET y_token_ids = NULL, y_logprobs = NULL WHERE redacted = 1")
    for table in db.table_names():
        columns = [c for c in db[table].columns_dict if c in REDACTED_COLUMNS]
        if columns:
            _redact_rows(db, table, columns)


def _redact_rows(db: sqlite_utils.Database, table: str, columns: list[str], batch: int = 500) -> None:
    last = 0
    while rows := list(db.query(f"SELECT id, {', '.join(columns)} FROM {table} WHERE id > ? "
                                f"ORDER BY id LIMIT ?", [last, batch])):
        last = rows[-1]["id"]
        for stored in rows:
            row_id = stored.pop("id")
            record = decode(stored)
            if all(redact_json(record[c]) == record[c] for c in columns):
                continue
            row = prepare_row(record)
            db.execute(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in row)} WHERE id = ?",
                       [*row.values(), row_id])


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    v1_initial,
    v2_learning_signal,
    v3_redacted_text,
)
SCHEMA_VERSION = len(MIGRATIONS)
