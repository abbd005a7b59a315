"""Settings: command-line flags, then `<repo>/.continualcode/config.toml`, then
`~/.config/continualcode/config.toml`, then the defaults below.

Every setting is one field of `Settings`, documented where it is defined, so
`--help`, the docs and the config files name the same keys.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from continualcode.models import DEFAULT_MODEL
from continualcode.paths import repo_config_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
"""Exit codes of every command: done, failed (a check, the task, the engine), usage or setup error."""


class ConfigError(ValueError):
    """A config file or value is malformed; the message names the file and key."""


class UsageError(Exception):
    """Bad input on the command line (exit code 2); the message says the right usage."""


@dataclass
class Settings:
    model: str = DEFAULT_MODEL
    """Bundled model name, local HF directory, .gguf file, or hub id."""
    engine: str = "embedded"
    """embedded (transformers + peft in-process), vllm, or scripted."""
    dtype: str = "auto"
    """Weights dtype for the embedded engine: auto, fp32 or bf16."""
    vllm_url: str | None = None
    """Connect to a running vLLM server instead of starting one."""
    vllm_command: str = "vllm"
    """The vllm executable used to start a server (it may live in its own venv)."""
    script: str | None = None
    """JSON list of replies for the scripted engine."""
    max_new_tokens: int = 512
    temperature: float = 0.2
    test_command: str | None = None
    """Command run by run_tests; unset = detect pytest."""
    lint_command: str | None = None
    """Lint command the pre-commit hook runs after the tests (e.g. "ruff check ."); unset = no lint."""
    bash_timeout: float = 120.0
    env_allow: list[str] = field(default_factory=list)
    """Environment variables passed to bash even though their names look secret."""
    learn: bool = True
    """Record feedback as training examples and train in the background."""
    learning_rate: float | None = None
    """Overrides the LoRA preset's learning rate."""
    steps_per_feedback: int | None = None
    """Overrides the LoRA preset's SDPO steps per feedback example."""
    gate: bool = True
    """Score each new adapter on a replay set before it goes live."""
    gate_threshold: float = 0.1
    """Largest drop of the gate's replay pass rate (0-1) a new adapter may show against the live one."""
    auto_commit: bool = False
    """Commit the agent's edits with a message naming the adapter version."""
    max_turns: int = 20
    """Agent steps (model replies) per user request."""


DEFAULTS = Settings()
KEYS = {f.name for f in fields(Settings)}


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "continualcode" / "config.toml"



def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or delete the file") from exc
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    return {key.replace("-", "_"): value for key, value in data.items()}


def _check_types(values: dict[str, Any], source: str) -> None:
    for f in fields(Settings):
        if f.name not in values or values[f.name] is None:
            continue
        default = getattr(DEFAULTS, f.name)
        value = values[f.name]
        expected = type(default) if default is not None else None
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[f.name] = float(value)
        elif expected is not None and not isinstance(value, expected):
            raise ConfigError(f"{source}: {f.name} must be {expected.__name__}, got {value!r}")


def load_settings(repo: Path, flags: dict[str, Any] | None = None) -> Settings:
    """Merge defaults < user config < repo config < flags (flags set to None are unset)."""
    merged: dict[str, Any] = {}
    for path in (user_config_path(), repo_config_path(repo)):
        values = _read_toml(path)
        _check_types(values, str(path))
        merged.update(values)
    for key, value in (flags or {}).items():
        if key in KEYS and value is not None:
            merged[key] = value
    _check_types(merged, "flags")
    return Settings(**merged)
