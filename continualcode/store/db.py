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

Privacy: every text is redacted before it is written (`rows.prepare_row`), and
the file and its -wal/-shm companions are private to the user (0600).

Errors: every SQLite failure leaves the store as a `StoreError` that says what
happened and what to do (a damaged file, a newer schema, a lock held too long),
whether it shows on open (`PRAGMA quick_check` runs there) or on a later query.

The store knows nothing of torch or of engines: token ids and log-probs are
plain lists of numbers, adapter versions are names such as "v0003".
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

from continualcode.paths import state_dir, store_path
from continualcode.store.conversations import ConversationRecords
from continualcode.store.process_owner import process_owner
from continualcode.store.rows import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    decode,
    prepare_row,
)
from continualcode.store.schema import MIGRATIONS, SCHEMA_VERSION
from continualcode.store.training import TrainingRecords

BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's write lock
PRIVATE_FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class Store(ConversationRecords, TrainingRecords):
    """One repository's conversations, feedback, examples and training history."""

    def __init__(self, path: str | Path, *, busy_timeout: float | None = None):
        self.path = Path(path)
        self.busy_timeout = BUSY_TIMEOUT_S if busy_timeout is None else busy_timeout
        self._lock = threading.RLock()
        self._owner = process_owner(os.getpid())
        try:
            make_private(self.path)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise store_error(self.path, exc, self.busy_timeout) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            self.db = sqlite_utils.Database(conn)
            with self._sqlite_errors():
                self._open()
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
        # A damaged page would otherwise surface in whichever query reads it first, mid-task.
        problems = [row[0] for row in self.db.conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check: {problems[0]}")
        self.db.conn.execute("PRAGMA journal_mode = WAL")  # stays 'delete' on filesystems without WAL
        self.db.conn.execute("PRAGMA synchronous = NORMAL")  # WAL-safe: no corruption, fewer fsyncs
        self.db.conn.execute("PRAGMA secure_delete = ON")  # text replaced by its redaction is zeroed
        if self._user_version() < SCHEMA_VERSION:
            with self.transaction():
                version = self._user_version()  # another process may have migrated meanwhile
                self._check_version(version)
                for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                    migration(self.db)
                    self.db.execute(f"PRAGMA user_version = {number}")
            self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # redacted pages over the old ones
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
        with self._lock, self._sqlite_errors():
            return self._user_version()

    def close(self) -> None:
        with self._lock, self._sqlite_errors():
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
            with self._sqlite_errors():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # a damaged file can fail this too; the error in flight says more
                    raise
                conn.execute("COMMIT")

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Turn SQLite's errors about the file (damaged, locked, unwritable) into `StoreError`.

        Errors that mean a bug in the caller (a foreign key, a bad parameter) pass unchanged.
        """
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.busy_timeout) from exc

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        """Insert one row; plain SQL, so a missing table is an error (sqlite_utils would create it)."""
        row = prepare_row(record)
        with self.transaction():
            columns, marks = ", ".join(row), ", ".join("?" * len(row))
            return self.db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values())).lastrowid

    def _update(self, table: str, row_id: int, record: dict[str, Any]) -> int:
        """Set columns of one row; returns how many rows changed (0: no such id)."""
        row = prepare_row(record)
        assignments = ", ".join(f"{column} = ?" for column in row)
        with self.transaction():
            return self.db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?",
                                   [*row.values(), row_id]).rowcount

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock, self._sqlite_errors():
            return [decode(row) for row in self.db.query(sql, list(params))]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None


def make_private(path: Path) -> None:
    """Create the store file 0600 before SQLite does (it would use 0644, and its -wal and
    -shm files copy the database file's mode), and tighten older files of this user."""
    if not path.exists():
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
        except FileExistsError:
            pass  # another process created it first (with the same mode)
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
            os.chmod(file, PRIVATE_FILE_MODE)


def store_error(path: Path, exc: BaseException, busy_timeout: float) -> StoreError:
    """What a failure of SQLite (or of the file system) on `path` means for the user, and what to do."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreLockedError(
            f"{path} is locked: another process kept writing to it for more than {busy_timeout:g} s "
            f"({text}). Another continualcode session, its trainer, or `continualcode train` on this "
            "repository holds it: wait for it to finish or close it, then retry.")
    if type(exc) is sqlite3.DatabaseError or "no such table" in text or "no such column" in text:
        aside = shlex.quote(str(path.parent / f"broken-{time.strftime('%Y%m%d-%H%M%S')}"))
        return StoreCorruptError(
            f"{path} is damaged ({text}); continualcode cannot use it. Move it aside with its -wal and "
            f"-shm files, and the next run starts a new, empty store:\n"
            f"    mkdir -p {aside} && mv {shlex.quote(str(path))}* {aside}/\n"
            f"(`sqlite3 {aside}/{path.name} .recover` may save the old conversations.)")
    return StoreError(f"cannot use {path} ({text}); check that the disk is not full and that you "
                      "can write the file and its directory.")
