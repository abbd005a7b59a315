"""The conversation and feedback store: one SQLite file per repository.

Everything the agent learns from is written here as it happens: sessions,
messages (with the token ids, log-probs and adapter version that produced each
assistant turn), tool calls and their approval, feedback events, and the
training examples built from them. The background trainer claims examples
from here and records its steps and adapter events here, so `/status`,
`/feedback` and `continualcode adapters` all read one source of truth.

Concurrency: two REPLs (and their trainer threads) may share one repository's
file. WAL mode lets readers run beside a writer; a busy timeout makes a writer
wait for the other instead of failing; every write runs in `BEGIN IMMEDIATE`,
so a read-then-write (the next message index, claiming examples) holds the
write lock from its first read and never races. Within a process, one `Store`
may be shared by threads: a lock serialises its connection.

The store knows nothing of torch or of engines: token ids and log-probs are
plain lists of numbers, adapter versions are names such as "v0003".
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

from continualcode.process_owner import owner_alive, process_owner
from continualcode.redact import redact
from continualcode.store_schema import MIGRATIONS, SCHEMA_VERSION

STORE_DIR = ".continualcode"
STORE_FILE = "store.db"
BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's write lock

ROLES = ("system", "user", "assistant", "tool")
DECISIONS = ("approved", "always", "denied", "edited", "auto", "refused")
FEEDBACK_KINDS = ("followup", "denial", "edit", "tool_error", "test_failure", "test_pass",
                  "undo", "parse_error", "hook", "hook_pass", "manual")
EXAMPLE_STATUSES = ("pending", "training", "trained", "skipped", "failed")
ADAPTER_EVENTS = ("created", "promoted", "rejected", "rollback")
TOOL_CALL_FIELDS = ("decision", "decision_reason", "edited_arguments", "result", "exit_code",
                    "ok", "duration")
_JSON_COLUMNS = {"token_ids", "logprobs", "arguments", "edited_arguments", "x", "y_token_ids",
                 "y_logprobs", "example_ids", "metrics", "detail"}


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked; the message says what to do."""


class StoreVersionError(StoreError):
    """The file was written by a newer continualcode than this one."""


