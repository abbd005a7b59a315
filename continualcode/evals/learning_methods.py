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
- ``icl-instruction``: the same, with the feedback as a standing instruction
  (the ``instruction`` template, what expansion prompts are taught with): on a
  fresh prompt the hindsight template ("the user's next message …") may
  understate what the model does with the feedback in context.
- ``sdpo``: sample y from the current policy, build the example as the REPL
  does (``TEMPLATE_FOR_KIND``, the sampler's log-probs), and train on it as
  one feedback event with the run's recipe (``learning.recipe``, the
  trainer's code path: K steps on y by default; rollouts, expansion, teacher
  samples and replay by flag).
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
from continualcode.learning.gate import GateConfig
from continualcode.learning.learner import Learner
from continualcode.learning.probes import replay_prompts
from continualcode.learning.recipe import LearnRecipe, learn_from_feedback
from continualcode.learning.teacher import teacher_messages
from continualcode.learning.types import SDPOConfig, template_for_kind
from continualcode.models import resolve


@dataclass
class TrainSettings:
    """The training budget, SDPO knobs and recipe levers a bench run uses for every scenario.

    Every field is recorded in the report's settings, so ``--resume`` refuses a report run otherwise.
    """

    steps_per_feedback: int
    learning_rate: float
    alpha: float = 0.5
    teacher: str = "ema"
    teacher_update_rate: float = 0.05
    max_new_tokens: int = 64
    temperature: float = 0.3
    support: str = "student"
    rollouts: int = 0
    rounds: int = 1
    expand: int = 0
    teacher_samples: float = 0.0
    replay: bool = False
    replay_weight: float = 1.0
    cache_teacher: bool = False
    system: str = "none"
    """The scenarios' system prompt (``learning_bench.SYSTEMS``): recorded so --baseline and --resume
    never mix runs judged under different prompts."""
    followup_template: str = "hindsight"
    """The teacher template of the followup items' examples (hindsight, the tables' default; the REPL's
    setting defaults to ``prefix``, the feedback before the request)."""
    gate: bool = False
    """After each sdpo event, the promotion gate against the weights before it (``gate.gate_event``: the
    general probes minus the held-out items, and the scenario's feedback prompts so far); a rejected
    event is undone, as the REPL's trainer keeps serving and training from the live version."""
    gate_threshold: float = GateConfig.threshold
    """The gate's largest allowed drop of the replay pass rate (the REPL's ``gate_threshold``)."""

    def sdpo_config(self) -> SDPOConfig:
        return SDPOConfig(alpha=self.alpha, teacher=self.teacher, teacher_update_rate=self.teacher_update_rate,
                          learning_rate=self.learning_rate, support=self.support, replay_weight=self.replay_weight)

    def recipe(self) -> LearnRecipe:
        """The feedback-event recipe: ``steps_per_feedback`` steps per round."""
        return LearnRecipe(steps=self.steps_per_feedback, rounds=self.rounds, rollouts=self.rollouts,
                           expand=self.expand, teacher_samples=self.teacher_samples, replay=self.replay,
                           cache_teacher=self.cache_teacher, max_new_tokens=self.max_new_tokens,
                           temperature=self.temperature)


def load_learner(model_name: str, seed: int = 0) -> Learner:
    """The bench's one model: a bundled or local model in fp32 on the CPU with its preset's LoRA
    (seeded initialisation); `Learner.reset` brings it back to these weights between runs."""
    resolved = resolve(model_name)
    return Learner.load(resolved, preset_for(resolved.name), dtype=torch.float32, device="cpu", seed=seed)


def icl_messages(messages: list[dict], feedback: list[tuple[str, str]], template: str | None = None) -> list[dict]:
    """The prompt as the self-teacher would see it with the scenario's feedback (the ICL reference).

    ``feedback`` is [(kind, text)]; distinct texts are joined, and ``template``
    (default: the first kind's) is used.
    """
    texts = list(dict.fromkeys(text for _, text in feedback if text.strip()))
    if not texts:
        return messages
    return teacher_messages(messages, "\n".join(texts), None, template or template_for_kind(feedback[0][0]))


