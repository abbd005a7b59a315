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

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

from continualcode.paths import state_dir, store_path
from continualcode.store.conversations import ConversationRecords
from continualcode.store.process_owner import process_owner
from continualcode.store.rows import StoreError, StoreVersionError, decode
from continualcode.store.schema import MIGRATIONS, SCHEMA_VERSION
from continualcode.store.training import TrainingRecords

BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's write lock


class Store(ConversationRecords, TrainingRecords):
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
        state_dir(root)
        return cls(store_path(root))

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
            return [decode(row) for row in self.db.query(sql, list(params))]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

