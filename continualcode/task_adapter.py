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

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .adapters import AdapterRegistry, AdapterVersion
from .models import ResolvedModel
from .sdpo import SDPOConfig, TeacherState, TrainingExample, make_optimizer, sdpo_step


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
                 divergence_limit: float = 5.0):
        from .lora import preset_for

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
        self._model = self._tokenizer = self._optimizer = self._teacher = None
        self._initial: dict | None = None

    # -- learning ---------------------------------------------------------------
    def learn(self, turns: list[Turn], feedback: str) -> dict:
        """`steps` SDPO steps on the turns of a failed attempt, judged by `feedback`; then serve the result.

        Returns summary metrics (loss, divergence, advantage of the last step,
        seconds of all) and ``rolled_back`` when the guard undid the steps.
        """
        self._ensure_model()
        examples = [self._example(turn, feedback) for turn in turns if turn.text.strip()]
        snapshot = self._snapshot()
        steps = []
        for _ in range(self.steps):
            metrics = sdpo_step(self._model, self._tokenizer, self._optimizer, examples, self.config, self._teacher)
            steps.append(metrics)
            if not metrics.get("stepped"):
                break
        bad = [m for m in steps if not math.isfinite(m["loss"]) or m.get("divergence", 0.0) > self.divergence_limit]
        summary = {
            "steps": len(steps), "examples": len(examples),
            "loss": float(steps[-1]["loss"]), "first_loss": float(steps[0]["loss"]),
            "divergence": float(steps[-1].get("divergence", 0.0)),
            "advantage": float(steps[-1].get("advantage", 0.0)),
            "tokens": int(steps[-1].get("tokens", 0)),
            "seconds": float(sum(m.get("seconds", 0.0) for m in steps)),
        }
        if bad or not any(m.get("stepped") for m in steps):
            self._restore(snapshot)
            summary["rolled_back"] = (f"divergence {bad[0].get('divergence'):.3g} above {self.divergence_limit}"
                                      if bad else steps[-1].get("skipped", "no step taken"))
        else:
            self.steps_done += len(steps)
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
        if self._model is not None:
            self._restore(self._initial)
            self._optimizer = make_optimizer(self._model, self.config.learning_rate)
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
        version = self.registry.publish(
            self._model, parent=self.parent, base_model=self.resolved.name, base_checksum=self.resolved.checksum,
            examples=[], metrics=metrics, teacher_tensors=self._teacher.state_dict() or None,
            promotion={"decision": "promoted", "reason": "solve: merged by the user", "scores": {}},
            repo_root=self.registry.repo_root,
        )
        live = self.registry.live()
        made_live = (live.version if live else None) == self.parent
        if made_live:
            self.registry.set_live(version.version, reason=f"solve merge: {task[:80]}")
            if self.engine is not None:
                self.engine.load_adapter(self.registry.path(version.version), version.version)
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
        self._model = self._optimizer = self._teacher = None

    # -- internals ---------------------------------------------------------------------
    def _totals(self) -> dict:
        return {"steps": self.steps_done, "learn_calls": len(self.history),
                "seconds": round(sum(h["seconds"] for h in self.history), 3),
                "loss": self.history[-1]["loss"] if self.history else None}

    def _restore_engine(self) -> None:
        if self.engine is not None and self.engine.adapter_version != self.parent:
            path = self.registry.path(self.parent) if (self.registry is not None and self.parent) else None
            self.engine.load_adapter(path, self.parent)
        self.version = None

    def _serve_new(self) -> float:
        name = f"task-{len(self.history) + 1}"
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="continualcode-task-"))
        path = self._workdir / name
        self._model.save_pretrained(str(path), selected_adapters=["default"])
        for old in self._workdir.iterdir():
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        self.version = name
        if self.engine is None:
            return 0.0
        return self.engine.load_adapter(path, name)

    def _ensure_model(self) -> None:
        if self._model is not None:
            return
        import torch
        from peft.utils import set_peft_model_state_dict

        from .embedded_engine import load_causal_lm, pick_dtype
        from .lora import attach_lora
        from .teacher import lora_parameters

        device = "cuda" if torch.cuda.is_available() else "cpu"
        base, self._tokenizer = load_causal_lm(self.resolved, pick_dtype(self.dtype, device), device)
        self._model = attach_lora(base, self.preset)
        if self.parent is not None:
            set_peft_model_state_dict(self._model, self.registry.load_tensors(self.parent))
        self._teacher = TeacherState.create(self._model, self.config.teacher, self.config.teacher_update_rate)
        saved = self.registry.load_teacher(self.parent) if self.parent is not None else None
        if saved and self.config.teacher == "ema":
            self._teacher.load_state_dict(saved)
        self._optimizer = make_optimizer(self._model, self.config.learning_rate)
        self._initial = {"student": {k: p.detach().clone() for k, p in lora_parameters(self._model).items()},
                         "teacher": self._teacher.state_dict()}

    def _snapshot(self) -> dict:
        import copy

        from .teacher import lora_parameters

        return {"student": {k: p.detach().clone() for k, p in lora_parameters(self._model).items()},
                "teacher": self._teacher.state_dict(),
                "optimizer": copy.deepcopy(self._optimizer.state_dict())}

    def _restore(self, snapshot: dict) -> None:
        import torch

        from .teacher import lora_parameters

        with torch.no_grad():
            for name, param in lora_parameters(self._model).items():
                param.copy_(snapshot["student"][name])
        if snapshot["teacher"]:
            self._teacher.load_state_dict(snapshot["teacher"])
        if "optimizer" in snapshot:
            self._optimizer.load_state_dict(snapshot["optimizer"])

    def _example(self, turn: Turn, feedback: str) -> TrainingExample:
        """A failed turn as an SDPO example; y is re-tokenized when the sampler's ids are another model's."""
        ids, logprobs = list(turn.token_ids), turn.logprobs
        if not ids or not self._ids_match(ids, turn.text):
            ids = self._tokenizer(turn.text, add_special_tokens=False)["input_ids"]
            if self._tokenizer.eos_token_id is not None:
                ids.append(self._tokenizer.eos_token_id)
            logprobs = None
        if logprobs is not None and len(logprobs) != len(ids):
            logprobs = None
        return TrainingExample(messages=turn.messages, response_ids=ids, feedback=feedback,
                               template="reprompt", old_logprobs=logprobs)

    def _ids_match(self, ids: list[int], text: str) -> bool:
        try:
            return self._tokenizer.decode(ids, skip_special_tokens=True).strip() == text.strip()
        except (ValueError, TypeError, OverflowError):
            return False
