"""`continualcode models list|prepare`: the bundled models, assembled, verified and cached."""

from __future__ import annotations

import argparse

from continualcode.config import EXIT_OK, Settings
from continualcode.models import BUNDLED, cache_root, prepare


def register_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "prepare"], help="list bundled models, or prepare (assemble, verify, cache)")
    p.add_argument("names", nargs="*", help="models to prepare (default: the configured model)")


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        for model in BUNDLED.values():
            marker = "*" if model.name == settings.model else " "
            cached = (cache_root() / "hf" / model.name / "config.json").is_file()
            print(f"{marker} {model.name:22} {'cached' if cached else 'not cached':11} {model.description}")
        return EXIT_OK
    for name in args.names or [settings.model]:
        resolved = prepare(name)
        print(f"{resolved.name}: {resolved.path}")
    return EXIT_OK
