"""Where continualcode keeps a repository's state: the one place that names `.continualcode/`.

Everything the agent records about a repository — the SQLite store, adapter
versions, input history, unapplied solve patches, the repo's own config and
the list of repo configs the user trusted — lives under `<repo>/.continualcode/`.
The directory is private (0700: conversations, tool output and feedback are in
it) and kept out of git through `.git/info/exclude`, so it never shows up in
`git status` and is never committed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from continualcode.atomic import atomic_write

STORE_DIR = ".continualcode"
"""The state directory's name, relative to the repository root."""
STORE_FILE = "store.db"
PRIVATE_DIR_MODE = 0o700


def find_repo_root(start: Path) -> Path:
    """The enclosing git work tree, or `start` itself when there is none."""
    import git

    try:
        return Path(git.Repo(start, search_parent_directories=True).working_tree_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return start


def state_dir(repo: Path | str, *, create: bool = True) -> Path:
    """`<repo>/.continualcode/`; with `create`, made private (0700) and excluded from git.

    An existing directory with group or other permissions is tightened: it
    holds conversations and command output, which may contain secrets.
    """
    path = Path(repo) / STORE_DIR
    if not create:
        return path
    path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700 | 0o700)
    exclude_from_git(Path(repo), f"{STORE_DIR}/")
    return path


def store_path(repo: Path | str) -> Path:
    return Path(repo) / STORE_DIR / STORE_FILE


def adapters_dir(repo: Path | str) -> Path:
    return Path(repo) / STORE_DIR / "adapters"


def history_path(repo: Path | str) -> Path:
    """The REPL's input history."""
    return Path(repo) / STORE_DIR / "history"


def log_path(repo: Path | str) -> Path:
    """Library warnings and background work (model loading, training) of interactive sessions."""
    return Path(repo) / STORE_DIR / "log"


def solve_dir(repo: Path | str) -> Path:
    """Unapplied `solve` patches."""
    return Path(repo) / STORE_DIR / "solve"


def repo_config_path(repo: Path | str) -> Path:
    return Path(repo) / STORE_DIR / "config.toml"


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
    atomic_write(exclude, f"{existing}{separator}{pattern}\n".encode())
    return True
