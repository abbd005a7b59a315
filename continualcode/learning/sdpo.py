"""SDPO: the self-distillation loss and the one training step (arXiv 2601.20802).

The student reads x and the response y it sampled; the teacher (the same model,
see ``continualcode.learning.teacher``) reads x' = x with the feedback written into the
last user turn, then the identical y tokens. At every response position the
student is pulled toward the teacher's next-token distribution
(../shared/SDPO.md, "Loss"). ``sdpo_step`` is the only training step: the
background trainer, the benchmarks and the learning bench all call it.

Tensor convention: logits ``[B, T, V]`` where position t predicts
``response_ids[:, t]``; ``mask`` ``[B, T]`` is 1 where a token is trained on.
"""

from __future__ import annotations

import math
import time

import torch

from continualcode.learning.batch import (
    TokenBatch,
    build_batch,
    response_logits,
    run_student,
    teacher_forward,
)
from continualcode.learning.teacher import TeacherState, teacher_messages
from continualcode.learning.types import SUPPORTS, SDPOConfig, TrainingExample

__all__ = [
    "SDPOConfig", "TrainingExample", "TokenBatch", "TeacherState", "teacher_messages", "build_batch",
    "response_logits", "distillation_loss", "token_advantages", "group_advantages", "hybrid_loss",
    "make_optimizer", "replay_row_weights", "sdpo_step", "sft_step",
]


# ---------------------------------------------------------------------------- loss


def _support_ids(student: torch.Tensor, teacher: torch.Tensor, top_k: int,
                 support: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids to compare on, ``[B, T, n]``, and which of them repeat an earlier id (union only).

    ``student``: the student's top-K (the reference). ``union``: the student's
    top-K, then the teacher's top-K, an id both rank being counted once (the
    second copy is masked, so n stays 2K for every position).
    """
    k = min(top_k, student.shape[-1])
    ids = student.detach().topk(k, dim=-1).indices
    if support == "student":
        return ids, None
    teacher_ids = teacher.topk(k, dim=-1).indices
    repeated = (teacher_ids.unsqueeze(-1) == ids.unsqueeze(-2)).any(-1)
    return torch.cat([ids, teacher_ids], -1), torch.cat([torch.zeros_like(repeated), repeated], -1)


def _topk_support(logits: torch.Tensor, logz: torch.Tensor, ids: torch.Tensor, add_tail: bool,
                  repeated: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probs at the given ids (normalized over the full vocabulary), plus tail or renormalized.

    ``repeated`` entries stay in the tensor (finite) but count in no sum; ``_divergence`` skips them.
    """
    logp = logits.gather(-1, ids) - logz
    counted = logp if repeated is None else logp.masked_fill(repeated, float("-inf"))
    if add_tail:
        # log(1 − Σp) via expm1, clamped below 0 like the reference so the tail stays finite.
        log_sum = torch.logsumexp(counted, dim=-1, keepdim=True).clamp(max=-1e-7)
        return torch.cat([logp, torch.log(-torch.expm1(log_sum))], dim=-1)
    return logp - torch.logsumexp(counted, dim=-1, keepdim=True)


