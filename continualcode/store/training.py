"""The training queue in the store: examples (x, y, f, s) built from feedback, claimed by
trainers across processes, their train steps and the adapter events they led to."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from continualcode.store.process_owner import owner_alive
from continualcode.store.rows import (
    ADAPTER_EVENTS,
    EXAMPLE_STATUSES,
    check_choice,
    prepare_row,
    utc_now,
)


class TrainingRecords:
    """The training tables of `continualcode.store.db.Store` (a mixin over its connection)."""

    # Training examples -----------------------------------------------------------

    def add_example(self, feedback_id: int, message_id: int, x: list[dict[str, Any]], f: str, *,
                    y: str | None = None, y_token_ids: list[int] | None = None,
                    y_logprobs: list[float] | None = None, s: str | None = None,
                    template: str = "reprompt", status: str = "pending") -> int:
        """Queue an SDPO example (SDPO.md: x, y, f, s) for the trainer; returns its id.

        x: the messages up to the judged assistant turn; f: the feedback text;
        s: a successful attempt when one exists. By default y, its token ids and
        log-probs are those of the judged message. Secrets are redacted from x,
        y, f and s; if y changed (here or when the message was stored), the row
        is flagged `redacted` and keeps no token ids or log-probs: the trainer
        re-tokenizes y.
        """
        check_choice("initial status", status, ("pending", "skipped"))
        with self.transaction():
            judged = self.message(message_id)
            if judged is None or judged["role"] != "assistant":
                raise ValueError(f"message {message_id} is not an assistant message; "
                                 "examples judge assistant turns")
            redacted = 0
            if y is None:
                y, y_token_ids, y_logprobs = judged["content"], judged["token_ids"], judged["logprobs"]
                redacted = judged["redacted"]
            now = utc_now()
            return self._insert("examples", {
                "feedback_id": feedback_id, "message_id": message_id, "x": x, "y": y,
                "y_token_ids": y_token_ids, "y_logprobs": y_logprobs, "f": f, "s": s,
                "template": template, "status": status, "redacted": redacted, "created": now,
                "updated": now})

    def set_example_solution(self, example_id: int, s: str) -> None:
        """Give an example its solution s (e.g. a later attempt that passed the tests), redacted."""
        if self._update("examples", example_id, {"s": s, "updated": utc_now()}) == 0:
            raise ValueError(f"no example {example_id}")

    def example(self, example_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM examples WHERE id = ?", [example_id])

    def examples_for_message(self, message_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM examples WHERE message_id = ? ORDER BY id", [message_id])

    def pending_examples(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Pending examples, oldest first (a read: use `claim_examples` to train on them)."""
        return self._rows("SELECT * FROM examples WHERE status = 'pending' ORDER BY id LIMIT ?",
                          [-1 if limit is None else limit])

    def recent_examples(self, n: int = 10) -> list[dict[str, Any]]:
        """The last `n` examples of any status, newest first (probe prompts for adapter diffs)."""
        return self._rows("SELECT * FROM examples ORDER BY id DESC LIMIT ?", [n])

    def claim_examples(self, limit: int) -> list[dict[str, Any]]:
        """Take up to `limit` pending examples (oldest first) for training.

        One transaction moves them to 'training' and records this process as
        their owner, so two trainers never take the same row. Finish with
        `mark_examples`.
        """
        with self.transaction():
            ids = [row["id"] for row in self._rows(
                "SELECT id FROM examples WHERE status = 'pending' ORDER BY id LIMIT ?", [limit])]
            now = utc_now()
            self.db.execute(
                "UPDATE examples SET status = 'training', claimed_by = ?, claimed_at = ?, updated = ? "
                "WHERE id IN (SELECT value FROM json_each(?))", [self._owner, now, now, json.dumps(ids)])
            return self._rows("SELECT * FROM examples WHERE id IN (SELECT value FROM json_each(?)) "
                              "ORDER BY id", [json.dumps(ids)])

    def mark_examples(self, ids: Iterable[int], status: str, adapter_version: str | None = None,
                      error: str | None = None) -> int:
        """Finish (or re-queue) examples: status trained/skipped/failed/pending.

        `adapter_version` records the version that learned them (kept when
        None); `error` is stored redacted (None clears it). Returns the count.
        """
        check_choice("status", status, tuple(s for s in EXAMPLE_STATUSES if s != "training"))
        ids = list(ids)
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE examples SET status = ?, adapter_version = COALESCE(?, adapter_version), "
                "error = ?, claimed_by = NULL, claimed_at = NULL, updated = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                [status, adapter_version, prepare_row({"error": error})["error"], utc_now(), json.dumps(ids)])
            if cursor.rowcount != len(set(ids)):
                raise ValueError(f"only {cursor.rowcount} of {len(set(ids))} example ids exist: {ids}")
            return cursor.rowcount

    def requeue_stale_training(self, older_than: float | None = None) -> int:
        """Put rows left in 'training' by a dead process back to 'pending'; returns the count.

        Runs on open. A claim is stale when its process (same host) no longer
        runs, or, with `older_than` (seconds), when it is older than that.
        Claims of live processes are left alone.
        """
        if not self._rows("SELECT 1 FROM examples WHERE status = 'training' LIMIT 1"):
            return 0  # the common case on open: no write lock needed
        with self.transaction():
            rows = self._rows("SELECT id, claimed_by, claimed_at FROM examples WHERE status = 'training'")
            cutoff = None if older_than is None else (
                datetime.now(timezone.utc) - timedelta(seconds=older_than)).isoformat(timespec="milliseconds")
            stale = [r["id"] for r in rows if not owner_alive(r["claimed_by"])
                     or (cutoff is not None and (r["claimed_at"] or "") < cutoff)]
            if stale:
                self.mark_examples(stale, "pending")
            return len(stale)

    def requeue_failed(self) -> int:
        """Give failed examples another try (`continualcode train --retry-failed`); returns the count."""
        with self.transaction():
            ids = [row["id"] for row in self._rows("SELECT id FROM examples WHERE status = 'failed'")]
            return self.mark_examples(ids, "pending") if ids else 0

    def queue_length(self) -> int:
        """Examples waiting for training (what `/status` shows)."""
        return self._rows("SELECT COUNT(*) AS n FROM examples WHERE status = 'pending'")[0]["n"]

    def example_counts(self) -> dict[str, int]:
        """Number of examples by status."""
        rows = self._rows("SELECT status, COUNT(*) AS n FROM examples GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    # Train steps and adapter events --------------------------------------------

    def add_train_step(self, adapter_version: str | None, example_ids: list[int],
                       metrics: dict[str, Any]) -> int:
        """Record one optimizer step: the version it produced, its examples, its metrics."""
        return self._insert("train_steps", {"adapter_version": adapter_version,
                                            "example_ids": list(example_ids),
                                            "metrics": metrics, "created": utc_now()})

    def recent_train_steps(self, n: int = 10) -> list[dict[str, Any]]:
        """The last `n` steps, newest first."""
        return self._rows("SELECT * FROM train_steps ORDER BY id DESC LIMIT ?", [n])

    def add_adapter_event(self, version: str, event: str, detail: dict[str, Any] | None = None) -> int:
        """Record created/promoted/rejected/rollback for an adapter version."""
        check_choice("adapter event", event, ADAPTER_EVENTS)
        return self._insert("adapter_events", {"version": version, "event": event,
                                               "detail": detail, "created": utc_now()})

    def adapter_events(self, version: str | None = None) -> list[dict[str, Any]]:
        """Adapter events in order, for all versions or one."""
        if version is None:
            return self._rows("SELECT * FROM adapter_events ORDER BY id")
        return self._rows("SELECT * FROM adapter_events WHERE version = ? ORDER BY id", [version])

