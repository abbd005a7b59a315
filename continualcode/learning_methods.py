"""The methods the learning bench compares, and the batched sampler they share.

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
  does (``feedback.TEMPLATE_FOR_KIND``, the sampler's log-probs), run
  ``sdpo_step`` K times (the trainer's code path).
- ``sft``: the same budget of generations and steps, but cross-entropy
  (``sft_step``) on the answer the self-teacher regenerates with the feedback
  in its context: the usual "just fine-tune on the corrected answer" baseline.

``Policy`` holds ONE loaded base model with one LoRA; ``reset()`` copies the
adapter's initial tensors back, so every scenario and method starts from the
same base weights without reloading.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .embedded_engine import eos_ids, load_causal_lm, render_prompt
from .feedback import TEMPLATE_FOR_KIND
from .lora import attach_lora, preset_for
from .models import resolve
from .sdpo import SDPOConfig, TeacherState, TrainingExample, make_optimizer, sdpo_step, sft_step
from .teacher import lora_parameters, teacher_messages

@dataclass
class Sample:
    """One sampled response: its text, token ids (with the eos if it stopped) and sampler log-probs."""

    text: str
    token_ids: list[int]
    logprobs: list[float]


def generate(model, tokenizer, conversations: list[list[dict]], *, n: int = 1, max_new_tokens: int = 64,
             temperature: float = 0.3, seed: int = 0) -> list[list[Sample]]:
    """Sample ``n`` responses to each conversation in one left-padded batch with a KV cache.

    Batched because on CPU a 135M-0.5B model costs nearly the same per step
    for 1 row as for 16; ``temperature`` 0 is greedy. Log-probs are of the raw
    (untempered) distribution, as the embedded engine records them, so the
    trainer's importance ratio means the same thing here as in the REPL.
    """
    prompts = [render_prompt(tokenizer, c) for c in conversations for _ in range(n)]
    stops = eos_ids(model, tokenizer)
    pad = next(iter(sorted(stops))) if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = len(prompts)
    out: list[list[int]] = [[] for _ in range(rows)]
    logps: list[list[float]] = [[] for _ in range(rows)]
    done = [False] * rows
    was_training = model.training
    model.eval()
    cache = None
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                output = model(input_ids=ids, attention_mask=attention, position_ids=positions, cache=cache,
                               use_cache=True, logits_to_keep=1)
                cache = output.cache
                logits = output.logits[:, -1].float().cpu()
                if temperature <= 0:
                    tokens = logits.argmax(-1)
                else:
                    tokens = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
                logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0]
                for row in range(rows):
                    if not done[row]:
                        out[row].append(int(tokens[row]))
                        logps[row].append(float(logp[row]))
                        done[row] = int(tokens[row]) in stops
                if all(done):
                    break
                ids = tokens[:, None].to(device)
                attention = torch.cat([attention, attention.new_ones(rows, 1)], -1)
                positions = positions[:, -1:] + 1
    finally:
        model.train(was_training)
    samples = [Sample(tokenizer.decode(o, skip_special_tokens=True), o, lp) for o, lp in zip(out, logps)]
    return [samples[i * n:(i + 1) * n] for i in range(len(conversations))]


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


class Policy:
    """One base model with a LoRA adapter whose initial tensors are kept so it can be reset to base."""

    def __init__(self, model, tokenizer, model_name: str) -> None:
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self._initial = {k: p.detach().clone() for k, p in lora_parameters(model).items()}

    @classmethod
    def load(cls, model_name: str, seed: int = 0) -> Policy:
        """Resolve a bundled or local model, load it in fp32 and attach its preset's LoRA (seeded init)."""
        resolved = resolve(model_name)
        base, tokenizer = load_causal_lm(resolved, torch.float32, "cpu")
        torch.manual_seed(seed)
        return cls(attach_lora(base, preset_for(resolved.name)), tokenizer, resolved.name)

    def reset(self) -> None:
        """Back to the base weights: the adapter's initial tensors (B = 0, the same A)."""
        with torch.no_grad():
            for key, param in lora_parameters(self.model).items():
                param.copy_(self._initial[key])

    def sample(self, conversations: list[list[dict]], **kwargs) -> list[list[Sample]]:
        return generate(self.model, self.tokenizer, conversations, **kwargs)


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


def train_on_feedback(policy: Policy, items: list[dict], method: str, settings: TrainSettings, seed: int) -> dict:
    """Learn from a scenario's train items with ``sdpo`` or ``sft``; returns per-step metrics summarized.

    Each item: sample y from the current policy (sdpo) or from the current
    weights shown the feedback (sft, the self-teacher's regenerated answer),
    then K optimizer steps on that one example, in order, like the trainer.
    """
    if method not in ("sdpo", "sft"):
        raise ValueError(f"train_on_feedback trains sdpo or sft, not {method!r}")
    config = settings.sdpo_config()
    model, tokenizer = policy.model, policy.tokenizer
    optimizer = make_optimizer(model, settings.learning_rate)
    teacher = TeacherState.create(model, config.teacher, config.teacher_update_rate)
    started = time.perf_counter()
    steps: list[dict] = []
    for index, item in enumerate(items):
        template = feedback_template(item["kind"])
        context = item["messages"] if method == "sdpo" else teacher_messages(
            item["messages"], item["feedback"], None, template)
        [[y]] = generate(model, tokenizer, [context], n=1, max_new_tokens=settings.max_new_tokens,
                         temperature=settings.temperature, seed=seed * 1000 + index)
        if method == "sdpo":
            example = TrainingExample(messages=item["messages"], response_ids=y.token_ids, feedback=item["feedback"],
                                      template=template, old_logprobs=y.logprobs)
        else:
            example = TrainingExample(messages=item["messages"], response_ids=y.token_ids)
        for _ in range(settings.steps_per_feedback):
            if method == "sdpo":
                metrics = sdpo_step(model, tokenizer, optimizer, [example], config, teacher)
            else:
                metrics = sft_step(model, tokenizer, optimizer, [example], config)
            steps.append({k: metrics.get(k) for k in ("loss", "advantage", "divergence", "grad_norm", "stepped")})
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
