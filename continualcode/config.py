"""Settings: command-line flags, then `<repo>/.continualcode/config.toml`, then
`~/.config/continualcode/config.toml`, then the defaults below.

Every setting is one field of `Settings`, documented where it is defined, so
`--help`, the docs and the config files name the same keys.

Trust rule. A repository's config file arrives with `git clone`: a hostile
repo could commit one that names a command to run or a server to send the
conversation to. So the keys in `TRUSTED_ONLY` (commands, the vLLM server,
environment passed to commands) are taken from the user's own config and from
flags, and from a repo config only after the user has trusted that file's
exact content (`continualcode trust`, which records its sha256 in the user's
config directory; any later change to the file needs trusting again). Other
keys (model, temperature, ...) are always read from the repo config.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from continualcode.atomic import atomic_write
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
    """Variables kept although their name or value looks like a credential. Everything else that looks like
    one is removed from continualcode's own environment at start and from every command it runs."""
    learn: bool = True
    """Record feedback as training examples and train in the background."""
    learn_repair: bool = False
    """Train on the repair flow's candidates: the failed ones as reprompt examples, the passing sibling as
    their solution. Off by default: on the agent benchmark's 48 public tasks, learning from them resolved
    22 against 31 without (9 lost, none gained; docs/agent.md, "Learning across tasks")."""
    learning_rate: float | None = None
    """Overrides the LoRA preset's learning rate."""
    steps_per_feedback: int | None = None
    """Overrides the LoRA preset's SDPO steps per feedback example."""
    divergence_alpha: float | None = None
    """The SDPO loss's generalized-JSD alpha: 0 = forward KL (pulls the student toward tokens the teacher
    prefers that it rarely emits), 1 = reverse KL (the paper's reference). Unset = the model's preset
    (adapters/presets.toml; docs/learning.md has the measurements behind each)."""
    divergence_support: str | None = None
    """Tokens the divergence is taken over: student (its top-K plus a tail bucket, the reference), union
    (the student's and the teacher's top-K), full (the whole vocabulary). Unset = the model's preset."""
    learn_rounds: int = 1
    """Rounds per feedback event, each of steps_per_feedback steps (rollouts are resampled every round)."""
    learn_rollouts: int = 0
    """Fresh responses sampled per round for the judged prompt, besides the one the user saw."""
    learn_expand: int = 0
    """Other prompts (recent ones, then model-written) the feedback is distilled on as a standing instruction."""
    learn_teacher_samples: float | None = None
    """Fraction of the rollouts sampled from the teacher (feedback in context); with no rollouts, any
    value above 0 adds one teacher sample per round. Unset = the model's preset."""
    learn_replay: bool | None = None
    """Replay general prompts and accepted answers against the weights before the event (forgetting
    control). Unset = the model's preset."""
    followup_template: str = "prefix"
    """Where the self-teacher reads a follow-up message: prefix (before the request, as if said first) or
    hindsight (after it, as the user's next message). Under the REPL's system prompt the hindsight block
    was echoed and the prefix followed, on both bundled models (docs/learning.md)."""
    learn_replay_weight: float = 1.0
    """With learn_replay: the replay term's weight (loss = feedback mean + weight x replay mean)."""
    gate: bool = True
    """Score each new adapter on a replay set before it goes live."""
    gate_threshold: float = 0.15
    """Largest drop of the gate's replay pass rate (0-1) a new adapter may show against the live one: 0.15
    lets one flipped answer of 7-13 through and stops two (docs/learning.md, "The gate on the bench")."""
    auto_commit: bool = False
    """Commit the agent's edits with a message naming the adapter version."""
    max_turns: int = 20
    """Agent steps (model replies) per user request."""
    repair: bool = True
    """Requests about failing tests or errors: run the check, try candidate fixes in a scratch copy, keep the
    first that passes (continualcode.agent.repair); off = the tool loop only."""
    repair_candidates: int = 8
    """Candidate fixes sampled per repair round (one batch)."""
    repair_rewrites: int = 4
    """How many of a round's candidates write the suspect function afresh from its signature, docstring and
    the failing tests, its buggy body not shown (function form; at most half the round); 0 = none."""
    repair_rounds: int = 2
    """Repair rounds; a later round sees the closest failure."""
    repair_base_rounds: int = 1
    """While an adapter is served, the first N repair rounds sample from the base weights, so what was learned
    adds candidates and cannot take the base's first ones away (docs/agent.md: measured); 0 = the adapter."""
    edit_format: str = "function"
    """How repair candidates are written: function, whole, search_replace or lines (docs/agent.md: measured)."""
    repair_prefix: str = "name"
    """How a `function` candidate starts: name (``def <suspect>(``), bug (a comment naming the bug), def, none."""
    seed: int | None = None
    """Sampling seed for reproducible runs (benchmarks); unset = random."""
    ignored_repo_keys: tuple[str, ...] = field(default=(), metadata={"internal": True})
    """Not a setting: the TRUSTED_ONLY keys an untrusted repo config set and that were ignored."""