def _divergence(s: torch.Tensor, u: torch.Tensor, alpha: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token divergence over the last dim (SDPO.md: endpoints are KLs, between the generalized JSD);
    entries where ``valid`` is False count nothing."""
    if alpha == 0.0:
        terms = u.exp() * (u - s)
    elif alpha == 1.0:
        terms = s.exp() * (s - u)
    else:
        m = torch.logaddexp(s + math.log(1.0 - alpha), u + math.log(alpha))
        terms = (1.0 - alpha) * s.exp() * (s - m) + alpha * u.exp() * (u - m)
    return (terms if valid is None else torch.where(valid, terms, 0.0)).sum(-1)


def _token_logprobs(logits: torch.Tensor, logz: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
    return logits.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1) - logz.squeeze(-1)


def _importance_ratio(student_tok: torch.Tensor, old_logprobs: torch.Tensor | None, is_clip: float | None):
    if is_clip is None:
        return None
    if old_logprobs is None:
        raise ValueError("is_clip is set but old_logprobs is None: pass the sampler's log-probs or set is_clip=None")
    log_ratio = (student_tok.detach() - old_logprobs.to(student_tok.dtype)).clamp(-20.0, 20.0)
    return log_ratio.exp().clamp(max=is_clip)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    response_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    alpha: float = 0.5,
    top_k: int | None = 100,
    add_tail: bool = True,
    is_clip: float | None = None,
    old_logprobs: torch.Tensor | None = None,
    support: str = "student",
    row_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """The SDPO distillation loss, token-mean over ``mask`` (SDPO.md, "Loss").

    Teacher logits are detached. ``support`` picks the ids both distributions
    are compared on: ``student`` (the student's top-K, the reference),
    ``union`` (the student's and the teacher's top-K, each id once) or
    ``full`` (the vocabulary; also what ``top_k=None`` means). Why union:
    under the student's top-K a token only the teacher ranks high sits in the
    tail bucket, where no loss can single it out. The importance ratio
    exp(clamp(logp_now − logp_old, ±20)) clipped at ``is_clip`` multiplies
    each token's loss without a gradient. Rows whose mask is all zero count
    nothing. ``row_weights`` ``[B]`` replaces the token-mean by Σ_r w_r · Σ_t loss_rt
    (each token of row r weighs w_r; ``replay_row_weights`` makes them group
    means). Computation runs in at least float32. Returns (loss, stats):
    divergence (mean per-token, unweighted), advantage (mean log p_teacher(y)
    − log p_student(y)), tokens, and per row ``example_advantage``,
    ``example_loss``, ``example_divergence``, ``example_tokens`` (0 for empty rows).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} logits differ")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    student = student_logits.to(dtype)
    teacher = teacher_logits.detach().to(dtype)
    s_logz = torch.logsumexp(student, dim=-1, keepdim=True)
    t_logz = torch.logsumexp(teacher, dim=-1, keepdim=True)
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
    valid = None
    if top_k is None or support == "full":
        s, u = student - s_logz, teacher - t_logz
    else:
        ids, repeated = _support_ids(student, teacher, top_k, support)
        s = _topk_support(student, s_logz, ids, add_tail, repeated)
        u = _topk_support(teacher, t_logz, ids, add_tail, repeated)
        if repeated is not None:  # the tail entry always counts
            valid = ~(torch.cat([repeated, torch.zeros_like(repeated[..., :1])], -1) if add_tail else repeated)
    per_token = _divergence(s, u, alpha, valid)
    student_tok = _token_logprobs(student, s_logz, response_ids)
    advantage = _token_logprobs(teacher, t_logz, response_ids) - student_tok.detach()
    ratio = _importance_ratio(student_tok, old_logprobs, is_clip)
    weighted = per_token if ratio is None else per_token * ratio
    keep = mask.to(torch.bool)
    weights = keep.to(dtype)
    tokens = weights.sum()
    if row_weights is None:
        loss = torch.where(keep, weighted, 0.0).sum() / tokens.clamp(min=1.0)
    else:
        loss = (torch.where(keep, weighted, 0.0) * row_weights.to(weighted.device, dtype).unsqueeze(-1)).sum()
    divergence = torch.where(keep, per_token.detach(), 0.0)
    advantage = torch.where(keep, advantage, 0.0)
    row_tokens = weights.sum(-1).clamp(min=1.0)
    stats = {
        "divergence": float(divergence.sum() / tokens.clamp(min=1.0)),
        "advantage": float(advantage.sum() / tokens.clamp(min=1.0)),
        "tokens": int(tokens),
        "example_advantage": (advantage.sum(-1) / row_tokens).tolist(),
        "example_loss": (torch.where(keep, weighted.detach(), 0.0).sum(-1) / row_tokens).tolist(),
        "example_divergence": (divergence.sum(-1) / row_tokens).tolist(),
        "example_tokens": weights.sum(-1).long().tolist(),
    }
    if ratio is not None:
        stats["is_ratio"] = float(torch.where(keep, ratio, 0.0).sum() / tokens.clamp(min=1.0))
    return loss, stats


def token_advantages(student_logits: torch.Tensor, teacher_logits: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
    """Per-token advantage log p_teacher(y_t) − log p_student(y_t), ``[B, T]``, no gradient.

    The credit view colours tokens with it; the hybrid mode uses it as A_SDPO.
    """
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    with torch.no_grad():
        student = student_logits.detach().to(dtype)
        teacher = teacher_logits.detach().to(dtype)
        return (torch.log_softmax(teacher, -1).gather(-1, response_ids.unsqueeze(-1))
                - torch.log_softmax(student, -1).gather(-1, response_ids.unsqueeze(-1))).squeeze(-1)


def group_advantages(rewards: list[float | None], groups: list[object]) -> torch.Tensor:
    """GRPO advantages: (r − mean) / (std + 1e-6) within each group of the same prompt.

    A group of one, or a missing reward, gets 0 (no baseline to compare with).
    """
    out = torch.zeros(len(rewards), dtype=torch.float32)
    by_group: dict[object, list[int]] = {}
    for i, (reward, group) in enumerate(zip(rewards, groups)):
        if reward is not None:
            by_group.setdefault(group, []).append(i)
    for members in by_group.values():
        if len(members) < 2:
            continue
        values = torch.tensor([float(rewards[i]) for i in members])
        out[members] = (values - values.mean()) / (values.std(unbiased=False) + 1e-6)
    return out


def make_optimizer(model: torch.nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW over the trainable (LoRA) parameters, no weight decay (decay would pull A, not just ΔW, to 0)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; attach a LoRA adapter with continualcode.learning.lora.attach_lora")
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)


# ------------------------------------------------------------------------- steps


def _apply_gradients(model, optimizer, loss: torch.Tensor, max_grad_norm: float) -> tuple[float, bool]:
    """Backward, clip, step. A non-finite loss or gradient norm skips the update entirely."""
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return float("nan"), False
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    if not math.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return grad_norm, False
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, True


def _skipped(count: int, started: float, reason: str) -> dict:
    return {"loss": 0.0, "divergence": 0.0, "advantage": 0.0, "grad_norm": 0.0, "tokens": 0,
            "seconds": time.perf_counter() - started, "stepped": False, "skipped": reason,
            "example_advantage": [None] * count, "example_stats": [None] * count}


def _teacher_logits(model, batch: TokenBatch, examples: list[TrainingExample], teacher_state: TeacherState,
                    anchor: TeacherState | None) -> torch.Tensor:
    """Teacher logits for every row: the feedback teacher on x' + y, the anchor on replay rows' x + y."""
    replay = [i for i, e in enumerate(examples) if e.anchor]
    if not replay:
        return teacher_state.logits(model, teacher_forward(model, batch))
    if anchor is None:
        raise ValueError("replay (anchor) examples need the anchor teacher: pass anchor=TeacherState.frozen(model) "
                         "before the event's first step")
    taught = [i for i, e in enumerate(examples) if not e.anchor]
    parts = [(rows, state.logits(model, teacher_forward(model, batch, rows)))
             for rows, state in ((taught, teacher_state), (replay, anchor)) if rows]
    first = parts[0][1]
    logits = first.new_empty((len(examples), *first.shape[1:]))
    for rows, part in parts:
        logits[rows] = part
    return logits


def replay_row_weights(examples: list[TrainingExample], mask: torch.Tensor, weight: float) -> torch.Tensor | None:
    """Per-row loss weights that make the loss mean(feedback tokens) + weight · mean(replay tokens).

    A plain token-mean over a batch of one judged reply and four replay answers gives the feedback
    about a fifth of the gradient. (Measured on SmolLM2 with forward KL, the weighting changed little:
    held-out 0.31 → 0.33, general 0.92 → 0.88; docs/learning.md.) None (the plain token-mean) when the
    batch has no replay rows or only replay rows.
    """
    replay = torch.tensor([bool(e.anchor) for e in examples])
    if not replay.any() or replay.all():
        return None
    tokens = mask.to(torch.float64).sum(-1).cpu()
    taught, replayed = tokens[~replay].sum().clamp(min=1.0), tokens[replay].sum().clamp(min=1.0)
    return torch.where(replay, weight / replayed, 1.0 / taught)


def sdpo_step(model, tokenizer, optimizer, examples: list[TrainingExample], config: SDPOConfig,
              teacher_state: TeacherState, *, anchor: TeacherState | None = None,
              teacher_cache: dict | None = None, update_teacher: bool = True) -> dict:
    """One SDPO optimizer step on a batch of examples; returns its metrics.

    Order: teacher forward on x' + y (no_grad; must precede the student's
    forward, see TeacherState.logits), student forward on x + y, loss over the
    response tokens, backward, gradient clip, optimizer step, teacher update.
    Examples without signal are dropped before any forward (their
    ``example_advantage`` entry is None). Replay examples (``anchor=True``) are
    taught by ``anchor``, the weights before the event, on x unchanged.

    ``teacher_cache`` (a dict the caller keeps for one round of steps on the
    same examples) holds the teacher logits after the first step, so the
    teacher pass runs once per round; it is exact only while the teacher does
    not move, so the caller passes ``update_teacher=False`` and updates the EMA
    once at the round's end (``Learner.run_steps``). Metrics: loss,
    divergence, advantage, grad_norm, tokens, seconds, stepped,
    example_advantage, and ``example_stats`` (per example: loss, divergence,
    advantage, tokens; None when dropped).
    """
    started = time.perf_counter()
    active = [i for i, e in enumerate(examples) if e.has_signal(config)]
    if not active:
        return _skipped(len(examples), started, "no example has feedback, a solution or a reward")
    chosen = [examples[i] for i in active]
    batch = build_batch(tokenizer, chosen, config)
    key = tuple(id(e) for e in chosen)
    teacher_logits = None if teacher_cache is None else teacher_cache.get(key)
    if teacher_logits is None:
        teacher_logits = _teacher_logits(model, batch, chosen, teacher_state, anchor)
        if teacher_cache is not None:
            teacher_cache[key] = teacher_logits
    student_logits = run_student(model, batch, train=True)
    device = student_logits.device
    response_ids = batch.response_ids.to(device)
    mask = batch.response_mask.to(device)
    old, is_clip = None, config.is_clip
    given = batch.old_logprobs.to(device)
    if is_clip is not None and bool(torch.isnan(given).all()):
        is_clip = None  # no sampler log-probs: y came from these weights, every ratio is 1
    elif is_clip is not None:
        # Rows the sampler gave no log-probs for were sampled by these weights: ratio 1.
        detached = student_logits.detach().float()
        current = _token_logprobs(detached, torch.logsumexp(detached, -1, keepdim=True), response_ids)
        old = torch.where(torch.isnan(given), current, given)

    if config.hybrid_lambda > 0:  # a group = the same prompt x
        grpo = group_advantages([e.reward for e in chosen], [repr(e.messages) for e in chosen])
        loss, stats = hybrid_loss(student_logits, teacher_logits, response_ids, mask, grpo,
                                  lam=config.hybrid_lambda, is_clip=is_clip, old_logprobs=old)
    else:
        loss, stats = distillation_loss(student_logits, teacher_logits, response_ids, mask, alpha=config.alpha,
                                        top_k=config.top_k, add_tail=config.add_tail, is_clip=is_clip,
                                        old_logprobs=old, support=config.support,
                                        row_weights=replay_row_weights(chosen, mask, config.replay_weight))
    del teacher_logits
    grad_norm, stepped = _apply_gradients(model, optimizer, loss, config.max_grad_norm)
    if stepped and update_teacher:
        teacher_state.update(model)
    per_example: list[float | None] = [None] * len(examples)
    per_stats: list[dict | None] = [None] * len(examples)
    for row, index in enumerate(active):
        per_example[index] = stats["example_advantage"][row]
        per_stats[index] = {name: stats[f"example_{name}"][row] for name in ("loss", "divergence", "advantage", "tokens")}
    for name in ("loss", "divergence", "tokens"):
        stats.pop(f"example_{name}")
    metrics = {**stats, "loss": float(loss.detach()), "grad_norm": grad_norm, "stepped": stepped,
               "seconds": time.perf_counter() - started, "example_advantage": per_example, "example_stats": per_stats}
    if not stepped:
        metrics["skipped"] = "non-finite loss or gradient; weights unchanged"
    return metrics


def hybrid_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    response_ids: torch.Tensor,
    mask: torch.Tensor,
    grpo_advantages: torch.Tensor,
    *,
    lam: float,
    is_clip: float | None = None,
    old_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Policy-gradient loss −A_t·log p_student(y_t), token-mean, with A = λ·A_GRPO + (1−λ)·A_SDPO.

    SDPO.md, "Hybrid with scalar rewards": A_GRPO ``[B]`` is the group-normalized
    reward of each row (``group_advantages``), A_SDPO the per-token
    ``token_advantages``. The advantage carries no gradient. Stats as
    ``distillation_loss``; ``divergence`` here is the mean |A|.
    """
    student = student_logits.to(torch.promote_types(student_logits.dtype, torch.float32))
    student_tok = _token_logprobs(student, torch.logsumexp(student, -1, keepdim=True), response_ids)
    sdpo_adv = token_advantages(student_logits, teacher_logits, response_ids)
    advantage = lam * grpo_advantages.to(student.device, student.dtype).unsqueeze(-1) + (1 - lam) * sdpo_adv
    ratio = _importance_ratio(student_tok, old_logprobs, is_clip)
    per_token = -advantage * student_tok * (1.0 if ratio is None else ratio)
    keep = mask.to(torch.bool)
    tokens = keep.sum().clamp(min=1)
    loss = torch.where(keep, per_token, 0.0).sum() / tokens
    masked_adv = torch.where(keep, sdpo_adv, 0.0)
    row_tokens = keep.sum(-1).clamp(min=1)
    stats = {"divergence": float(torch.where(keep, advantage, 0.0).abs().sum() / tokens),
             "advantage": float(masked_adv.sum() / tokens), "tokens": int(keep.sum()),
             "example_advantage": (masked_adv.sum(-1) / row_tokens).tolist(),
             "example_loss": (torch.where(keep, per_token.detach(), 0.0).sum(-1) / row_tokens).tolist(),
             "example_divergence": (torch.where(keep, advantage, 0.0).abs().sum(-1) / row_tokens).tolist(),
             "example_tokens": keep.sum(-1).tolist()}
    return loss, stats


def sft_step(model, tokenizer, optimizer, examples: list[TrainingExample], config: SDPOConfig) -> dict:
    """One plain LoRA fine-tuning step: cross-entropy on each example's response_ids given its messages.

    Shares tokenization and the forward with ``sdpo_step`` so benchmarks compare like with like.
    """
    started = time.perf_counter()
    examples = [e for e in examples if e.response_ids]
    if not examples:
        return _skipped(0, started, "no example has response tokens")
    batch = build_batch(tokenizer, examples, config, teacher=False)
    logits = run_student(model, batch, train=True)
    mask = batch.response_mask.to(logits.device)
    nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), batch.response_ids.to(logits.device),
                                            reduction="none")
    tokens = mask.sum()
    loss = (nll * mask).sum() / tokens.clamp(min=1.0)
    grad_norm, stepped = _apply_gradients(model, optimizer, loss, config.max_grad_norm)
    return {"loss": float(loss.detach()), "grad_norm": grad_norm, "tokens": int(tokens), "stepped": stepped,
            "seconds": time.perf_counter() - started}
