"""Ways a store.db goes bad, shared by the store-error tests (tests/store/test_db.py,
tests/ui/test_headless.py, tests/test_cli.py): each damages a real file the way a disk, a
crash or another program would."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from continualcode.store.db import Store
from continualcode.store.schema import SCHEMA_VERSION

PAGE = 4096  # SQLite's default page size, which the store keeps


def make_store(path: Path, messages: int = 200) -> None:
    """A store with enough rows to span dozens of pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store(path) as store:
        session = store.start_session("/repo", "qwen", "scripted")
        for i in range(messages):
            store.add_message(session, "user", f"message {i} " + "x" * 400)


def truncate(path: Path) -> None:
    """Cut off mid-file, as by a full disk or an interrupted copy."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    """Not SQLite at all."""
    path.write_bytes(b"this is not a database\n" * 400)


def zero_page(path: Path) -> None:
    """One page in the middle zeroed: the file still opens; reading that page fails."""
    pages = path.stat().st_size // PAGE
    with open(path, "r+b") as f:
        f.seek((pages // 2) * PAGE)
        f.write(b"\0" * PAGE)


def newer_schema(path: Path) -> None:
    """Written by a future continualcode."""
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()


DAMAGE = {"truncated": truncate, "garbage": garbage, "zeroed page": zero_page, "newer schema": newer_schema}

_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds the store's write lock until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
