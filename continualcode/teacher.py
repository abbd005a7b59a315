"""The self-teacher: what it reads (teacher context) and which weights it runs with.

SDPO's teacher is the model itself, shown the feedback f (and/or a successful
solution s) before the same response tokens y the student produced. Three
things define it, and all live here:

- ``teacher_messages``: x -> x', the conversation with its last user turn
  rewritten by a template (../shared/SDPO.md, "Teacher context").
- ``build_batch`` / ``response_logits``: x + y and x' + y as token tensors
  whose y columns are identical ids, and the forward that scores only y.
- ``TeacherState``: the weights the teacher forward runs with (ema,
  trust_region, base, live; SDPO.md, "Teacher weights"), saveable beside each
  adapter version.

The loss, the optimizer and the step live in ``continualcode.sdpo``, which
re-exports everything here that callers need.
"""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch

if TYPE_CHECKING:  # only for annotations: sdpo imports this module
    from continualcode.sdpo import SDPOConfig, TrainingExample

# The reference reprompt templates (lasgroup/SDPO and trl.experimental.sdpo are
# identical). Kept verbatim: the paper's numbers were measured with this text.
REPROMPT_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
REPROMPT_SOLUTION = "\nCorrect solution:\n\n{solution}\n\n"
REPROMPT_FEEDBACK = "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback}\n\n"

# The hindsight variant (idea from lasgroup/user_interactions; our wording). It
# deliberately does NOT call the earlier answer unsuccessful: measured on
# Qwen2.5-Coder-0.5B, the reprompt template flipped a correct YES to NO when the
# feedback was only about format (SDPO.md, last probe table row).
HINDSIGHT_FEEDBACK = (
    "\n\n[Hindsight] The user's next message, written after seeing your reply, is shown "
    "below ahead of time so that your reply can already take it into account.\n"
    "Next user message: {feedback}\n"
)
HINDSIGHT_SOLUTION = "\n\n[Hindsight] A reply the user accepted for this request:\n\n{solution}\n"

TEMPLATES = ("reprompt", "hindsight")
TEACHER_MODES = ("ema", "trust_region", "base", "live")

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
        if feedback:
            text += HINDSIGHT_FEEDBACK.format(feedback=feedback)
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


@dataclass
class TokenBatch:
    """Student (x + y) and teacher (x' + y) token tensors with identical y columns.

    Prompts are left-padded and responses right-padded, so y occupies the last
    T columns of both (then padding); ``position_ids`` count real tokens only,
    so a padded row scores exactly like the same row alone.
    """

    student_ids: torch.Tensor
    student_attention: torch.Tensor
    student_positions: torch.Tensor
    teacher_ids: torch.Tensor
    teacher_attention: torch.Tensor
    teacher_positions: torch.Tensor
    response_ids: torch.Tensor   # [B, T], pad positions hold 0
    response_mask: torch.Tensor  # [B, T], 1 on real response tokens
    old_logprobs: torch.Tensor   # [B, T], NaN where the sampler gave none

    @property
    def response_length(self) -> int:
        return self.response_ids.shape[1]


def _prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def _truncate_text(tokenizer, text: str | None, max_tokens: int) -> str | None:
    """Keep the head and tail of an over-long feedback/solution text, marking the cut."""
    if not text:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    head, tail = max_tokens // 2, max_tokens - max_tokens // 2
    cut = len(ids) - head - tail
    return f"{tokenizer.decode(ids[:head])}\n[... {cut} tokens cut ...]\n{tokenizer.decode(ids[-tail:])}"


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _stack(prompts: list[list[int]], responses: list[list[int]], width_t: int, pad: int):
    width_p = max(len(p) for p in prompts)
    ids, attention = [], []
    for prompt, response in zip(prompts, responses):
        left, right = width_p - len(prompt), width_t - len(response)
        ids.append([pad] * left + prompt + response + [pad] * right)
        attention.append([0] * left + [1] * (len(prompt) + len(response)) + [0] * right)
    ids_t, attention_t = torch.tensor(ids), torch.tensor(attention)
    positions = (attention_t.cumsum(-1) - 1).clamp(min=0)
    return ids_t, attention_t, positions


