"""A task-local LoRA branch: SDPO steps between attempts at one task, then merged or thrown away.

Test-time discovery (arXiv 2601.20802, §5) keeps learning on a single hard
question: after each failed attempt, SDPO steps on (x, the attempt, its
feedback) with the reprompt template (these are failures), and the next
attempt is sampled from the updated weights. The learning must not leak into
the user's main line by itself, so a `TaskAdapter`:

- branches from the registry's live version (its tensors and EMA teacher; the
  base model when nothing is live), in its own training copy of the model,
  like the background trainer's,
- after each `learn`, saves the branch to a private temporary directory and
  hot-swaps it into the serving engine under the name ``task-N``,
- never writes to the registry until `merge`, which publishes the branch as a
  new version (parent = the version it branched from, metrics noting the
  task) and makes it live; `discard` puts the parent back on the engine.

A killed process therefore leaves the registry as it was; only the temporary
directory remains (the OS's temp cleaner removes it).

Guard (SDPO.md: "a correct answer must stay correct"): steps whose loss is
not finite or whose divergence exceeds ``divergence_limit`` are rolled back,
as in the trainer.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from continualcode.adapters.presets import preset_for
from continualcode.adapters.registry import AdapterRegistry, AdapterVersion
from continualcode.engines.factory import serve_version
from continualcode.learning.types import SDPOConfig
from continualcode.models import ResolvedModel

if TYPE_CHECKING:
    from continualcode.learning.learner import Learner


def discovery_config(learning_rate: float) -> SDPOConfig:
    """The SDPO knobs for learning from rich (code/test) feedback.

    alpha 1.0 (reverse KL) and top-K 20 are the paper's settings for code
    feedback (SDPO.md, "Reference defaults"); the reprompt template, because
    every example here is a failed attempt. The learning rate is the LoRA
    preset's (the paper's 1e-6 is for full fine-tuning).
    """
    return SDPOConfig(alpha=1.0, top_k=20, template="reprompt", learning_rate=learning_rate)


@dataclass
class Turn:
    """One sampled assistant turn: the conversation before it, and what was sampled."""

    messages: list[dict]
    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None


class TaskAdapter:
    """The task-local branch; the model loads on the first `learn` (no cost if the first attempt passes)."""

    def __init__(self, resolved: ResolvedModel, *, engine=None, registry: AdapterRegistry | None = None,
                 config: SDPOConfig | None = None, preset=None, steps: int | None = None, dtype: str = "auto",
                 divergence_limit: float | None = None):
        self.resolved, self.engine, self.registry = resolved, engine, registry
        self.preset = preset or preset_for(resolved.name)
        self.config = config or discovery_config(self.preset.learning_rate)
        self.steps = steps or self.preset.steps_per_feedback
        self.dtype = dtype
        self.divergence_limit = divergence_limit
        live = registry.live() if registry is not None else None
        self.parent: str | None = live.version if live else None
        self.version: str | None = None         # what the engine serves for this branch (None = parent)
        self.steps_done = 0
        self.history: list[dict] = []
        self._workdir: Path | None = None       # made on the first learn: a first-attempt pass leaves nothing
        self.learner: Learner | None = None

    # -- learning ---------------------------------------------------------------
    def learn(self, turns: list[Turn], feedback: str | list[str]) -> dict:
        """`steps` SDPO steps on the turns of a failed attempt, judged by `feedback` (one text for all, or
        one per turn: repair candidates each have their own check output); then serve the result.

        Returns summary metrics (loss, divergence, advantage of the last step,
        seconds of all) and ``rolled_back`` when the guard undid the steps.
        """
        learner = self._ensure_learner()
        feedbacks = [feedback] * len(turns) if isinstance(feedback, str) else list(feedback)
        examples = [learner.example(t.messages, t.text, token_ids=t.token_ids, logprobs=t.logprobs,
                                    feedback=f, template="reprompt")
                    for t, f in zip(turns, feedbacks) if t.text.strip()]
        summary = learner.learn(examples, self.steps)
        summary.pop("history")
        summary["examples"] = len(examples)
        if "rolled_back" not in summary:
            self.steps_done += summary["steps"]
            summary["swap_seconds"] = self._serve_new()
        self.history.append(summary)
        return summary

    def serve(self) -> None:
        """Make sure the engine serves this branch (something else may have swapped it meanwhile)."""
        if self.engine is None or self.version is None or self.engine.adapter_version == self.version:
            return
        self.engine.load_adapter(self._workdir / self.version, self.version)

    def reset(self) -> None:
        """Back to the parent's weights, a fresh optimizer and teacher (the benchmark's next run)."""
        if self.learner is not None:
            self.learner.reset()
        self.steps_done, self.history = 0, []
        self._restore_engine()

    # -- the user's choice ------------------------------------------------------------
    @property
    def learned(self) -> bool:
        return self.steps_done > 0

    def merge(self, task: str, note: dict | None = None) -> tuple[AdapterVersion, bool]:
        """Publish the branch into the main line; returns (version, made_live).

        Made live only when the live version is still the parent: if the main
        line moved on meanwhile (the background trainer published), the branch
        is kept but not served, so that learning is not silently dropped.
        """
        if self.registry is None:
            raise ValueError("this task adapter has no registry to merge into")
        if not self.learned:
            raise ValueError("nothing to merge: no SDPO step was taken on this task")
        metrics = {**self._totals(), "source": "solve", "task": task[:500], **(note or {})}
        version = self.learner.publish(
            self.registry, parent=self.parent, examples=[], metrics=metrics, checksum=self.resolved.checksum,
            promotion={"decision": "promoted", "reason": "solve: merged by the user", "scores": {}})
        live = self.registry.live()
        made_live = (live.version if live else None) == self.parent
        if made_live:
            self.registry.set_live(version.version, reason=f"solve merge: {task[:80]}")
            if self.engine is not None:
                serve_version(self.engine, self.registry, version.version)
            self.version = None
        else:
            self._restore_engine()
        return version, made_live

    def discard(self) -> None:
        """Forget the branch: the engine serves the parent again."""
        self._restore_engine()

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self.learner = None

    # -- internals ---------------------------------------------------------------------
    def _totals(self) -> dict:
        return {"steps": self.steps_done, "learn_calls": len(self.history),
                "seconds": round(sum(h["seconds"] for h in self.history), 3),
                "loss": self.history[-1]["loss"] if self.history else None}

    def _restore_engine(self) -> None:
        if self.engine is not None:
            serve_version(self.engine, self.registry, self.parent)
        self.version = None

    def _serve_new(self) -> float:
        name = f"task-{len(self.history) + 1}"
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="continualcode-task-"))
        path = self._workdir / name
        self.learner.save(path)
        for old in self._workdir.iterdir():
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        self.version = name
        if self.engine is None:
            return 0.0
        return self.engine.load_adapter(path, name)

    def _ensure_learner(self) -> Learner:
        if self.learner is None:
            from continualcode.learning.learner import Learner

            kwargs = {} if self.divergence_limit is None else {"divergence_limit": self.divergence_limit}
            self.learner = Learner.load(self.resolved, self.preset, config=self.config, dtype=self.dtype, **kwargs)
            self.learner.start_from_version(self.registry, self.parent)
            self.learner.initial = self.learner.snapshot()
        return self.learner
