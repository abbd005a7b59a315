"""Student and teacher token tensors for a batch of examples, and the forward that scores y.

x + y and x' + y become tensors whose y columns hold identical ids (the
prompts are rendered by ``continualcode.engines.prompt.render_prompt``, the
renderer sampling used, so the sampler's log-probs line up with these ids);
``response_logits`` runs a forward that computes logits only over y.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continualcode.engines.prompt import render_prompt
from continualcode.learning.teacher import teacher_messages
from continualcode.learning.types import SDPOConfig, TrainingExample


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

    def teacher_rows(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher tensors (ids, attention, positions) of some rows, without the left padding
        those rows do not need (a step's rows can have two teachers: feedback and anchor)."""
        attention = self.teacher_attention[rows]
        start = int((attention.cumsum(-1) == 0).sum(-1).min())
        return self.teacher_ids[rows, start:], attention[:, start:], self.teacher_positions[rows, start:]


def truncate_text(tokenizer, text: str | None, max_tokens: int) -> str | None:
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


def build_batch(tokenizer, examples: list[TrainingExample], config: SDPOConfig, *,
                teacher: bool = True) -> TokenBatch:
    """Tokenize examples: prompts with the chat template (+ generation prompt), then y's ids appended.

    With ``teacher=False`` the teacher tensors repeat the student's (for SFT).
    An ``anchor`` (replay) example's teacher reads x unchanged.
    """
    if not examples:
        raise ValueError("build_batch needs at least one example")
    pad = _pad_id(tokenizer)
    responses = [list(e.response_ids) for e in examples]
    width_t = max(len(r) for r in responses)
    student_prompts = [render_prompt(tokenizer, e.messages) for e in examples]
    s_ids, s_att, s_pos = _stack(student_prompts, responses, width_t, pad)
    if teacher:
        teacher_prompts = [
            prompt if e.anchor else render_prompt(tokenizer, teacher_messages(
                e.messages,
                truncate_text(tokenizer, e.feedback, config.max_reprompt_tokens),
                truncate_text(tokenizer, e.solution, config.max_reprompt_tokens),
                e.template or config.template,
                feedback_with_solution=config.feedback_with_solution,
            ))
            for e, prompt in zip(examples, student_prompts)
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


def run_student(model, batch: TokenBatch, *, train: bool) -> torch.Tensor:
    """The student's logits over y (x + y): in train mode with a graph for a step, or in eval
    mode without one for scoring; the model's mode is restored afterwards."""
    was_training = model.training
    model.train(train)
    try:
        with torch.enable_grad() if train else torch.no_grad():
            return response_logits(model, batch.student_ids, batch.student_attention, batch.student_positions,
                                   batch.response_length)
    finally:
        model.train(was_training)


def teacher_forward(model, batch: TokenBatch, rows: list[int] | None = None):
    """A closure running the forward over x' + y (of ``rows``, default all), for ``TeacherState.logits``."""
    tensors = (batch.teacher_ids, batch.teacher_attention, batch.teacher_positions) if rows is None \
        else batch.teacher_rows(rows)
    return lambda: response_logits(model, *tensors, batch.response_length)
