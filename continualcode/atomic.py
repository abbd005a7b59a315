"""Durable file writes: a reader sees the old file or the new one, never a torn one.

One implementation for every write that matters (adapters, the LIVE pointer,
meta.json, hook scripts, git's exclude file, reports, patches): write a
temporary file in the same directory, fsync it, rename it over the target,
fsync the directory (a rename is durable only once its directory is synced).
`atomic_write_at` does the same inside a directory the caller has already
opened, so a symlink swapped into the path after the caller checked it cannot
redirect the write (the agent's write_file and edit).
"""

from __future__ import annotations

import os
import secrets
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
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        atomic_write_at(directory, path.name, data, mode)
    finally:
        os.close(directory)


def atomic_write_at(dir_fd: int, name: str, data: bytes, mode: int = 0o644) -> None:
    """`atomic_write` of the entry ``name`` of the open directory ``dir_fd``: the temporary file,
    the rename and the sync all happen in that directory, whatever its path now leads to."""
    tmp = f"{TMP_PREFIX}{name}-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # not the umask's: the caller's mode, exactly
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)
