"""A scratch copy of the user's working tree, where `solve` attempts run.

The user's tree is only ever read here: its files (tracked and untracked, not
ignored, uncommitted edits included) are copied into a new temporary
directory, which gets its own private git repository with the copy committed
as the baseline. An attempt edits the copy; `diff()` is the patch against the
baseline; `reset()` returns the copy to the baseline for the next attempt.
Only `apply_patch`, called after the user confirms, writes to the user's tree.

A temporary copy rather than a `git worktree`: a worktree would not carry
uncommitted changes, and it registers itself in the user's `.git`, which a
killed run would leave behind.

Environment directories (.venv, venv, node_modules) are symlinked rather than
copied so the check command can use them; they are shared with the user's
tree, so a command that installs into them installs into the user's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from continualcode.paths import STORE_DIR

SHARED_DIRS = (".venv", "venv", "node_modules")
"""Linked, not copied: large, and what the check command runs with."""

SCRATCH_EXCLUDES = ("__pycache__/", "*.pyc", ".pytest_cache/", f"{STORE_DIR}/", *SHARED_DIRS)
"""Never part of an attempt's diff, whatever the user's .gitignore says."""

_GIT_IDENTITY = {"GIT_AUTHOR_NAME": "continualcode", "GIT_AUTHOR_EMAIL": "solve@continualcode.invalid",
                 "GIT_COMMITTER_NAME": "continualcode", "GIT_COMMITTER_EMAIL": "solve@continualcode.invalid"}


class PatchConflict(RuntimeError):
    """The patch no longer applies to the user's tree (it changed during the solve)."""


def _scratch_git_env() -> dict[str, str]:
    """No inherited GIT_* variables: inside a git hook GIT_DIR / GIT_INDEX_FILE point at the user's repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_GIT_IDENTITY)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", *args],
                          cwd=cwd, env=env or _scratch_git_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def tree_files(repo: Path) -> list[str]:
    """Files of the user's tree worth copying: git's tracked + untracked-not-ignored, else a walk."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          cwd=repo, capture_output=True)
    if proc.returncode == 0 and _is_toplevel(repo):
        names = {n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n}
        return sorted(n for n in names if os.path.lexists(repo / n) and not _skipped(n))
    found = []
    for dirpath, dirnames, filenames in os.walk(repo):
        rel = Path(dirpath).relative_to(repo)
        dirnames[:] = [d for d in dirnames if not _skipped((rel / d).as_posix())]
        found.extend((rel / f).as_posix() for f in filenames if not _skipped((rel / f).as_posix()))
    return sorted(found)


def _is_toplevel(repo: Path) -> bool:
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True)
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == repo.resolve()


def _skipped(rel: str) -> bool:
    first = rel.split("/", 1)[0]
    return first in (".git", STORE_DIR, *SHARED_DIRS) or "/.git/" in f"/{rel}/" or "__pycache__" in rel.split("/")


class ScratchTree:
    """The copy (``root``), a private state directory beside it (``state``), and the baseline commit."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "tree"
        self.state = base / "state"

    @classmethod
    def create(cls, repo: Path | str) -> ScratchTree:
        repo = Path(repo).resolve()
        scratch = cls(Path(tempfile.mkdtemp(prefix="continualcode-solve-")))
        try:
            scratch.root.mkdir()
            scratch.state.mkdir()
            for rel in tree_files(repo):
                _copy(repo / rel, scratch.root / rel)
            for name in SHARED_DIRS:
                if (repo / name).is_dir() and not (scratch.root / name).exists():
                    os.symlink(repo / name, scratch.root / name)
            _git(scratch.root, "init", "-q")
            exclude = scratch.root / ".git" / "info" / "exclude"
            exclude.parent.mkdir(parents=True, exist_ok=True)
            exclude.write_text("\n".join(SCRATCH_EXCLUDES) + "\n")
            _git(scratch.root, "add", "-A")
            _git(scratch.root, "commit", "-q", "--allow-empty", "--no-verify", "-m", "solve baseline")
        except BaseException:
            shutil.rmtree(scratch.base, ignore_errors=True)
            raise
        return scratch

    def reset(self) -> None:
        """Back to the baseline: tracked changes undone, new files removed (shared dirs kept)."""
        _git(self.root, "reset", "-q", "--hard", "HEAD")
        keep = [arg for name in SHARED_DIRS for arg in ("-e", name)]
        _git(self.root, "clean", "-ffdqx", *keep)

    def diff(self) -> str:
        """The attempt's changes as a binary-safe patch against the baseline ('' when none)."""
        _git(self.root, "add", "-A")
        patch = _git(self.root, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "HEAD")
        _git(self.root, "reset", "-q")
        return patch

    def changed_files(self) -> list[str]:
        _git(self.root, "add", "-A")
        names = _git(self.root, "diff", "--cached", "--name-only", "HEAD").split()
        _git(self.root, "reset", "-q")
        return names

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ScratchTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_file():
        shutil.copy2(src, dst)


def apply_patch(repo: Path | str, patch: str) -> list[str]:
    """Apply an attempt's patch to the user's tree after `git apply --check`; returns the paths touched.

    Raises PatchConflict (nothing written) when the tree changed so the patch
    no longer applies.
    """
    repo = Path(repo)
    if not patch.strip():
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".patch", delete=False) as handle:
        handle.write(patch)
        path = handle.name
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("GIT_INDEX_FILE",)}
        prefix = subprocess.run(["git", "rev-parse", "--show-prefix"], cwd=repo, capture_output=True, text=True)
        # Inside a repository git apply reads patch paths from its top level; ours are relative to `repo`.
        where = [f"--directory={prefix.stdout.strip()}"] if prefix.returncode == 0 and prefix.stdout.strip() else []
        check = subprocess.run(["git", "apply", "--check", "--binary", *where, path], cwd=repo,
                               capture_output=True, text=True, env=env)
        if check.returncode != 0:
            raise PatchConflict(f"the patch no longer applies to {repo} (changed during the solve?): "
                                f"{check.stderr.strip()}")
        stat = subprocess.run(["git", "apply", "--numstat", path], cwd=repo, capture_output=True, text=True, env=env)
        subprocess.run(["git", "apply", "--binary", *where, path], cwd=repo, check=True, capture_output=True, env=env)
    finally:
        os.unlink(path)
    return [line.split("\t", 2)[2] for line in stat.stdout.splitlines() if line.count("\t") >= 2]
