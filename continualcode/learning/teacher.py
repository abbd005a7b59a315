"""The self-teacher: what it reads (teacher context) and which weights it runs with.

SDPO's teacher is the model itself, shown the feedback f (and/or a successful
solution s) before the same response tokens y the student produced. Two things
define it, and both live here:

- ``teacher_messages``: x -> x', the conversation with its last user turn
  rewritten by a template (../shared/SDPO.md, "Teacher context").
- ``TeacherState``: the weights the teacher forward runs with (ema,
  trust_region, base, live; SDPO.md, "Teacher weights"), saveable beside each
  adapter version.

The token tensors both forwards read are built by ``continualcode.learning.batch``;
the loss and the step live in ``continualcode.learning.sdpo``.
"""

from __future__ import annotations

import copy
import re
from typing import Callable

import torch

from continualcode.learning.lora import lora_parameters, swapped
from continualcode.learning.types import (
    HINDSIGHT_FEEDBACK,
    HINDSIGHT_SOLUTION,
    INSTRUCTION_FEEDBACK,
    PREFIX_FEEDBACK,
    REPROMPT_FEEDBACK,
    REPROMPT_SOLUTION,
    REPROMPT_TEMPLATE,
    TEACHER_MODES,
    TEMPLATES,
)

_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


def strip_thinking(text: str) -> str:
    """Drop ``<think>…</think>`` blocks (and an unclosed one at the start) from a solution.

    The reference strips reasoning from demonstrations so the teacher is shown
    the answer, not a chain of thought it would then copy.
    """
    text = _THINK.sub("", text)
    if "<think>" in text and "</think>" not in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


def teacher_messages(
    messages: list[dict],
    feedback: str | None = None,
    solution: str | None = None,
    template: str = "reprompt",
    *,
    feedback_with_solution: bool = False,
) -> list[dict]:
    """Build the teacher's conversation x' from the student's conversation x.

    ``messages`` is x: OpenAI-style dicts ending with the last user (or
    tool-result, role "user") message before the judged assistant turn. Its last
    user message is rewritten; nothing else changes, and y is never placed in
    the context (SDPO.md: the teacher would copy it). The input is not mutated.

    Templates: ``reprompt`` (the reference text, for failures), ``hindsight``
    (the user's next message, shown ahead of time), ``instruction`` (the
    feedback as a standing instruction, for prompts it was not given on),
    ``prefix`` (the feedback before the request, as if said first).
    Reference default: when a solution exists the feedback is dropped
    (``feedback_with_solution=False``). With neither, x is returned unchanged
    (callers mask such examples out of the loss).
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown teacher template {template!r}; choose one of {TEMPLATES}")
    solution = strip_thinking(solution) if solution else None
    feedback = feedback.strip() if feedback and feedback.strip() else None
    if solution and not feedback_with_solution:
        feedback = None
    rewritten = copy.deepcopy(list(messages))
    if not feedback and not solution:
        return rewritten
    index = next((i for i in range(len(rewritten) - 1, -1, -1) if rewritten[i].get("role") == "user"), None)
    if index is None:
        raise ValueError(
            "teacher_messages: the conversation has no user message to attach feedback to; "
            "x must end with the user (or tool-result) turn that preceded the judged response."
        )
    prompt = _text_of(rewritten[index].get("content"))
    if template == "reprompt":
        text = REPROMPT_TEMPLATE.format(
            prompt=prompt,
            solution=REPROMPT_SOLUTION.format(solution=solution) if solution else "",
            feedback=REPROMPT_FEEDBACK.format(feedback=feedback) if feedback else "",
        )
    else:
        text = prompt
        if solution:
            text += HINDSIGHT_SOLUTION.format(solution=solution)
        if feedback and template == "prefix":
            text = PREFIX_FEEDBACK.format(feedback=feedback, prompt=text)
        elif feedback:
            form = HINDSIGHT_FEEDBACK if template == "hindsight" else INSTRUCTION_FEEDBACK
            text += form.format(feedback=feedback)
    rewritten[index] = {**rewritten[index], "content": text}
    return rewritten


def _text_of(content: object) -> str:
    """The text of a message's content (a string, or a list of OpenAI content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise TypeError(f"unsupported message content type {type(content).__name__}")


# ------------------------------------------------------- student / teacher tokens