def utc_now() -> str:
    """The store's timestamp format: ISO-8601 UTC, millisecond precision, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """One repository's conversations, feedback, examples and training history."""

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._owner = process_owner(os.getpid())
        conn = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            self.db = sqlite_utils.Database(conn)
            self._open()
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(f"{self.path} stayed locked by another process for {busy_timeout:.0f} s; "
                                 "close other continualcode sessions on this repository and retry") from exc
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path} is not a continualcode store ({exc}); "
                             "move it aside and a new store will be created") from exc
        except BaseException:
            conn.close()
            raise

    @classmethod
    def for_repo(cls, repo_root: str | Path) -> Store:
        """Open `<repo_root>/.continualcode/store.db`, creating the directory, and keep
        `.continualcode/` out of git via `.git/info/exclude` (written once)."""
        root = Path(repo_root).resolve()
        (root / STORE_DIR).mkdir(exist_ok=True)
        exclude_from_git(root, f"{STORE_DIR}/")
        return cls(root / STORE_DIR / STORE_FILE)

    def _open(self) -> None:
        self._check_version(self._user_version())
        self.db.conn.execute("PRAGMA journal_mode = WAL")  # stays 'delete' on filesystems without WAL
        self.db.conn.execute("PRAGMA synchronous = NORMAL")  # WAL-safe: no corruption, fewer fsyncs
        if self._user_version() < SCHEMA_VERSION:
            with self.transaction():
                version = self._user_version()  # another process may have migrated meanwhile
                self._check_version(version)
                for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                    migration(self.db)
                    self.db.execute(f"PRAGMA user_version = {number}")
        self.requeue_stale_training()

    def _user_version(self) -> int:
        return self.db.conn.execute("PRAGMA user_version").fetchone()[0]

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{self.path} has schema version {version}, but this continualcode understands up to "
                f"{SCHEMA_VERSION}; upgrade continualcode (pip install -U continualcode) or move the file aside")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._user_version()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes atomically, e.g. a train step with the marking of its examples.

        Holds the database write lock (`BEGIN IMMEDIATE`) until the block ends;
        nested blocks join the outer transaction.
        """
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                yield self
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        with self.transaction():
            return int(self.db[table].insert(record).last_pk)

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_decode(row) for row in self.db.query(sql, list(params))]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # Sessions ------------------------------------------------------------------

    def start_session(self, repo_root: str | Path, model: str, engine: str,
                      title: str | None = None) -> int:
        """Record a new session; returns its id (what `--resume ID` takes)."""
        return self._insert("sessions", {"created": utc_now(), "repo_root": str(repo_root),
                                         "model": model, "engine": engine, "title": title})

    def set_session_title(self, session_id: int, title: str) -> None:
        """Name a session after its first prompt, which arrives after it starts."""
        with self.transaction():
            self.db["sessions"].update(session_id, {"title": title})

    def end_session(self, session_id: int) -> None:
        with self.transaction():
            self.db["sessions"].update(session_id, {"ended": utc_now()})

    def session(self, session_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM sessions WHERE id = ?", [session_id])

    def latest_session(self) -> dict[str, Any] | None:
        """The most recently started session (what a bare `--resume` picks)."""
        return self._one("SELECT * FROM sessions ORDER BY id DESC LIMIT 1")

    def list_sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first, each with a `messages` count, for `/resume` to list."""
        return self._rows(
            "SELECT s.*, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS messages "
            "FROM sessions s ORDER BY s.id DESC LIMIT ?", [limit])

    def resume_session(self, session_id: int | None = None) -> dict[str, Any]:
        """The session to continue (the latest when `session_id` is None), reopened."""
        found = self.latest_session() if session_id is None else self.session(session_id)
        if found is None:
            which = "no sessions yet" if session_id is None else f"no session {session_id}"
            raise StoreError(f"{which} in {self.path}; `/resume` lists the sessions there are")
        with self.transaction():
            self.db["sessions"].update(found["id"], {"ended": None})
        found["ended"] = None
        return found

    # Messages ------------------------------------------------------------------

    def add_message(self, session_id: int, role: str, content: str, *,
                    token_ids: list[int] | None = None, logprobs: list[float] | None = None,
                    adapter_version: str | None = None) -> int:
        """Append a message to a session; returns its id.

        For assistant turns pass the sampled `token_ids`, their `logprobs` under
        the sampling weights, and the `adapter_version` that produced them
        (None = base weights): the trainer needs all three.
        """
        _check_choice("role", role, ROLES)
        if token_ids is not None and logprobs is not None and len(token_ids) != len(logprobs):
            raise ValueError(f"{len(token_ids)} token ids but {len(logprobs)} log-probs")
        with self.transaction():
            idx = self.db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM messages WHERE session_id = ?",
                                  [session_id]).fetchone()[0]
            return self._insert("messages", {
                "session_id": session_id, "idx": idx, "role": role, "content": content,
                "token_ids": _encode(token_ids), "logprobs": _encode(logprobs),
                "adapter_version": adapter_version, "created": utc_now()})

    def message(self, message_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM messages WHERE id = ?", [message_id])

    def session_messages(self, session_id: int) -> list[dict[str, Any]]:
        """A session's messages in order (what resuming replays)."""
        return self._rows("SELECT * FROM messages WHERE session_id = ? ORDER BY idx", [session_id])

    # Tool calls ------------------------------------------------------------------

    def add_tool_call(self, message_id: int, name: str, arguments: dict[str, Any],
                      **fields: Any) -> int:
        """Record a tool call issued by assistant message `message_id`; returns its id.

        `fields` are any of TOOL_CALL_FIELDS (usually filled in later by
        `update_tool_call`): decision (one of DECISIONS), decision_reason,
        edited_arguments (dict), result (text), exit_code, ok (bool), duration (s).
        """
        record = {"message_id": message_id, "name": name, "arguments": _encode(arguments),
                  "created": utc_now()}
        return self._insert("tool_calls", record | _tool_call_fields(fields))

    def update_tool_call(self, tool_call_id: int, **fields: Any) -> None:
        """Set the decision, result, exit code... of a recorded call (see `add_tool_call`)."""
        record = _tool_call_fields(fields)
        if not record:
            return
        assignments = ", ".join(f"{column} = ?" for column in record)
        with self.transaction():
            cursor = self.db.execute(f"UPDATE tool_calls SET {assignments} WHERE id = ?",
                                     [*record.values(), tool_call_id])
            if cursor.rowcount == 0:
                raise ValueError(f"no tool call {tool_call_id}")

    def tool_call(self, tool_call_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM tool_calls WHERE id = ?", [tool_call_id])

    def message_tool_calls(self, message_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM tool_calls WHERE message_id = ? ORDER BY id", [message_id])

    # Feedback ------------------------------------------------------------------

    def add_feedback(self, kind: str, text: str, message_id: int,
                     tool_call_id: int | None = None) -> int:
        """Record feedback judging assistant message `message_id`; returns its id."""
        _check_choice("feedback kind", kind, FEEDBACK_KINDS)
        return self._insert("feedback", {"kind": kind, "text": text, "message_id": message_id,
                                         "tool_call_id": tool_call_id, "created": utc_now()})

    def feedback(self, feedback_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM feedback WHERE id = ?", [feedback_id])

    def message_feedback(self, message_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM feedback WHERE message_id = ? ORDER BY id", [message_id])

    def feedback_counts(self, session_id: int | None = None) -> dict[str, int]:
        """Number of feedback events by kind (all sessions, or one)."""
        sql = "SELECT f.kind, COUNT(*) AS n FROM feedback f"
        params: list[Any] = []
        if session_id is not None:
            sql += " JOIN messages m ON m.id = f.message_id WHERE m.session_id = ?"
            params.append(session_id)
        return {row["kind"]: row["n"] for row in self._rows(sql + " GROUP BY f.kind", params)}

    def messages_with_feedback(self, session_id: int) -> list[dict[str, Any]]:
        """A session's judged messages in order, each with its `feedback` rows and the
        `examples` made from it (for `/feedback` and the credit view)."""
        messages = self._rows(
            "SELECT * FROM messages WHERE session_id = ? AND id IN (SELECT message_id FROM feedback) "
            "ORDER BY idx", [session_id])
        for message in messages:
            message["feedback"] = self.message_feedback(message["id"])
            message["examples"] = self.examples_for_message(message["id"])
        return messages

    # Training examples -----------------------------------------------------------

    def add_example(self, feedback_id: int, message_id: int, x: list[dict[str, Any]], f: str, *,
                    y: str | None = None, y_token_ids: list[int] | None = None,
                    y_logprobs: list[float] | None = None, s: str | None = None,
                    template: str = "reprompt", status: str = "pending") -> int:
        """Queue an SDPO example (SDPO.md: x, y, f, s) for the trainer; returns its id.

        x: the messages up to the judged assistant turn; f: the feedback text;
        s: a successful attempt when one exists. By default y, its token ids and
        log-probs are those of the judged message. Secrets are redacted from x,
        y, f and s; if y changed, the row is flagged `redacted` (its token ids
        no longer spell y: the trainer must re-tokenize).
        """
        _check_choice("initial status", status, ("pending", "skipped"))
        with self.transaction():
            judged = self.message(message_id)
            if judged is None or judged["role"] != "assistant":
                raise ValueError(f"message {message_id} is not an assistant message; "
                                 "examples judge assistant turns")
            if y is None:
                y, y_token_ids, y_logprobs = judged["content"], judged["token_ids"], judged["logprobs"]
            clean_y = redact(y)
            now = utc_now()
            return self._insert("examples", {
                "feedback_id": feedback_id, "message_id": message_id, "x": _encode(_redact_json(x)),
                "y": clean_y, "y_token_ids": _encode(y_token_ids), "y_logprobs": _encode(y_logprobs),
                "f": redact(f), "s": None if s is None else redact(s), "template": template,
                "status": status, "redacted": int(clean_y != y), "created": now, "updated": now})

    def set_example_solution(self, example_id: int, s: str) -> None:
        """Give an example its solution s (e.g. a later attempt that passed the tests), redacted."""
        with self.transaction():
            cursor = self.db.execute("UPDATE examples SET s = ?, updated = ? WHERE id = ?",
                                     [redact(s), utc_now(), example_id])
            if cursor.rowcount == 0:
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
        None); `error` is stored as given (None clears it). Returns the count.
        """
        _check_choice("status", status, tuple(s for s in EXAMPLE_STATUSES if s != "training"))
        ids = list(ids)
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE examples SET status = ?, adapter_version = COALESCE(?, adapter_version), "
                "error = ?, claimed_by = NULL, claimed_at = NULL, updated = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                [status, adapter_version, error, utc_now(), json.dumps(ids)])
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
                                            "example_ids": _encode(list(example_ids)),
                                            "metrics": _encode(metrics), "created": utc_now()})

    def recent_train_steps(self, n: int = 10) -> list[dict[str, Any]]:
        """The last `n` steps, newest first."""
        return self._rows("SELECT * FROM train_steps ORDER BY id DESC LIMIT ?", [n])

    def add_adapter_event(self, version: str, event: str, detail: dict[str, Any] | None = None) -> int:
        """Record created/promoted/rejected/rollback for an adapter version."""
        _check_choice("adapter event", event, ADAPTER_EVENTS)
        return self._insert("adapter_events", {"version": version, "event": event,
                                               "detail": _encode(detail), "created": utc_now()})

    def adapter_events(self, version: str | None = None) -> list[dict[str, Any]]:
        """Adapter events in order, for all versions or one."""
        if version is None:
            return self._rows("SELECT * FROM adapter_events ORDER BY id")
        return self._rows("SELECT * FROM adapter_events WHERE version = ? ORDER BY id", [version])


def exclude_from_git(repo_root: Path, pattern: str) -> bool:
    """Append `pattern` to the repository's `info/exclude` unless it is there.

    Handles `.git` directories and `.git` files (worktrees, submodules).
    Returns True when the file was changed; does nothing outside a git repo.
    """
    git = repo_root / ".git"
    if git.is_file():
        text = git.read_text()
        if not text.startswith("gitdir:"):
            return False
        git = (repo_root / text.removeprefix("gitdir:").strip()).resolve()
        common = git / "commondir"
        if common.is_file():  # a worktree: info/exclude lives in the main repository
            git = (git / common.read_text().strip()).resolve()
    if not git.is_dir():
        return False
    exclude = git / "info" / "exclude"
    existing = exclude.read_text() if exclude.exists() else ""
    wanted = pattern.strip("/")
    if any(line.strip().strip("/") == wanted for line in existing.splitlines()):
        return False
    exclude.parent.mkdir(exist_ok=True)
    separator = "" if not existing or existing.endswith("\n") else "\n"
    from .adapter_files import atomic_write

    atomic_write(exclude, f"{existing}{separator}{pattern}\n".encode())
    return True


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def _tool_call_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(TOOL_CALL_FIELDS)
    if unknown:
        raise ValueError(f"unknown tool call fields {sorted(unknown)}; known: {', '.join(TOOL_CALL_FIELDS)}")
    if fields.get("decision") is not None:
        _check_choice("decision", fields["decision"], DECISIONS)
    record = dict(fields)
    if "edited_arguments" in record:
        record["edited_arguments"] = _encode(record["edited_arguments"])
    if record.get("ok") is not None:
        record["ok"] = int(bool(record["ok"]))
    return record


def _encode(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for column in _JSON_COLUMNS.intersection(row):
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def _redact_json(value: Any) -> Any:
    """Redact every string inside a JSON-like value (x is a list of message dicts)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _redact_json(item) for key, item in value.items()}
    return value
