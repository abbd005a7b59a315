"""The credit view: which tokens of a judged reply the self-teacher would push down or up.

For a reply that received feedback, SDPO's per-token signal is the advantage
A_t = log p_teacher(y_t | x', y<t) − log p_student(y_t | x, y<t) (../shared/SDPO.md;
the paper's figure 4): red where the teacher, having read the feedback, disagrees,
blue where it reinforces, plain near zero; a token's teacher top-k shows what it
would write instead. The numbers come from the trainer's own path (the example
rule of `Trainer._example`, `build_batch` with `teacher_messages`, `TeacherState`,
`token_advantages`), so what the user sees is what training will push. Which
weights are student and teacher, and why: docs/tui.md, "Which weights".
torch is imported only when credit is computed, so the CLI starts fast.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from continualcode.store.db import Store

if TYPE_CHECKING:
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.learning.sdpo import TeacherState
    from continualcode.learning.types import SDPOConfig, TrainingExample

NEUTRAL_BAND = 0.1
"""|advantage| below this many nats is shown plain: a 10 % change in the token's probability."""
DEFAULT_TOP_K = 5
SCRIPTED = ("credit is unavailable with the scripted engine: it replays fixed text and has no model to ask for "
            "token probabilities. Use --engine embedded (the default).")


class CreditUnavailable(RuntimeError):
    """Credit cannot be computed here; the message says why and what to do instead."""


@dataclass
class Alternative:
    """One of the teacher's top-k next tokens at a position."""

    id: int
    text: str
    prob: float


@dataclass
class TokenCredit:
    position: int
    id: int
    text: str                  # this token's share of the decoded reply ('' for a partial character)
    advantage: float           # log p_teacher(y_t) − log p_student(y_t), nats
    teacher_logprob: float
    student_logprob: float
    teacher_top: list[Alternative] = field(default_factory=list)


@dataclass
class CreditView:
    message_id: int
    example_id: int
    feedback: str | None
    solution: str | None
    template: str
    trained_on: bool           # False: no feedback/solution, so sdpo_step masks it out
    adapter_version: str | None
    student: str               # which weights scored y as the student
    teacher: str               # which weights, reading x', scored y as the teacher
    tokens: list[TokenCredit]

    @property
    def mean_advantage(self) -> float:
        return sum(t.advantage for t in self.tokens) / len(self.tokens) if self.tokens else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mean_advantage": self.mean_advantage, "neutral_band": NEUTRAL_BAND}


# -- which example -------------------------------------------------------------------------

def judged_turns(store: Store, session_id: int) -> list[dict]:
    """A session's assistant turns whose feedback became a training example, newest first."""
    return [m for m in reversed(store.messages_with_feedback(session_id)) if m["examples"]]


def example_row(store: Store, message_id: int, example_id: int | None = None) -> dict:
    """The training example judging `message_id`: the given one, or the most recent."""
    message = store.message(message_id)
    if message is None or message["role"] != "assistant":
        raise CreditUnavailable(f"message {message_id} is not an assistant turn; credit is shown for "
                                "assistant replies that received feedback")
    rows = store.examples_for_message(message_id)
    if example_id is not None:
        rows = [r for r in rows if r["id"] == example_id]
        if not rows:
            raise CreditUnavailable(f"example {example_id} does not judge message {message_id}")
    if not rows:
        why = "it has feedback, but learning was off" if store.message_feedback(message_id) else "it has no feedback"
        raise CreditUnavailable(f"message {message_id} has no training example ({why}); credit shows the "
                                "signal an example would train on")
    return rows[-1]


# -- computing -------------------------------------------------------------------------------

def credit_for_message(source, tokenizer, store: Store, message_id: int, *, registry: AdapterRegistry | None = None,
                       config: SDPOConfig | None = None, teacher: TeacherState | None = None,
                       example_id: int | None = None, top_k: int = DEFAULT_TOP_K) -> CreditView:
    """Per-token advantages and teacher alternatives for one judged assistant message.

    `source` is an engine with an in-process model (`EmbeddedEngine`: its
    `.model`, `.tokenizer`, live adapter and lock are used) or a bare causal LM
    (then `tokenizer` is required and `teacher` defaults to the same weights).
    `registry` supplies the EMA teacher saved with the live version.
    """
    model = _model_of(source)
    tokenizer = tokenizer or getattr(source, "tokenizer", None)
    if tokenizer is None:
        raise CreditUnavailable("credit needs the model's tokenizer; pass tokenizer=")
    from continualcode.learning.types import SDPOConfig

    config = config or SDPOConfig()
    row = example_row(store, message_id, example_id)
    from continualcode.learning.examples import training_example

    example = training_example(row, tokenizer)
    is_engine = model is not source
    version = getattr(source, "adapter_version", None) if is_engine else None
    lock = source.exclusive() if hasattr(source, "exclusive") else nullcontext()  # a swap or generation must not interleave
    with lock:
        context, teacher, student_name, teacher_name = _weights(model, version, registry, config, teacher, is_engine)
        with context:
            scores = score_example(model, tokenizer, example, config, teacher, top_k)
    tokens = _tokens(tokenizer, example.response_ids, *scores)
    return CreditView(message_id=message_id, example_id=row["id"], feedback=example.feedback,
                      solution=example.solution, template=example.template or config.template,
                      trained_on=example.has_signal(config), adapter_version=version,
                      student=student_name, teacher=teacher_name, tokens=tokens)


