"""`continualcode hook install|uninstall|run pre-commit`: the command line of continualcode.hooks."""

from __future__ import annotations

import argparse
from pathlib import Path

from continualcode.config import Settings
from continualcode.hooks.checks import git
from continualcode.hooks.install import (
    HOOK_KINDS,
    HookError,
    install_hook,
    uninstall_hook,
)
from continualcode.hooks.precommit import run_pre_commit


def register_hook(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["install", "uninstall", "run"],
                   help="install the hook script, remove it (restoring the hook it displaced), or run the checks now")
    p.add_argument("kind", nargs="?", default="pre-commit", choices=HOOK_KINDS, help="which hook (pre-commit)")
    p.add_argument("--force", action="store_true", help="install: replace a hook continualcode did not write "
                   "(it is backed up)")
    p.add_argument("--chain", action="store_true", help="install: keep the existing hook and run it first")
    p.add_argument("--shared-hooks-path", action="store_true",
                   help="install: write into a core.hooksPath set globally (every repository's commits run it)")
    p.add_argument("--fix", action="store_true", help="on failure let the agent fix it headlessly, then re-check "
                   "(install: the hook does this on every commit). It may write files and run the tests "
                   "unattended, which runs any code it writes")


def cmd_hook(args: argparse.Namespace, settings: Settings) -> int:
    from continualcode.paths import find_repo_root

    repo = (getattr(args, "repo", None) or find_repo_root(Path.cwd())).resolve()
    if git(repo, "rev-parse", "--is-inside-work-tree", check=False).stdout.strip() != "true":
        raise HookError(f"{repo} is not a git work tree; hooks need a git repository")
    if args.action == "run":
        if args.force or args.chain:
            raise HookError("--force and --chain go with `hook install`")
        return run_pre_commit(repo, settings, fix=args.fix)
    if args.action == "uninstall":
        if args.force or args.chain or args.fix:
            raise HookError("--force, --chain and --fix go with `hook install`")
        removed = uninstall_hook(repo, args.kind)
        print(f"removed continualcode's hook from {removed.path}"
              + (f"; restored the earlier hook from {removed.restored.name}" if removed.restored else ""))
        return 0
    installed = install_hook(repo, args.kind, force=args.force, chain=args.chain, fix=args.fix,
                             shared=args.shared_hooks_path)
    print(f"installed {installed.path}" + (f" (runs {installed.chained.name} first)" if installed.chained else "")
          + (f"; the previous hook is saved as {installed.backup.name}" if installed.backup else ""))
    return 0
