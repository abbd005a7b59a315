"""Batched sampling from a training copy of the model (the gate, the learning bench, rollouts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continualcode.engines.prompt import eos_ids, render_prompt


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
    stops = eos_ids(tokenizer, model)
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
