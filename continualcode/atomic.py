"""Durable file writes: a reader sees the old file or the new one, never a torn one.

One implementation for every write that matters (adapters, the LIVE pointer,
meta.json, hook scripts, git's exclude file, reports, patches): write a
temporary file in the same directory, fsync it, rename it over the target,
fsync the directory (a rename is durable only once its directory is synced).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"
"""Temporary names start with this; the adapter registry removes leftovers of killed writers."""


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write and fsync a new file (inside a directory that is renamed into place afterwards)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temporary file in the same directory, fsync, rename over ``path``, fsync the directory.

    ``mode`` is set before the rename, so ``path`` never exists with other permissions
    (an executable hook script is never briefly not executable).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