def build_batch(tokenizer, examples: list["TrainingExample"], config: "SDPOConfig", *,
                teacher: bool = True) -> TokenBatch:
    """Tokenize examples: prompts with the chat template (+ generation prompt), then y's ids appended.

    With ``teacher=False`` the teacher tensors repeat the student's (for SFT).
    """
    if not examples:
        raise ValueError("build_batch needs at least one example")
    pad = _pad_id(tokenizer)
    responses = [list(e.response_ids) for e in examples]
    width_t = max(len(r) for r in responses)
    student_prompts = [_prompt_ids(tokenizer, e.messages) for e in examples]
    s_ids, s_att, s_pos = _stack(student_prompts, responses, width_t, pad)
    if teacher:
        teacher_prompts = [
            _prompt_ids(tokenizer, teacher_messages(
                e.messages,
                _truncate_text(tokenizer, e.feedback, config.max_reprompt_tokens),
                _truncate_text(tokenizer, e.solution, config.max_reprompt_tokens),
                e.template or config.template,
                feedback_with_solution=config.feedback_with_solution,
            ))
            for e in examples
        ]
        t_ids, t_att, t_pos = _stack(teacher_prompts, responses, width_t, pad)
    else:
        t_ids, t_att, t_pos = s_ids, s_att, s_pos
    response_ids = torch.tensor([r + [0] * (width_t - len(r)) for r in responses])
    response_mask = torch.tensor([[1.0] * len(r) + [0.0] * (width_t - len(r)) for r in responses])
    old = torch.full((len(examples), width_t), float("nan"))
    for row, example in enumerate(examples):
        if example.old_logprobs is not None:
            if len(example.old_logprobs) != len(example.response_ids):
                raise ValueError(f"example {row}: {len(example.old_logprobs)} old_logprobs for "
                                 f"{len(example.response_ids)} response tokens")
            old[row, : len(example.old_logprobs)] = torch.tensor(example.old_logprobs)
    return TokenBatch(s_ids, s_att, s_pos, t_ids, t_att, t_pos, response_ids, response_mask, old)


def response_logits(model, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                    response_length: int) -> torch.Tensor:
    """Logits ``[B, T, V]`` predicting the last T columns, computing the LM head only there.

    ``logits_to_keep`` skips the vocabulary projection over the prompt: the LM
    head is ~21 % of SmolLM2's per-token FLOPs (49152 × 576 of ~134 M
    multiply-adds), so a 300-token prompt before 128 response tokens saves ~15 %
    of each forward, for the student, the teacher and the SFT baseline alike.
    """
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), attention_mask=attention.to(device), position_ids=positions.to(device),
                logits_to_keep=response_length + 1, use_cache=False)
    return out.logits[:, :-1, :]


def lora_parameters(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.nn.Parameter]:
    """The adapter's LoRA parameters, keyed as PEFT's saved state dict keys them.

    Keys drop the adapter name (``...q_proj.lora_A.weight``), the layout of
    ``adapter_model.safetensors``, so saved EMA tensors are themselves a valid
    PEFT adapter.
    """
    marker = f".{adapter_name}."
    found = {}
    for name, param in model.named_parameters():
        if "lora_" in name and marker in name:
            found[name.replace(f".{adapter_name}", "", 1)] = param
    if not found:
        raise ValueError(
            f"no LoRA parameters for adapter {adapter_name!r} in this model; "
            "attach one first with continualcode.lora.attach_lora(model, preset_for(name))."
        )
    return found


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
      the gap is second order in A's drift (tests/test_sdpo.py measures it).
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
                with self._swapped_in(model):
                    return forward()
        finally:
            model.train(was_training)

    @contextmanager
    def _swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        params = lora_parameters(model, self.adapter_name)
        self._check_keys(params.keys())
        with torch.no_grad():
            saved = {k: p.detach().clone() for k, p in params.items()}
            for key, param in params.items():
                param.copy_(self.tensors[key])
        try:
            yield
        finally:
            with torch.no_grad():
                for key, param in params.items():
                    param.copy_(saved[key])

    def update(self, model: torch.nn.Module) -> None:
        """After an optimizer step: move the EMA teacher toward the student by rate r."""
        if self.mode != "ema":
            return
        params = lora_parameters(model, self.adapter_name)
        self._check_keys(params.keys())
        keys = sorted(self.tensors)
        with torch.no_grad():
            torch._foreach_lerp_([self.tensors[k] for k in keys], [params[k].detach().float() for k in keys],
                                 self.rate)

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
