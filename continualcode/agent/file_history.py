"""The agent's file changes, kept as git blobs so /undo can restore them.

Before write_file or edit runs, the file's current content is written into the
repository's object database (`git hash-object -w`); after it succeeds we note
the new content's hash. /undo restores the blob of the most recent change, and
refuses when the file no longer has the content the agent left (the user
changed it since): their work is never overwritten. The restore is the tools'
atomic write (no symlink followed, mode kept). Changes made through bash are
not tracked (a shell command's effects are not known).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from continualcode.tools.files import NotRegularFile, open_regular, write_atomic

FILE_CHANGING_TOOLS = {"write_file", "edit"}


class UndoRefused(Exception):
    """Nothing to undo, or undoing would overwrite the user's own change."""


@dataclass
class FileChange:
    path: str                 # repo-relative
    before_blob: str | None   # git blob of the content before; None = the file did not exist
    after_sha256: str | None
    message_id: int


@dataclass
class Snapshot:
    path: Path
    before_blob: str | None


def _sha256(path: Path) -> str | None:
    """The content's hash; None when there is no regular file (never blocks on a FIFO put there)."""
    try:
        fd = open_regular(path)
    except (FileNotFoundError, NotRegularFile):
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class FileHistory:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.changes: list[FileChange] = []

    def _git(self):
        import git

        try:
            return git.Repo(self.root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return None

    def before(self, call, tool, workspace) -> Snapshot | None:
        if call.name not in FILE_CHANGING_TOOLS or "path" not in call.args:
            return None
        path = workspace.resolve(call.args["path"], write=True)
        repo = self._git()
        blob = None
        if path.is_file() and repo is not None:
            blob = repo.git.hash_object("-w", str(path))
        return Snapshot(path, blob)

    def after(self, snapshot: Snapshot | None, outcome, message_id: int) -> None:
        if snapshot is None or not outcome.ok:
            return
        rel = snapshot.path.relative_to(self.root).as_posix()
        self.changes.append(FileChange(rel, snapshot.before_blob, _sha256(snapshot.path), message_id))

    def last_change_message(self, before_id: int) -> int | None:
        ids = [c.message_id for c in self.changes if c.message_id <= before_id]
        return ids[-1] if ids else None

    def undo(self) -> FileChange:
        if not self.changes:
            raise UndoRefused("nothing to undo: the agent has not changed a file in this session")
        change = self.changes[-1]
        path = self.root / change.path
        if _sha256(path) != change.after_sha256:
            raise UndoRefused(f"{change.path} changed since the agent edited it; not overwriting your work")
        repo = self._git()
        if change.before_blob is None:
            path.unlink()
        elif repo is None:
            raise UndoRefused("/undo needs a git repository")
        else:
            data = repo.git.cat_file("blob", change.before_blob, stdout_as_string=False,
                                    strip_newline_in_stdout=False)
            write_atomic(self.root, path, data)
        self.changes.pop()
        return change
