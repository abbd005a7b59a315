"""Path containment: every path a tool touches is resolved here, against the repo root.

The model names files with strings it made up; a wrong string must never reach
outside the repository, into git's own database, or into the agent's store.
`Workspace.resolve` is the single gate: tools call it before any approval prompt
is shown, and again before they touch the disk, and only ever use the path it
returns (the fully resolved one), so what was checked is what gets opened.

Refused: empty paths, NUL bytes, absolute paths, anything whose real location
(after following every symlink, dangling ones included) is outside the root,
anything under a `.git` directory at any depth (with the spellings git itself
guards against on case-insensitive, HFS+ and NTFS file systems), and writes
into `.continualcode/`. `~` is not expanded: `~x` is an ordinary directory name.

A symlink swapped in between the check and the use (a race with another process
in the repo) is outside what this protects against.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from continualcode.paths import STORE_DIR

# Code points HFS+ ignores in file names (git's core.protectHFS list): a name
# like ".g\u200cit" opens .git on macOS.
_HFS_IGNORABLE = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
     0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF]
)


class PathRefused(ValueError):
    """A path the agent may not touch; the message says why and what to use instead."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"refused path {path!r}: {reason}")


def is_git_name(name: str) -> bool:
    """True when a single path component would open a `.git` entry on some file system.

    Covers case variations (`.GIT` on case-insensitive file systems), HFS+
    ignorable code points, NTFS trailing dots/spaces and the NTFS short name
    `git~1`, the same spellings git refuses in checked-out trees.
    """
    folded = unicodedata.normalize("NFC", name.translate(_HFS_IGNORABLE))
    folded = folded.rstrip(". ").casefold()
    return folded in (".git", "git~1")


class Workspace:
    """The repository root and the rules for which paths inside it a tool may use."""

    def __init__(self, root: Path | str) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"workspace root {root} is not a directory")
        self.root = Path(os.path.realpath(root))

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real absolute path for a repo-relative `path`, or `PathRefused`.

        `write=True` additionally refuses the agent's own store and the root itself.
        """
        if not isinstance(path, str):
            raise PathRefused(str(path), "a path must be text")
        if path == "" or path.isspace():
            raise PathRefused(path, "the path is empty; give a path relative to the repository root, e.g. src/app.py")
        if "\x00" in path:
            raise PathRefused(path, "the path contains a NUL byte")
        if os.path.isabs(path):
            raise PathRefused(
                path, "absolute paths are not allowed; give the path relative to the repository root"
                f" ({self.root}), e.g. {_relative_hint(path, self.root)}"
            )
        for part in Path(path).parts:
            if is_git_name(part):
                raise PathRefused(path, "files under .git/ belong to git; use git commands through bash instead")
        try:
            real = Path(os.path.realpath(self.root / path))
        except (OSError, ValueError) as exc:  # symlink loops on some Pythons, over-long names
            raise PathRefused(path, f"it cannot be resolved ({exc})") from exc
        if real != self.root and self.root not in real.parents:
            raise PathRefused(path, f"it leads outside the repository root {self.root}")
        relative = real.relative_to(self.root).parts
        if any(is_git_name(part) for part in relative):
            raise PathRefused(path, "it leads into .git/, which belongs to git; use git commands through bash instead")
        if write:
            if real == self.root:
                raise PathRefused(path, "that is the repository root directory, not a file")
            if relative and relative[0] == STORE_DIR:
                raise PathRefused(path, f"{STORE_DIR}/ is the agent's own store and cannot be written by tools")
        return real

    def relative(self, path: Path) -> str:
        """How to show a resolved path to the user and the model: relative, with '/' separators."""
        rel = Path(path).relative_to(self.root)
        return rel.as_posix() if rel.parts else "."


def _relative_hint(path: str, root: Path) -> str:
    """Suggest the relative form of an absolute path that happens to lie inside the root."""
    try:
        rel = Path(os.path.realpath(path)).relative_to(root)
    except (ValueError, OSError):
        return "src/app.py"
    return rel.as_posix() or "."
