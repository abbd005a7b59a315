"""Installing the git hook script (`continualcode hook install`).

The script is three lines of sh that run `<this python> -m continualcode hook
run pre-commit`, so it works from the virtualenv continualcode is installed in
even when that is not on the PATH git sees. A hook continualcode did not write
is never lost: without `--force` or `--chain` installation refuses; `--chain`
keeps it beside ours and runs it first; `--force` moves it to a backup name.
`hook uninstall` removes only a hook continualcode wrote, and puts back the hook
that was there before it (the chained one, else the latest backup).
Hooks go where git looks for them (`git rev-parse --git-path hooks`: honours
core.hooksPath and worktrees), with two refusals: a `core.hooksPath` set outside
this repository's own config (globally, or by the system) names a directory
every repository shares, so installing there would run continualcode's checks
on commits of unrelated repositories (`--shared-hooks-path` says that is
intended); and a hooks path that is not a directory (`/dev/null`, the usual way
to turn hooks off) is reported as such.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from continualcode.atomic import atomic_write
from continualcode.config import UsageError

HOOK_KINDS = ("pre-commit",)
HOOK_MARKER = "# continualcode-hook"
"""Marks a script as ours: reinstalling may replace it."""
CHAINED_SUFFIX = ".continualcode-chained"
BACKUP_SUFFIX = ".continualcode-backup"


class HookError(UsageError):
    """The hook cannot be installed or run as asked (exit code 2); the message says what to do."""


@dataclass
class Installed:
    path: Path
    chained: Path | None = None
    backup: Path | None = None


def hooks_dir(repo: Path, *, shared: bool = False) -> Path:
    """Where git looks for hooks (honours core.hooksPath and worktrees); see the module docstring."""
    directory = (repo / _git(repo, "rev-parse", "--git-path", "hooks").stdout.strip()).resolve()
    configured = _config(repo, "--get", "core.hooksPath")
    if configured and _config(repo, "--local", "--get", "core.hooksPath") != configured and not shared:
        raise HookError(
            f"core.hooksPath is set outside this repository (to {configured}): a hooks directory every repository "
            "shares, so the hook would run on commits of unrelated repositories. Give this repository its own: "
            f"`git -C {repo} config --local core.hooksPath .git/hooks`, or pass --shared-hooks-path if that "
            "is what you want")
    if directory.exists() and not directory.is_dir():
        raise HookError(f"core.hooksPath is {configured or directory}, which is not a directory (hooks are turned "
                        "off that way); point it at a directory to install a hook")
    return directory


def hook_script(kind: str, python: str, *, chained: bool, fix: bool) -> str:
    lines = ["#!/bin/sh", f"{HOOK_MARKER} {kind}: written by `continualcode hook install`; reinstalling replaces it."]
    if chained:
        lines += ["# The hook that was here before runs first; its failure stops the commit.",
                  f'"$(dirname "$0")/{kind}{CHAINED_SUFFIX}" "$@" || exit $?']
    lines.append(f"exec {shlex.quote(python)} -m continualcode hook run {kind}{' --fix' if fix else ''}")
    return "\n".join(lines) + "\n"


def install_hook(repo: Path, kind: str = "pre-commit", *, force: bool = False, chain: bool = False,
                 fix: bool = False, python: str | None = None, shared: bool = False) -> Installed:
    """Write the hook; a hook continualcode did not write is kept unless --force or --chain."""
    directory, path, chained_path = _hook_paths(repo, kind, shared=shared)
    directory.mkdir(parents=True, exist_ok=True)
    installed = Installed(path)
    if path.exists() and not _is_ours(path):
        if chain:
            if chained_path.exists():
                raise HookError(f"{chained_path} already exists; move it aside and retry")
            os.replace(path, chained_path)
            chained_path.chmod(chained_path.stat().st_mode | 0o111)
        elif force:
            installed.backup = _free_name(directory / f"{kind}{BACKUP_SUFFIX}")
            os.replace(path, installed.backup)
        else:
            raise HookError(f"{path} exists and was not written by continualcode; --chain runs it before "
                            "continualcode's checks, --force replaces it (a backup is kept)")
    if chained_path.exists():  # keep an earlier chain on reinstall
        installed.chained = chained_path
    script = hook_script(kind, python or sys.executable, chained=installed.chained is not None, fix=fix)
    atomic_write(path, script.encode(), mode=0o755)
    return installed


@dataclass
class Uninstalled:
    path: Path
    restored: Path | None = None
    """The earlier hook now back at `path` (it was chained or backed up)."""


def uninstall_hook(repo: Path, kind: str = "pre-commit") -> Uninstalled:
    """Remove continualcode's hook and put back the one it displaced; never touch a hook it did not write."""
    directory, path, chained_path = _hook_paths(repo, kind)
    if not path.exists():
        raise HookError(f"no {kind} hook is installed at {path}")
    if not _is_ours(path):
        raise HookError(f"{path} was not written by continualcode; it is left as it is")
    earlier = chained_path if chained_path.exists() else _latest_backup(directory, kind)
    result = Uninstalled(path)
    if earlier is not None:
        os.replace(earlier, path)  # one rename: the hook slot is never empty
        result.restored = earlier
    else:
        path.unlink()
    return result


def _latest_backup(directory: Path, kind: str) -> Path | None:
    """The backup `--force` made last (`_free_name` numbers them .1, .2, … after the plain name)."""
    first = directory / f"{kind}{BACKUP_SUFFIX}"
    numbered = sorted((p for p in directory.glob(f"{first.name}.*") if p.suffix[1:].isdigit()),
                      key=lambda p: int(p.suffix[1:]))
    return numbered[-1] if numbered else (first if first.exists() else None)


def _hook_paths(repo: Path, kind: str, *, shared: bool = True) -> tuple[Path, Path, Path]:
    """(hooks directory, the hook, the chained earlier hook) for a known hook kind."""
    if kind not in HOOK_KINDS:
        raise HookError(f"unknown hook {kind!r}; hooks: {', '.join(HOOK_KINDS)}")
    directory = hooks_dir(repo, shared=shared)
    return directory, directory / kind, directory / f"{kind}{CHAINED_SUFFIX}"


def _is_ours(path: Path) -> bool:
    return HOOK_MARKER in path.read_text(errors="replace")


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}.{n}"), n + 1
    return candidate


def _config(repo: Path, *args: str) -> str | None:
    done = subprocess.run(["git", "config", *args], cwd=repo, capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise HookError(f"git {args[0]} failed in {repo}: {(done.stderr or done.stdout).strip()}")
    return done