def train_on_feedback(learner: Learner, items: list[dict], method: str, settings: TrainSettings, seed: int,
                      held_out: list[list[dict]] = ()) -> dict:
    """Learn from a scenario's train items with ``sdpo`` or ``sft``; returns the training summarized.

    Each item is one feedback event, in order, like the trainer. ``sdpo``:
    sample y from the current policy and train on it with the settings'
    recipe (``learn_from_feedback``; the user's recent prompts are the earlier
    items' prompts, the replay prompts leave out ``held_out``, the eval and
    general items). ``sft``: the same generation and steps, cross-entropy on
    the answer the current weights give with the feedback in context. The
    caller resets the learner first (``learner.reset(settings.sdpo_config())``).
    """
    if method not in ("sdpo", "sft"):
        raise ValueError(f"train_on_feedback trains sdpo or sft, not {method!r}")
    started = time.perf_counter()
    steps: list[dict] = []
    events: list[dict] = []
    replay = replay_prompts(list(held_out))
    gated: list[dict] = []
    for index, item in enumerate(items):
        template = template_for_kind(item["kind"], settings.followup_template)
        context = item["messages"] if method == "sdpo" else teacher_messages(
            item["messages"], item["feedback"], None, template)
        [[y]] = learner.sample([context], n=1, max_new_tokens=settings.max_new_tokens,
                               temperature=settings.temperature, seed=seed * 1000 + index)
        if method == "sdpo":
            example = learner.example(item["messages"], y.text, token_ids=y.token_ids, logprobs=y.logprobs,
                                      feedback=item["feedback"], template=template)
            before = learner.snapshot() if settings.gate else None
            event = learn_from_feedback(learner, example, settings.recipe(),
                                        recent_prompts=[i["messages"] for i in items[:index]][::-1],
                                        replay=replay, seed=seed * 1000 + index)
            if before is not None:
                gated.append(_gate(learner, before, items[:index + 1], held_out, settings.gate_threshold))
            events.append(event)
            steps.extend(event["history"])
        else:
            example = learner.example(item["messages"], y.text, token_ids=y.token_ids)
            steps.extend(learner.learn([example], settings.steps_per_feedback, method=method)["history"])
    losses = [s["loss"] for s in steps if s["loss"] is not None]
    advantages = [s["advantage"] for s in steps if s.get("advantage") is not None]
    seconds = time.perf_counter() - started
    summary = {
        "steps": len(steps),
        "stepped": sum(bool(s["stepped"]) for s in steps),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "mean_advantage": sum(advantages) / len(advantages) if advantages else None,
        "seconds": seconds,
        "events": len(items),
        "seconds_per_event": seconds / len(items) if items else None,
    }
    if events:
        summary.update({k: sum(e[k] for e in events) for k in ("rollouts", "teacher_samples", "expanded", "replayed")})
        summary["rolled_back"] = sum("rolled_back" in e for e in events)
        summary["by_kind"] = merge_kinds([e["by_kind"] for e in events])
        summary["expansion_prompts"] = [e["expansion_prompts"] for e in events]
    if gated:
        summary["gate"] = [{"decision": g["decision"], "reason": g["reason"], "seconds": g["scores"]["seconds"],
                            "regressed": g["scores"]["regressed"]} for g in gated]
        summary["rejected"] = sum(g["decision"] == "rejected" for g in gated)
    return summary


def _gate(learner: Learner, before: dict, items: list[dict], held_out: list[list[dict]], threshold: float) -> dict:
    """The promotion gate on one event (what the REPL's trainer runs before serving a version): the general
    probes except the scenario's held-out items, then its latest distinct feedback prompts (the store's
    recent examples in the REPL); a rejected event goes back to ``before``."""
    from continualcode.learning.gate import GateConfig, gate_checks, gate_event

    config = GateConfig(threshold=threshold)
    checks = gate_checks([item["messages"] for item in reversed(items)], config, exclude=held_out)
    decision = gate_event(learner, before, checks, config)
    if decision["decision"] == "rejected":
        learner.restore(before)
    return decision


def merge_kinds(parts: list[dict]) -> dict:
    """Per-kind loss/divergence of several events, token-weighted (``learn_from_feedback``'s by_kind)."""
    merged: dict = {}
    for part in parts:
        for kind, v in part.items():
            m = merged.setdefault(kind, {"examples": 0, "tokens": 0, "loss": 0.0, "divergence": 0.0})
            m["examples"] += v["examples"]
            m["tokens"] += v["tokens"]
            for name in ("loss", "divergence"):
                m[name] += (v[name] or 0.0) * v["tokens"]
    for m in merged.values():
        for name in ("loss", "divergence"):
            m[name] = m[name] / m["tokens"] if m["tokens"] else None
    return merged
