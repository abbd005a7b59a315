"""Settings the tools read; the agent's config maps its own fields onto this."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from continualcode.process import SECRET_NAME_WORDS


@dataclass(frozen=True)
class ToolConfig:
    # bash
    bash_timeout: float = 120.0
    """Seconds before a bash command, and every process it started, is killed."""
    output_limit: int = 16_000
    """Bytes of command output kept (head and tail); the rest is cut with a note.
    Small on purpose: the output goes into a 0.5B model's context."""
    env_allow: tuple[str, ...] = ()
    """Variable names passed to commands even though their name or value looks secret."""
    secret_name_words: tuple[str, ...] = SECRET_NAME_WORDS
    """A variable whose name contains one of these (any case) is dropped from commands' env
    (continualcode.process.is_secret; a value shaped like a credential is dropped too)."""

    # run_tests
    test_command: str | None = None
    """Shell command for run_tests; None = detect a pytest project and run `python -m pytest -q`."""
    test_timeout: float = 600.0

    # read_file / list_files / grep
    read_max_lines: int = 400
    """Lines read_file returns per call; the note says how to ask for the next range."""
    read_max_bytes: int = 32_000
    """Bytes read_file returns per call (about 8 per line for the numbering included)."""
    read_max_line_bytes: int = 2_000
    """Bytes of one line read_file shows; a longer line (minified code, a 50 MB JSON line) is cut with a note."""
    list_max_entries: int = 300
    grep_max_matches: int = 100
    grep_max_file_bytes: int = 2_000_000
    """grep skips files larger than this (generated data, minified bundles)."""
    grep_match_timeout: float = 1.0
    """Seconds matching one line may take; a pattern that backtracks catastrophically (`(a+)+$` on a
    long line) is stopped there, and grep says so."""
    grep_timeout: float = 20.0
    """Seconds one grep call may take in all (a huge tree); it returns what it found, and says so."""
    skip_dirs: tuple[str, ...] = field(
        default=(".git", ".continualcode", ".venv", "venv", "__pycache__", "node_modules",
                 ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox")
    )
    """Directories list_files and grep never descend into (nor into any virtualenv: a pyvenv.cfg)."""

    @classmethod
    def from_settings(cls, settings: Any) -> ToolConfig:
        """Take every field of the same name from the agent's config object (None = defaults).

        The agent's config owns the user-facing names (test_command,
        bash_timeout, env_allow, ...); the tools only read them.
        """
        if settings is None or isinstance(settings, cls):
            return settings or cls()
        values = {}
        for f in fields(cls):
            if hasattr(settings, f.name):
                value = getattr(settings, f.name)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)
