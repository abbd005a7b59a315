"""The methods the learning bench compares.

A scenario gives a few prompts with the user's feedback on the model's own
answers (train) and held-out prompts with regex checks (eval, general). Each
method turns the train items into a changed policy (or, for ``icl``, a changed
context) and is then scored on the held-out prompts:

- ``base``: no training; the base weights (a fresh LoRA has B = 0).
- ``icl``: no training; every eval and general prompt is shown the scenario's
  feedback exactly as the self-teacher sees it (``teacher_messages`` with the
  feedback kind's template). What SDPO distils is this teacher, so ICL is its
  reference ceiling.
- ``sdpo``: sample y from the current policy, build the example as the REPL
  does (``TEMPLATE_FOR_KIND``, the sampler's log-probs), run
  ``sdpo_step`` K times (the trainer's code path).
- ``sft``: the same budget of generations and steps, but cross-entropy
  (``sft_step``) on the answer the self-teacher regenerates with the feedback
  in its context: the usual "just fine-tune on the corrected answer" baseline.

The bench holds ONE ``Learner`` (continualcode.learning.learner, the trainer's
own training copy); ``reset()`` copies the adapter's initial tensors back, so
every scenario and method starts from the same base weights without reloading.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from continualcode.adapters.presets import preset_for
from continualcode.learning.learner import Learner
from continualcode.learning.teacher import teacher_messages
from continualcode.learning.types import TEMPLATE_FOR_KIND, SDPOConfig
from continualcode.models import resolve


@dataclass
class TrainSettings:
    """The training budget and SDPO knobs a bench run uses for every scenario (sdpo and sft alike)."""

    steps_per_feedback: int
    learning_rate: float
    alpha: float = 0.5
    teacher: str = "ema"
    teacher_update_rate: float = 0.05
    max_new_tokens: int = 64
    temperature: float = 0.3

    def sdpo_config(self) -> SDPOConfig:
        return SDPOConfig(alpha=self.alpha, teacher=self.teacher, teacher_update_rate=self.teacher_update_rate,
                          learning_rate=self.learning_rate)


def load_learner(model_name: str, seed: int = 0) -> Learner:
    """The bench's one model: a bundled or local model in fp32 on the CPU with its preset's LoRA
    (seeded initialisation); `Learner.reset` brings it back to these weights between runs."""
    resolved = resolve(model_name)
    return Learner.load(resolved, preset_for(resolved.name), dtype=torch.float32, device="cpu", seed=seed)


def feedback_template(kind: str) -> str:
    """The teacher template the REPL uses for a feedback kind (followup → hindsight, failures → reprompt)."""
    if kind not in TEMPLATE_FOR_KIND:
        raise ValueError(f"unknown feedback kind {kind!r}; use one of {sorted(TEMPLATE_FOR_KIND)}")
    return TEMPLATE_FOR_KIND[kind]


def icl_messages(messages: list[dict], feedback: list[tuple[str, str]]) -> list[dict]:
    """The prompt as the self-teacher would see it with the scenario's feedback (the ICL reference).

    ``feedback`` is [(kind, text)]; distinct texts are joined, and the first
    kind's template is used.
    """
    texts = list(dict.fromkeys(text for _, text in feedback if text.strip()))
    if not texts:
        return messages
    return teacher_messages(messages, "\n".join(texts), None, feedback_template(feedback[0][0]))


def train_on_feedback(learner: Learner, items: list[dict], method: str, settings: TrainSettings, seed: int) -> dict:
    """Learn from a scenario's train items with ``sdpo`` or ``sft``; returns per-step metrics summarized.

    Each item: sample y from the current policy (sdpo) or from the current
    weights shown the feedback (sft, the self-teacher's regenerated answer),
    then K optimizer steps on that one example, in order, like the trainer.
    The caller resets the learner first (``learner.reset(settings.sdpo_config())``).
    """
    if method not in ("sdpo", "sft"):
        raise ValueError(f"train_on_feedback trains sdpo or sft, not {method!r}")
    started = time.perf_counter()
    steps: list[dict] = []
    for index, item in enumerate(items):
        template = feedback_template(item["kind"])
        context = item["messages"] if method == "sdpo" else teacher_messages(
            item["messages"], item["feedback"], None, template)
        [[y]] = learner.sample([context], n=1, max_new_tokens=settings.max_new_tokens,
                               temperature=settings.temperature, seed=seed * 1000 + index)
        if method == "sdpo":
            example = learner.example(item["messages"], y.text, token_ids=y.token_ids, logprobs=y.logprobs,
                                      feedback=item["feedback"], template=template)
        else:
            example = learner.example(item["messages"], y.text, token_ids=y.token_ids)
        steps.extend(learner.learn([example], settings.steps_per_feedback, method=method)["history"])
    losses = [s["loss"] for s in steps if s["loss"] is not None]
    advantages = [s["advantage"] for s in steps if s.get("advantage") is not None]
    return {
        "steps": len(steps),
        "stepped": sum(bool(s["stepped"]) for s in steps),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "mean_advantage": sum(advantages) / len(advantages) if advantages else None,
        "seconds": time.perf_counter() - started,
    }
