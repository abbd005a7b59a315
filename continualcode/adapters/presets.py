"""LoRA presets per base model: the adapter's shape and the training pace.

The numbers live in ``adapters/presets.toml`` at the top of the checkout (not in
code) so they can be tuned and reviewed in one place; ``adapters/README.md``
says why each one. The package carries the same file
(``continualcode/adapters/presets.toml`` is a link to it, copied into the wheel),
so a plain ``pip install`` finds them too.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

PRESETS_PATH = Path(__file__).resolve().with_name("presets.toml")


@dataclass(frozen=True)
class LoraPreset:
    """How to adapt one base model: the LoRA shape and the training pace."""

    name: str
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...] | str  # module names, or PEFT's "all-linear"
    learning_rate: float
    steps_per_feedback: int
    divergence_alpha: float = 1.0
    """The SDPO loss's alpha for this model (0 = forward KL, 1 = reverse KL; setting divergence_alpha
    overrides it). Optional in presets.toml: unmeasured models keep the reference's 1.0."""
    learn_replay: bool = False
    """Replay general prompts in every feedback event (setting learn_replay overrides it)."""
    divergence_support: str = "student"
    """The token ids the divergence is taken over (student, union, full; setting divergence_support
    overrides it; SDPOConfig checks the name). Optional: unmeasured models keep the student's top-K."""
    learn_teacher_samples: float = 0.0
    """The fraction of a feedback event's rollouts sampled from the teacher; with no rollouts, any value
    above 0 adds one teacher sample per round (setting learn_teacher_samples overrides it). Optional: 0."""

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _load_presets(path: Path = PRESETS_PATH) -> dict[str, dict]:
    if not path.is_file():
        raise FileNotFoundError(
            f"LoRA presets file {path} is missing; it ships with continualcode "
            "(reinstall continualcode; in a checkout it is adapters/presets.toml)."
        )
    with open(path, "rb") as handle:
        presets = tomllib.load(handle)
    if "default" not in presets:
        raise ValueError(f"{path} has no [default] preset; add one (it is used for unknown models).")
    return presets


def _preset(name: str, table: dict, path: Path) -> LoraPreset:
    required = ("rank", "alpha", "dropout", "target_modules", "learning_rate", "steps_per_feedback")
    missing = [key for key in required if key not in table]
    if missing:
        raise ValueError(f"{path}: preset [{name}] lacks {', '.join(missing)}")
    targets = table["target_modules"]
    return LoraPreset(
        name=name,
        rank=int(table["rank"]),
        alpha=float(table["alpha"]),
        dropout=float(table["dropout"]),
        target_modules=targets if isinstance(targets, str) else tuple(targets),
        learning_rate=float(table["learning_rate"]),
        steps_per_feedback=int(table["steps_per_feedback"]),
        divergence_alpha=_fraction(table.get("divergence_alpha", 1.0), "divergence_alpha", name, path),
        learn_replay=_flag(table.get("learn_replay", False), "learn_replay", name, path),
        divergence_support=_name(table.get("divergence_support", "student"), "divergence_support", name, path),
        learn_teacher_samples=_fraction(table.get("learn_teacher_samples", 0.0), "learn_teacher_samples", name, path),
    )


def _fraction(value, key: str, name: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{path}: preset [{name}] {key} must be a number in [0, 1], got {value!r}")
    return float(value)


def _name(value, key: str, name: str, path: Path) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{path}: preset [{name}] {key} must be a string, got {value!r}")
    return value


def _flag(value, key: str, name: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{path}: preset [{name}] {key} must be true or false, got {value!r}")
    return value


def preset_for(model_name: str, path: Path = PRESETS_PATH) -> LoraPreset:
    """The preset for a model name, path or hub id; ``default`` when none matches.

    A preset matches when its name or one of its ``match`` strings occurs in the
    lower-cased last path component (so ``SmolLM2-135M-Instruct`` and
    ``~/.cache/continualcode/hf/smollm2-135m`` both find ``smollm2-135m``).
    """
    presets = _load_presets(path)
    key = model_name.rstrip("/").replace("\\", "/").split("/")[-1].lower()
    for name, table in presets.items():
        if name == "default":
            continue
        patterns = [name.lower(), *(m.lower() for m in table.get("match", []))]
        if any(pattern in key for pattern in patterns):
            return _preset(name, table, path)
    return _preset("default", presets["default"], path)