def credit_for_turn(engine, store: Store, registry: AdapterRegistry | None, session_id: int, n: int = 1,
                    **options) -> CreditView:
    """Credit for the n-th most recent judged assistant turn of a session (n = 1: the latest)."""
    _model_of(engine)  # an engine without a model says so before anything else
    turns = judged_turns(store, session_id)
    if not turns:
        raise CreditUnavailable("no assistant turn in this conversation has feedback yet; reply to the agent, "
                                "deny a call or run the tests, then try again")
    if not 1 <= n <= len(turns):
        raise CreditUnavailable(f"only {len(turns)} turn(s) with feedback in this conversation; use 1–{len(turns)}")
    return credit_for_message(engine, None, store, turns[n - 1]["id"], registry=registry, **options)


def score_example(model, tokenizer, example: TrainingExample, config: SDPOConfig, teacher: TeacherState,
                  top_k: int = DEFAULT_TOP_K):
    """For one example: advantages [T], log p_teacher(y_t) [T], log p_student(y_t) [T], teacher top-k.

    The same calls `sdpo_step` makes: `build_batch`, the teacher forward through
    `TeacherState.logits`, the student forward, then `token_advantages`. The top-k
    is (log-probs [T, k], ids [T, k]) of the teacher's next-token distribution.
    """
    import torch

    from continualcode.learning.sdpo import (
        build_batch,
        response_logits,
        token_advantages,
    )

    batch = build_batch(tokenizer, [example], config)
    length = batch.response_length
    teacher_logits = teacher.logits(model, lambda: response_logits(
        model, batch.teacher_ids, batch.teacher_attention, batch.teacher_positions, length))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            student_logits = response_logits(model, batch.student_ids, batch.student_attention,
                                             batch.student_positions, length)
    finally:
        model.train(was_training)
    response_ids = batch.response_ids.to(student_logits.device)
    advantages = token_advantages(student_logits, teacher_logits, response_ids)[0]
    teacher_logp = torch.log_softmax(teacher_logits[0].float(), -1)
    student_logp = torch.log_softmax(student_logits[0].float(), -1)
    picked = response_ids[0, :, None]
    top = teacher_logp.topk(max(0, min(top_k, teacher_logp.shape[-1])), dim=-1)
    return (advantages.cpu(), teacher_logp.gather(-1, picked)[:, 0].cpu(), student_logp.gather(-1, picked)[:, 0].cpu(),
            (top.values.cpu(), top.indices.cpu()))


def _model_of(source):
    """The torch model to score with: `source` itself, or an engine's `.model`."""
    torch = sys.modules.get("torch")  # a model means torch is loaded; an engine check must not load it
    if torch is not None and isinstance(source, torch.nn.Module):
        return source  # checked first: a causal LM's own `.model` is its backbone
    model = getattr(source, "model", None)
    if model is not None:
        return model
    name = getattr(source, "model_name", type(source).__name__)
    if name == "scripted":
        raise CreditUnavailable(SCRIPTED)
    raise CreditUnavailable(f"credit needs the model's weights in this process, and the {name} engine serves from "
                            "another process. Run `continualcode credit MESSAGE_ID`, which loads the model itself.")


def _weights(model, version, registry, config, teacher, is_engine):
    """(context for both forwards, TeacherState, student description, teacher description)."""
    from continualcode.learning.teacher import TeacherState

    peft = hasattr(model, "peft_config") and hasattr(model, "disable_adapter")
    if teacher is not None:
        return nullcontext(), teacher, "the given model", f"the given {teacher.mode} teacher"
    if not is_engine:
        return nullcontext(), TeacherState("live"), "the given model", "the same weights, reading the feedback"
    if version is None:  # the trainer's fresh LoRA starts at B = 0: its student and teacher are the base model
        context = model.disable_adapter() if peft else nullcontext()
        return context, TeacherState("live"), "the base model (no adapter live)", \
            "the base model, reading the feedback (a fresh adapter's teacher)"
    student = f"{version} (the serving weights)"
    if config.teacher != "ema":
        return nullcontext(), TeacherState(config.teacher, config.teacher_update_rate), student, \
            f"the {config.teacher} teacher of {version}, reading the feedback"
    saved = registry.load_teacher(version) if registry is not None else None
    if saved:
        return nullcontext(), TeacherState("ema", config.teacher_update_rate, dict(saved)), student, \
            f"the EMA teacher saved with {version}, reading the feedback"
    return nullcontext(), TeacherState("live"), student, \
        f"{version} itself, reading the feedback (no EMA teacher saved with it)"


def _tokens(tokenizer, ids: list[int], advantages, teacher_logp, student_logp, top) -> list[TokenCredit]:
    spans = token_spans(tokenizer, ids)
    out = []
    for t, token in enumerate(ids):
        alternatives = [Alternative(int(i), tokenizer.decode([int(i)]), math.exp(float(lp)))
                        for lp, i in zip(top[0][t], top[1][t])]
        out.append(TokenCredit(t, int(token), spans[t], float(advantages[t]), float(teacher_logp[t]),
                               float(student_logp[t]), alternatives))
    return out


def token_spans(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text; the pieces join to the whole reply.

    A character split over several byte tokens belongs to the token completing it
    (the earlier ones get '').
    """
    spans, emitted = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=False)
        if text.endswith("\ufffd") and end < len(ids):
            spans.append("")
            continue
        common = len(os.path.commonprefix([text, emitted]))
        spans.append(text[common:])
        emitted = text
    return spans


# -- rendering -------------------------------------------------------------------------------


# -- command line: continualcode credit MESSAGE_ID [--json] ---------------------------------
