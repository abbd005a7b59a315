"""The Learner: one training copy of the model and the guarded loop of SDPO steps around it.

Every training loop uses it — the background trainer, `solve`'s task adapter
and the learning bench — so they load the model, snapshot and restore the
LoRA, guard steps and build examples the same way:

- the copy: base weights + one trainable LoRA (a preset's shape), the
  teacher's weights (``TeacherState``) and the optimizer, separate from the
  serving engine's model so generation never waits on a backward pass;
- ``start_from``: reset student, teacher and optimizer to stored tensors (an
  adapter version) or to a fresh adapter (B = 0, exactly the base model);
- ``learn``: K steps of ``sdpo_step`` (or ``sft_step``) on a batch, rolled back
  as a whole when a loss is not finite or the divergence exceeds the limit
  (SDPO.md: "a correct answer must stay correct");
- ``weights``: run with another version's tensors swapped in (the gate
  scores candidate and live on this one copy);
- ``sample`` / ``mean_logprob``: batched generation and scoring on the copy.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Iterator, Mapping

import torch

from continualcode.engines.loading import load_causal_lm
from continualcode.learning.batch import build_batch, run_student
from continualcode.learning.examples import response_tokens
from continualcode.learning.lora import (
    attach_lora,
    load_lora_state,
    lora_parameters,
    lora_state,
    swapped,
)
from continualcode.learning.sampler import Sample, generate
from continualcode.learning.sdpo import make_optimizer, sdpo_step, sft_step
from continualcode.learning.teacher import TeacherState
from continualcode.learning.types import SDPOConfig, TrainingExample

if TYPE_CHECKING:
    from continualcode.adapters.presets import LoraPreset
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.models import ResolvedModel

DIVERGENCE_LIMIT = 5.0
"""Mean per-token divergence (nats) above which a batch's steps are rolled back. A sane step on the
bundled models stays below 1; a wrecked one (lr far too high) jumps past 10 (tests/learning)."""


class Learner:
    """A trainable copy of one base model: student LoRA, teacher, optimizer."""

    def __init__(self, model, tokenizer, *, config: SDPOConfig | None = None, model_name: str = "",
                 divergence_limit: float = DIVERGENCE_LIMIT) -> None:
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.config = config or SDPOConfig()
        self.divergence_limit = divergence_limit
        self.teacher = TeacherState.create(model, self.config.teacher, self.config.teacher_update_rate)
        self.optimizer = make_optimizer(model, self.config.learning_rate)
        self.initial = self.snapshot()

    @classmethod
    def load(cls, resolved: ResolvedModel, preset: LoraPreset, *, config: SDPOConfig | None = None,
             dtype: str | torch.dtype = "auto", device: str | None = None, seed: int | None = None,
             divergence_limit: float = DIVERGENCE_LIMIT) -> Learner:
        """Load the base model and attach a fresh LoRA of the preset's shape (seeded A when `seed` is set)."""
        base, tokenizer = load_causal_lm(resolved, dtype, device)
        if seed is not None:
            torch.manual_seed(seed)
        return cls(attach_lora(base, preset), tokenizer, config=config or SDPOConfig(learning_rate=preset.learning_rate),
                   model_name=resolved.name, divergence_limit=divergence_limit)

    # -- weights ----------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Student tensors, teacher tensors and optimizer state, to `restore` later."""
        return {"student": lora_state(self.model), "teacher": self.teacher.state_dict(),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def restore(self, snapshot: dict) -> None:
        load_lora_state(self.model, snapshot["student"])
        if snapshot["teacher"]:
            self.teacher.load_state_dict(snapshot["teacher"])
        self.optimizer.load_state_dict(snapshot["optimizer"])

    def reset(self, config: SDPOConfig | None = None) -> None:
        """Back to the weights this learner started with (the bench's next method or scenario), with
        a fresh teacher and optimizer, optionally under another `config`."""
        if config is not None:
            self.config = config
        self.start_from(self.initial["student"], self.initial["teacher"])

    def start_from(self, tensors: Mapping[str, torch.Tensor] | None,
                   teacher_tensors: Mapping[str, torch.Tensor] | None = None) -> None:
        """Reset student, teacher and optimizer to `tensors` (None = a fresh adapter: B = 0, the base model)."""
        if tensors is not None:
            load_lora_state(self.model, tensors)
        else:
            with torch.no_grad():
                for name, param in lora_parameters(self.model).items():
                    if "lora_B" in name:
                        param.zero_()
        self.teacher = TeacherState.create(self.model, self.config.teacher, self.config.teacher_update_rate)
        if teacher_tensors and self.config.teacher == "ema":
            self.teacher.load_state_dict(dict(teacher_tensors))
        self.optimizer = make_optimizer(self.model, self.config.learning_rate)

    def start_from_version(self, registry: AdapterRegistry | None, version: str | None) -> None:
        """`start_from` a stored version's tensors and saved EMA teacher (None = the base model)."""
        if version is None:
            self.start_from(None)
        else:
            self.start_from(registry.load_tensors(version), registry.load_teacher(version))

    @contextmanager
    def weights(self, tensors: Mapping[str, torch.Tensor] | None | str) -> Iterator[None]:
        """Run with other weights: LoRA `tensors`, "base" (the adapter disabled) or None (as they are).

        The learner's own tensors, teacher and optimizer are untouched afterwards.
        """
        if tensors is None:
            context = nullcontext()
        elif isinstance(tensors, str):
            if tensors != "base":
                raise ValueError(f"weights() takes LoRA tensors, 'base' or None, not {tensors!r}")
            context = self.model.disable_adapter()
        else:
            context = swapped(self.model, tensors)
        with context:
            yield

    # -- examples ---------------------------------------------------------------------------
    def example(self, messages: list[dict], text: str, *, token_ids: list[int] | None = None,
                logprobs: list[float] | None = None, feedback: str | None = None, solution: str | None = None,
                template: str | None = None, meta: dict | None = None) -> TrainingExample:
        """A judged reply as a training example (y's ids by `examples.response_tokens`)."""
        ids, old = response_tokens(self.tokenizer, text, token_ids, logprobs)
        return TrainingExample(messages=messages, response_ids=ids, feedback=feedback, solution=solution,
                               template=template, old_logprobs=old, meta=dict(meta or {}))

    # -- learning ---------------------------------------------------------------------------
    def learn(self, examples: list[TrainingExample], steps: int, *, method: str = "sdpo") -> dict:
        """`steps` optimizer steps on `examples`, rolled back as a whole if any step goes bad.

        Returns a summary: loss/divergence/advantage/grad_norm/tokens of the
        last step, first_loss, steps, seconds, per-step metrics (``history``),
        and ``rolled_back`` (the reason) when the guard undid them or no step
        could be taken. (One feedback event with rollouts, expansion and
        replay: ``continualcode.learning.recipe.learn_from_feedback``, which
        guards all its rounds the same way.)
        """
        snapshot = self.snapshot()
        history = self.run_steps(examples, steps, method=method)
        summary = summarize_steps(history)
        verdict = self.verdict(history)
        if verdict is not None:
            self.restore(snapshot)
            summary.update(verdict)
        return summary

    def run_steps(self, examples: list[TrainingExample], steps: int, *, method: str = "sdpo",
                  config: SDPOConfig | None = None, anchor: TeacherState | None = None,
                  cache_teacher: bool = False, on_step=None) -> list[dict]:
        """`steps` optimizer steps on `examples`, unguarded (the caller snapshots and checks `verdict`).

        ``config`` overrides the learner's step knobs (alpha, support, …) for
        these steps. ``anchor`` teaches the replay examples. ``cache_teacher``
        runs the teacher pass once for all the steps (an EMA teacher then
        moves once, at the end, by the weight of the steps taken; a base
        teacher never moves; trust_region and live teachers move with the
        student every step and are not cached). ``on_step(k, metrics)`` is
        called after each step. Stops early at a step that could not be taken.
        """
        if method not in ("sdpo", "sft"):
            raise ValueError(f"learn() runs sdpo or sft steps, not {method!r}")
        config = config or self.config
        cache = {} if cache_teacher and method == "sdpo" and self.teacher.mode in ("ema", "base") else None
        history: list[dict] = []
        for k in range(max(1, steps)):
            if method == "sdpo":
                metrics = sdpo_step(self.model, self.tokenizer, self.optimizer, examples, config, self.teacher,
                                    anchor=anchor, teacher_cache=cache, update_teacher=cache is None)
            else:
                metrics = sft_step(self.model, self.tokenizer, self.optimizer, examples, config)
            history.append(metrics)
            if on_step is not None:
                on_step(k + 1, metrics)
            if not metrics.get("stepped"):
                break
        if cache is not None:
            self.teacher.update(self.model, steps=sum(bool(m.get("stepped")) for m in history))
        return history

    def verdict(self, history: list[dict]) -> dict | None:
        """The guard: None when `history`'s steps may stay, else {"rolled_back": reason, "failed": bool}.

        Bad = a loss that is not finite or a divergence above the limit
        (failed); no step taken at all is not a failure, but nothing to keep.
        """
        bad = [m for m in history if not math.isfinite(m["loss"]) or m.get("divergence", 0.0) > self.divergence_limit]
        if bad:
            reason = (f"divergence {bad[0].get('divergence'):.3g} above {self.divergence_limit}; rolled back"
                      if math.isfinite(bad[0]["loss"]) else "non-finite loss; rolled back")
            return {"rolled_back": reason, "failed": True}
        if not any(m.get("stepped") for m in history):
            return {"rolled_back": history[-1].get("skipped", "no step taken") if history else "no step taken",
                    "failed": False}
        return None

    # -- inference on the training copy -------------------------------------------------------
    def sample(self, conversations: list[list[dict]], **kwargs) -> list[list[Sample]]:
        """Batched sampling from the current weights (``sampler.generate``'s arguments)."""
        return generate(self.model, self.tokenizer, conversations, **kwargs)

    def mean_logprob(self, answers: list[tuple[list[dict], list[int]]]) -> float | None:
        """Mean per-token log-prob of (messages, response ids) pairs under the current weights."""
        answers = [(m, ids) for m, ids in answers if m and ids]
        if not answers:
            return None
        batch = build_batch(self.tokenizer, [TrainingExample(m, ids) for m, ids in answers], self.config,
                            teacher=False)
        logits = run_student(self.model, batch, train=False).float()
        logp = torch.log_softmax(logits, -1).gather(-1, batch.response_ids[..., None].to(logits.device)).squeeze(-1)
        mask = batch.response_mask.to(logp.device)
        return float((logp * mask).sum() / mask.sum().clamp(min=1.0))

    def prompt_tokens(self, messages: list[dict]) -> int:
        from continualcode.engines.prompt import render_prompt

        return len(render_prompt(self.tokenizer, messages))

    # -- saving -------------------------------------------------------------------------------
    def save(self, path) -> None:
        """The student adapter in PEFT's save_pretrained layout (what engines load)."""
        self.model.save_pretrained(str(path), selected_adapters=["default"])

    def publish(self, registry: AdapterRegistry, *, parent: str | None, examples: list, metrics: dict,
                checksum: str | None = None, promotion: dict | None = None):
        """Store the student (with its EMA teacher) as the registry's next version."""
        return registry.publish(self.model, parent=parent, base_model=self.model_name, base_checksum=checksum,
                                examples=examples, metrics=metrics, teacher_tensors=self.teacher.state_dict() or None,
                                promotion=promotion, repo_root=registry.repo_root)


def summarize_steps(history: list[dict]) -> dict:
    """One summary of a run of steps: the last step's numbers, the first loss, totals."""
    last = history[-1]
    summary = {k: float(last.get(k, 0.0) or 0.0) for k in ("loss", "divergence", "advantage", "grad_norm", "tokens")}
    summary.update(steps=len(history), first_loss=float(history[0]["loss"]),
                   seconds=float(sum(m.get("seconds", 0.0) for m in history)),
                   stepped=sum(bool(m.get("stepped")) for m in history),
                   history=[{k: m.get(k) for k in ("loss", "advantage", "divergence", "grad_norm", "stepped")}
                            for m in history])
    return summary