class TeacherState:
    """The teacher's weights, for one of SDPO.md's four modes.

    - ``ema``: a copy of the LoRA tensors, updated after each optimizer step as
      teacher <- (1 - r)·teacher + r·student (r = 0.05, lasgroup default). A and B
      are averaged separately, not ΔW = B·A. Why: the teacher stays a rank-r
      LoRA that runs through the same PEFT forward (we swap its tensors in for
      the teacher pass) and saves as a normal adapter; averaging ΔW would need a
      full d×k matrix per module or an SVD every step. The error is small in
      practice: PEFT initializes B = 0 and A at a fixed random matrix that a few
      steps barely move, and while A is constant EMA(B)·A = EMA(B·A) exactly;
      the gap is second order in A's drift (tests/learning/test_sdpo.py measures it).
    - ``trust_region``: teacher logits = lerp(base logits, live logits, r).
    - ``base``: the adapter disabled (``model.disable_adapter()``).
    - ``live``: the current weights under no_grad.

    ``state_dict()`` / ``load_state_dict()`` hold the EMA tensors (empty for the
    other modes) so the trainer can persist them beside each adapter version.
    """

    def __init__(self, mode: str = "ema", rate: float = 0.05, tensors: dict[str, torch.Tensor] | None = None,
                 adapter_name: str = "default") -> None:
        if mode not in TEACHER_MODES:
            raise ValueError(f"unknown teacher mode {mode!r}; choose one of {TEACHER_MODES}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"teacher update rate must be in [0, 1], got {rate}")
        if mode == "ema" and tensors is None:
            raise ValueError("an ema teacher needs its LoRA tensors; build it with TeacherState.create(model, ...)")
        self.mode = mode
        self.rate = rate
        self.adapter_name = adapter_name
        self.tensors = tensors or {}

    @classmethod
    def create(cls, model: torch.nn.Module, mode: str = "ema", rate: float = 0.05,
               adapter_name: str = "default") -> TeacherState:
        """A teacher starting at the model's current adapter weights."""
        tensors = None
        if mode == "ema":
            # float32 even for a bf16 model: r = 0.05 increments vanish in bf16's 8-bit mantissa.
            tensors = {k: p.detach().float().clone() for k, p in lora_parameters(model, adapter_name).items()}
        return cls(mode, rate, tensors, adapter_name)

    @classmethod
    def frozen(cls, model: torch.nn.Module, adapter_name: str = "default") -> TeacherState:
        """A teacher fixed at the model's current adapter weights (an EMA of rate 0): the replay anchor,
        i.e. the policy as it was before a feedback event's steps."""
        return cls.create(model, "ema", 0.0, adapter_name)

    def logits(self, model: torch.nn.Module, forward: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run ``forward()`` (a forward pass of ``model`` returning logits) as the teacher, under no_grad.

        Runs in eval mode (no dropout) and restores the model's mode after. For
        ema it must run BEFORE the student's grad forward: swapping tensors in
        place would invalidate tensors autograd saved.
        """
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if self.mode == "live":
                    return forward()
                if self.mode == "base":
                    with model.disable_adapter():
                        return forward()
                if self.mode == "trust_region":
                    with model.disable_adapter():
                        base = forward()
                    return torch.lerp(base, forward(), self.rate)
                self._check_keys(lora_parameters(model, self.adapter_name).keys())
                with swapped(model, self.tensors, self.adapter_name):
                    return forward()
        finally:
            model.train(was_training)

    def update(self, model: torch.nn.Module, steps: int = 1) -> None:
        """After an optimizer step: move the EMA teacher toward the student by rate r.

        ``steps`` > 1 is the deferred form (a round whose teacher pass was
        computed once, ``Learner.run_steps(cache_teacher=True)``): one move by
        1 − (1 − r)^steps, the weight ``steps`` updates would have given the
        student in total, toward the round's final student.
        """
        if self.mode != "ema" or steps < 1:
            return
        params = lora_parameters(model, self.adapter_name)
        self._check_keys(params.keys())
        keys = sorted(self.tensors)
        rate = 1.0 - (1.0 - self.rate) ** steps
        with torch.no_grad():
            torch._foreach_lerp_([self.tensors[k] for k in keys], [params[k].detach().float() for k in keys],
                                 rate)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA tensors (contiguous CPU copies, safetensors-ready); empty unless mode is ema."""
        return {k: t.detach().to("cpu").contiguous().clone() for k, t in self.tensors.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore EMA tensors saved by ``state_dict()`` (same adapter layout required)."""
        if self.mode != "ema":
            if state:
                raise ValueError(f"a {self.mode!r} teacher has no tensors to load")
            return
        self._check_keys(state.keys())
        for key, tensor in state.items():
            if tensor.shape != self.tensors[key].shape:
                raise ValueError(
                    f"teacher tensor {key}: saved shape {tuple(tensor.shape)} != adapter shape "
                    f"{tuple(self.tensors[key].shape)}; the adapter's rank or targets changed since it was saved."
                )
            self.tensors[key].copy_(tensor)

    def _check_keys(self, keys) -> None:
        keys = set(keys)
        if keys != set(self.tensors):
            missing, extra = sorted(set(self.tensors) - keys)[:3], sorted(keys - set(self.tensors))[:3]
            raise ValueError(
                f"teacher tensors do not match the adapter (only in teacher: {missing}, only in adapter: {extra}); "
                "create a fresh TeacherState for this adapter."
            )
