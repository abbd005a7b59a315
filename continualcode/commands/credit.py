"""`continualcode credit MESSAGE_ID`: the credit view of one stored reply (--json for numbers)."""

from __future__ import annotations

import argparse
import sys

from continualcode.adapters.registry import AdapterRegistry
from continualcode.commands.common import print_json, repo_of
from continualcode.config import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from continualcode.engines.factory import serve_live
from continualcode.learning.credit import (
    DEFAULT_TOP_K,
    SCRIPTED,
    CreditUnavailable,
    credit_for_message,
    example_row,
)
from continualcode.models import resolve
from continualcode.paths import store_path
from continualcode.store.db import Store
from continualcode.ui.console import SafeConsole
from continualcode.ui.credit_view import render_credit


def register_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("message_id", type=int, help="the assistant message (ids: /feedback, --json output)")
    # dest differs from the top-level --json (headless -p reports), which would otherwise claim it
    parser.add_argument("--json", dest="credit_json", action="store_true",
                        help="print tokens, advantages and teacher top-k as JSON")
    parser.add_argument("--example", type=int, default=None, help="which example of the message (default: latest)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="teacher alternatives per token")


def cmd_credit(args: argparse.Namespace, settings) -> int:
    """Load the configured model with the live adapter and print one message's credit."""
    repo = repo_of(args)
    if not store_path(repo).is_file():
        print(f"continualcode: no store in {repo}; run continualcode there first (or pass --repo)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if settings.engine == "scripted":
            raise CreditUnavailable(SCRIPTED)
        with Store.for_repo(repo) as store:
            example_row(store, args.message_id, args.example)  # fail before loading a model
            engine, registry = _engine_for(repo, settings)
            view = credit_for_message(engine, None, store, args.message_id, registry=registry,
                                      example_id=args.example, top_k=args.top_k)
    except CreditUnavailable as exc:
        print(f"continualcode: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.credit_json:
        print_json(view.to_json())
    else:
        SafeConsole().print(render_credit(view))
    return EXIT_OK


def _engine_for(repo, settings):
    """An in-process engine on the configured model with the live adapter (vLLM users get one too)."""
    from continualcode.engines.embedded import (
        EmbeddedEngine,  # torch: only when credit is computed
    )

    registry = AdapterRegistry.for_repo(repo)
    engine = EmbeddedEngine(resolve(settings.model), dtype=settings.dtype)
    serve_live(engine, registry)
    return engine, registry
