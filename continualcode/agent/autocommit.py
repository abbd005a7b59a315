"""Auto-commit: each file the agent writes becomes its own git commit (off by default).

With `auto_commit = true` in the config, a successful write_file or edit is
committed at once, only that path, with a message that names the adapter
version that wrote it. `git log` then reads as a record of which weights
produced which change, and `git revert` undoes one agent step without touching
anything else.

The commit is made with `--no-verify`: the pre-commit hook judges finished
work (see hooks.py), and an agent's intermediate step is not finished work —
running the checks on every step would charge half-done edits with failures.
Other staged changes of the user are left staged and out of the commit
(`git commit --only PATH`). Paths are literal (`git --literal-pathspecs`): a
file the agent named `:(glob)**` is that one file, not every file in the tree.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


class AutoCommitError(RuntimeError):
    """git refused the commit; the message carries git's reason."""


@dataclass(frozen=True)
class AutoCommit:
    sha: str
    path: str
    message: str


def commit_message(tool: str, path: str, adapter_version: str | None, *,
                   session_id: int | None = None, message_id: int | None = None) -> str:
    """Subject names the change; the body names the adapter version (None = base weights)."""
    where = ""
    if session_id is not None and message_id is not None:
        where = f" (continualcode session {session_id}, message {message_id})"
    return (f"continualcode: {tool} {path}\n\n"
            f"Written by adapter {adapter_version or 'base'}{where}.\n")


def commit_path(repo_root: Path, rel: str, message: str) -> AutoCommit | None:
    """Commit exactly the repo-relative `rel` (added if new); None when it has no change to commit."""
    root = Path(repo_root)
    _git(root, "add", "--", rel)
    if _git(root, "diff", "--cached", "--quiet", "--", rel, check=False).returncode == 0:
        return None  # the write left the file as it was
    _git(root, "commit", "--no-verify", "--only", "-q", "-m", message, "--", rel)
    sha = _git(root, "rev-parse", "HEAD").stdout.strip()
    return AutoCommit(sha, rel, message)


def commit_agent_change(repo_root: Path, tool: str, path: Path, adapter_version: str | None,
                        session_id: int, message_id: int) -> str:
    """The agent's hook after a successful write: commit, and say what happened in one line.

    A refused commit (no git identity, a locked index) is reported, not
    raised: the edit itself succeeded and the request goes on.
    """
    rel = Path(path).relative_to(repo_root).as_posix()
    message = commit_message(tool, rel, adapter_version, session_id=session_id, message_id=message_id)
    try:
        done = commit_path(repo_root, rel, message)
    except AutoCommitError as exc:
        return f"auto-commit of {rel} skipped: {exc}"
    if done is None:
        return f"auto-commit: {rel} unchanged, nothing to commit"
    return f"auto-committed {rel} as {done.sha[:10]} (adapter {adapter_version or 'base'})"


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", "--literal-pathspecs", *args], cwd=root, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AutoCommitError(f"git {args[0]} failed: {(done.stderr or done.stdout).strip()}")
    return done
