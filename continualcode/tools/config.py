"""Settings the tools read; the agent's config maps its own fields onto this."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class ToolConfig:
    # bash
    bash_timeout: float = 120.0
    """Seconds before a bash command's whole process group is killed."""
    output_limit: int = 16_000
    """Bytes of command output kept (head and tail); the rest is cut with a note.
    Small on purpose: the output goes into a 0.5B model's context."""
    env_allow: tuple[str, ...] = ()
    """Variable names passed to bash even though they contain KEY/TOKEN/SECRET/PASSWORD."""
    secret_name_words: tuple[str, ...] = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    """A variable whose name contains one of these (any case) is dropped from bash's env."""

    # run_tests
    test_command: str | None = None
    """Shell command for run_tests; None = detect a pytest project and run `python -m pytest -q`."""
    test_timeout: float = 600.0

    # read_file / list_files / grep
    read_max_lines: int = 400
    """Lines read_file returns per call; the note says how to ask for the next range."""
    read_max_bytes: int = 32_000
    list_max_entries: int = 300
    grep_max_matches: int = 100
    grep_max_file_bytes: int = 2_000_000
    """grep skips files larger than this (generated data, minified bundles)."""
    skip_dirs: tuple[str, ...] = field(
        default=(".git", ".continualcode", ".venv", "venv", "__pycache__", "node_modules",
                 ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox")
    )
    """Directories list_files and grep never descend into."""

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
