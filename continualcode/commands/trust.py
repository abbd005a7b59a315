"""`continualcode trust`: let this repository's config name commands (the trust rule of continualcode.config).

A repo config arrives with the clone, so its command-valued keys (`TRUSTED_ONLY`:
test/lint/vllm commands, the vLLM server URL, environment passed to commands)
are ignored until the user has read the file and trusted its exact content.
The record (a sha256 per file) lives in the user's config directory; editing
the file, or `--revoke`, withdraws the trust.
"""

from __future__ import annotations

import argparse
import sys

from continualcode.commands.common import repo_of
from continualcode.config import (
    EXIT_FAILED,
    EXIT_OK,
    TRUSTED_ONLY,
    Settings,
    UsageError,
    is_trusted,
    set_trusted,
)
from continualcode.paths import repo_config_path
from continualcode.ui.console import SafeConsole, plain


def register_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="trust without asking (after reading the file yourself)")
    p.add_argument("--revoke", action="store_true", help="stop trusting this repository's config file")


def cmd_trust(args: argparse.Namespace, settings: Settings) -> int:
    path = repo_config_path(repo_of(args))
    console = SafeConsole(stderr=True)
    if args.revoke:
        set_trusted(path, False)
        console.print(plain(f"{path}: no longer trusted; its {', '.join(TRUSTED_ONLY)} settings are ignored"))
        return EXIT_OK
    if not path.is_file():
        raise UsageError(f"{path} does not exist: this repository has no config file to trust")
    if is_trusted(path):
        console.print(plain(f"{path} is already trusted (this exact content)"))
        return EXIT_OK
    console.print(plain(f"{path}:", "bold"))
    console.print(plain(path.read_text(errors="replace")))
    console.print(plain(f"Trusting it lets it set {', '.join(TRUSTED_ONLY)}: commands continualcode runs "
                        "(the tests, the hook's checks, a vLLM server) and where the conversation is sent."))
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not a terminal: read the file, then run `continualcode trust --yes`")
        if input("Trust this file? [y/N] ").strip().lower() not in {"y", "yes"}:
            console.print(plain("not trusted"))
            return EXIT_FAILED
    set_trusted(path)
    console.print(plain(f"trusted {path} (sha256 recorded; any change to the file needs trusting again)"))
    return EXIT_OK