DEFAULTS = Settings()
KEYS = {f.name for f in fields(Settings) if not f.metadata.get("internal")}
TRUSTED_ONLY = ("test_command", "lint_command", "vllm_command", "vllm_url", "env_allow")
"""Keys a repo config may set only once the user trusted that file (see the module docstring)."""


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "continualcode" / "config.toml"


def trusted_configs_path() -> Path:
    """{repo config path: sha256 of the content the user trusted}; in the user's config directory."""
    return user_config_path().with_name("trusted-repo-configs.json")


def config_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _trusted() -> dict[str, str]:
    try:
        data = json.loads(trusted_configs_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_trusted(path: Path) -> bool:
    """Has the user trusted exactly this content of this repo config file?"""
    path = Path(path).resolve()
    return path.is_file() and _trusted().get(str(path)) == config_digest(path)


def set_trusted(path: Path, trusted: bool = True) -> None:
    """Record (or forget) the current content of a repo config file as trusted."""
    path = Path(path).resolve()
    records = _trusted()
    if trusted:
        records[str(path)] = config_digest(path)
    else:
        records.pop(str(path), None)
    target = trusted_configs_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, json.dumps(records, indent=2, sort_keys=True).encode(), mode=0o600)



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


OPTIONAL_TYPES = {"float | None": float, "int | None": int, "bool | None": bool, "str | None": str}
"""The value type of a setting whose default is None (unset), from its annotation."""


def _check_types(values: dict[str, Any], source: str) -> None:
    for f in fields(Settings):
        if f.name not in values or values[f.name] is None:
            continue
        default = getattr(DEFAULTS, f.name)
        value = values[f.name]
        expected = type(default) if default is not None else OPTIONAL_TYPES.get(str(f.type))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[f.name] = float(value)
        elif expected is not None and not isinstance(value, expected):
            raise ConfigError(f"{source}: {f.name} must be {expected.__name__}, got {value!r}")


def load_settings(repo: Path, flags: dict[str, Any] | None = None) -> Settings:
    """Merge defaults < user config < repo config < flags (flags set to None are unset).

    TRUSTED_ONLY keys of an untrusted repo config are dropped and listed in
    ``Settings.ignored_repo_keys`` (the CLI warns; /status shows them).
    """
    merged: dict[str, Any] = {}
    ignored: list[str] = []
    for path in (user_config_path(), repo_config_path(repo)):
        values = _read_toml(path)
        _check_types(values, str(path))
        if path != user_config_path() and values and not is_trusted(path):
            ignored = sorted(key for key in values if key in TRUSTED_ONLY)
            values = {key: value for key, value in values.items() if key not in TRUSTED_ONLY}
        merged.update(values)
    for key, value in (flags or {}).items():
        if key in KEYS and value is not None:
            merged[key] = value
    _check_types(merged, "flags")
    return Settings(**merged, ignored_repo_keys=tuple(ignored))
