"""What every subcommand shares: the common flags, the repository it works in, JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from continualcode.models import BUNDLED, DEFAULT_MODEL
from continualcode.paths import find_repo_root


def add_common_flags(parser: argparse.ArgumentParser, default) -> None:
    """Flags every command accepts; subcommands use SUPPRESS so they don't reset the top level's."""
    parser.add_argument("--repo", type=Path, default=default,
                        help="repository to work in (default: the git repo around the current directory)")
    parser.add_argument("--model", default=default,
                        help=f"bundled model ({', '.join(BUNDLED)}; default {DEFAULT_MODEL}), "
                        "a local HF directory, a .gguf file, or a hub id")
    parser.add_argument("--engine", choices=["embedded", "vllm", "scripted"], default=default,
                        help="embedded: transformers+peft in-process (CPU default); vllm: an OpenAI-compatible "
                        "vLLM server with runtime LoRA; scripted: replay --script replies (testing)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default=default,
                        help="weights dtype for the embedded engine")
    parser.add_argument("--vllm-url", default=default, help="use a running vLLM server at this URL")
    parser.add_argument("--vllm-command", default=default,
                        help="vllm executable used to start a server (default: vllm)")
    parser.add_argument("--script", default=default, help="JSON list of replies for --engine scripted")
    parser.add_argument("--no-learn", dest="learn", action="store_const", const=False, default=default,
                        help="do not record training examples or train")


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def repo_of(args: argparse.Namespace) -> Path:
    """The repository a subcommand works in: --repo, else the git work tree around the current directory."""
    return (getattr(args, "repo", None) or find_repo_root(Path.cwd())).resolve()
