"""The embedded engine: transformers + peft in this process (the CPU default).

Generation is a plain token loop over a KV cache so that text streams token by
token, stop strings are honoured, Ctrl-C (a cancel event) stops it between two
tokens, and the log-prob of every sampled token is kept (the trainer's
importance weights need the sampler's log-probs).

Prefix cache: the agent's prompt grows by appending (system prompt, request,
reply, tool result, ...), so the engine keeps the KV cache of the last sequence
it processed with its token ids; the next call crops it to the longest common
prefix with the new prompt and feeds only the rest. A turn then pays for its
new tokens, not for the whole conversation again (docs/engine.md, "Prefix
cache and batched candidates"). `sample` prefills once and decodes n
candidates as one batch from that cache.

Hot-swap: the serving model carries one LoRA adapter whose tensors are
overwritten in place (`set_peft_model_state_dict`), so a new version never
reloads the base model. A lock held for a whole generation makes the swap
wait for the generation in flight, which therefore finishes on the old weights.
The new tensors are read from disk before the lock is taken, so the swap itself
is a copy of a few MB. A swap drops the prefix cache (its keys and values were
computed by the old weights).
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from continualcode.engines.base import (
    Completion,
    EngineError,
    Message,
    SamplingParams,
    TextCallback,
)
from continualcode.engines.loading import default_device, load_causal_lm, pick_dtype
from continualcode.engines.prompt import cut_at_stop, eos_ids, find_stop, render_prompt
from continualcode.models import ResolvedModel

MIN_REUSED_TOKENS = 16
"""A cached prefix shorter than this is dropped rather than cropped: it saves almost nothing."""


@dataclass
class _Prefix:
    """The KV cache of one sequence: `cache` holds the keys and values of exactly `ids`."""

    ids: list[int]
    cache: object  # transformers DynamicCache, batch size 1
    key: tuple     # (weights epoch, dtype, device) it was computed under


@dataclass
class _Row:
    """One sampled stream of a (batched) decode."""

    generator: torch.Generator
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None
    emitted: str = ""


class EmbeddedEngine:
    """Engine protocol on an in-process transformers model, with a hot-swappable LoRA."""

    def __init__(self, resolved: ResolvedModel, dtype: str = "auto", device: str | None = None,
                 prefix_cache: bool = True, max_cached_tokens: int | None = None):
        self.device = device or default_device()
        self.dtype = pick_dtype(dtype, self.device)
        self.resolved = resolved
        self.model_name = resolved.name
        self.model, self.tokenizer = load_causal_lm(resolved, self.dtype, self.device)
        self._eos = eos_ids(self.tokenizer, self.model)
        self._lock = threading.RLock()
        self._version: str | None = None
        self._adapter_config: dict | None = None
        self.prefix_cache = prefix_cache
        self.max_cached_tokens = max_cached_tokens or int(
            getattr(self.model.config, "max_position_embeddings", None) or 8192)
        self._prefix: _Prefix | None = None
        self._weights_epoch = 0  # bumped whenever the serving weights may have changed

    # -- Engine protocol -------------------------------------------------
    @property
    def adapter_version(self) -> str | None:
        return self._version

    def render(self, messages: list[Message]) -> list[int]:
        return render_prompt(self.tokenizer, messages)

    def generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        return self._decode(messages, params, 1, on_text, cancel)[0]

    def sample(
        self,
        messages: list[Message],
        params: SamplingParams,
        n: int,
        cancel: threading.Event | None = None,
    ) -> list[Completion]:
        """n completions of one prompt: one prefill, then the n streams decoded as one batch."""
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        return self._decode(messages, params, n, None, cancel)

    def score(self, messages: list[Message], response_ids: list[int]) -> list[float]:
        prompt_ids = self.render(messages)
        ids = torch.tensor([prompt_ids + list(response_ids)], device=self.device)
        with self._lock, torch.inference_mode(), self._adapter_context():
            logits = self.model(input_ids=ids).logits[0].float()
        start = len(prompt_ids)
        logp = torch.log_softmax(logits[start - 1 : ids.shape[1] - 1], -1)
        target = ids[0, start:]
        return logp.gather(-1, target[:, None])[:, 0].tolist()

    def load_adapter(self, path: Path | None, version: str | None) -> float:
        """Swap the serving LoRA weights in place; returns the seconds the swap took."""
        from peft import LoraConfig, get_peft_model
        from peft.utils import set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if path is None:
            with self._lock:
                self._version = None
                self.clear_prefix_cache()
            return 0.0
        path = Path(path)
        try:
            config = json.loads((path / "adapter_config.json").read_text())
            tensors = load_file(str(path / "adapter_model.safetensors"))
        except (OSError, ValueError, SafetensorError) as exc:
            raise EngineError(f"adapter {version or path} cannot be read ({exc}); roll back to another version") from exc
        started = time.perf_counter()
        with self._lock:
            self.clear_prefix_cache()
            key = {k: config.get(k) for k in ("r", "lora_alpha", "target_modules")}
            if self._adapter_config != key:
                if self._adapter_config is not None:
                    self.model = self.model.unload()
                lora = LoraConfig.from_pretrained(str(path))
                lora.inference_mode = True
                self.model = get_peft_model(self.model, lora)
                self.model.eval()
                self._adapter_config = key
            result = set_peft_model_state_dict(self.model, tensors)
            unexpected = getattr(result, "unexpected_keys", None) or []
            if unexpected:
                raise EngineError(f"adapter {version}: {len(unexpected)} tensors do not fit this model (e.g. {unexpected[0]})")
            self._version = version
        return time.perf_counter() - started

    @contextmanager
    def exclusive(self):
        """Hold off generation and swaps (the credit view swaps teacher tensors in and out).

        Whoever holds it may change the weights, so the prefix cache is dropped on the way out.
        """
        with self._lock:
            try:
                yield
            finally:
                self.clear_prefix_cache()

    def clear_prefix_cache(self) -> None:
        """Forget the cached prefix: the next call prefills its whole prompt. Called whenever
        the weights may have changed; a cache taken by a generation in flight is not stored back."""
        with self._lock:
            self._prefix = None
            self._weights_epoch += 1

    def close(self) -> None:
        self.clear_prefix_cache()

    # -- decoding --------------------------------------------------------
    def _decode(self, messages: list[Message], params: SamplingParams, n: int,
                on_text: TextCallback | None, cancel: threading.Event | None) -> list[Completion]:
        """Sample n rows from one prefill, decoded as one batch. A finished row leaves the
        batch (its cache row is dropped), so every row in it has the same length and no
        attention mask is needed; each row has its own generator (seed + row), so a row's
        tokens do not depend on when the others stop."""
        started = time.perf_counter()
        prompt_ids = self.render(messages)
        prefix_ids = list(self.tokenizer(params.prefix, add_special_tokens=False)["input_ids"]) if params.prefix else []
        rows = [_Row(self._generator(params.seed, index)) for index in range(n)]
        first_token_s, reused = None, 0
        with self._lock, torch.inference_mode(), self._adapter_context(params.base):
            version = None if params.base else self._version
            key = self._cache_key() + (version is None,)
            cache, live = None, rows  # live: the rows in the batch, in the cache's batch order
            for _ in range(params.max_new_tokens):
                if cancel is not None and cancel.is_set():
                    for row in live:
                        row.finish = row.finish or "cancelled"
                    break
                if cache is None:
                    cache, logits, reused = self._prefill(prompt_ids + prefix_ids, key, scored=len(prefix_ids))
                    if prefix_ids:  # the reply's given start: its tokens and their log-probs lead every row
                        given = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(prefix_ids)[:, None])
                        for row in rows:
                            row.ids, row.logprobs = list(prefix_ids), given[:, 0].tolist()
                        logits = logits[-1:]
                    if n > 1:
                        cache.batch_repeat_interleave(n)
                        logits = logits.expand(n, -1)
                else:
                    running = [index for index, row in enumerate(live) if row.finish is None]
                    if len(running) < len(live):
                        cache.batch_select_indices(torch.tensor(running, device=self.device))
                        live = [live[index] for index in running]
                    tokens = torch.tensor([[row.ids[-1]] for row in live], device=self.device)
                    output = self.model(input_ids=tokens, cache=cache, use_cache=True, logits_to_keep=1)
                    cache, logits = output.cache, output.logits[:, -1].float()
                tokens = self._sample(logits, params, [row.generator for row in live])
                logprobs = torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0].tolist()
                first_token_s = first_token_s or time.perf_counter() - started
                for row, token, logprob in zip(live, tokens.tolist(), logprobs):
                    self._advance(row, token, logprob, params, on_text)
                if all(row.finish is not None for row in live):
                    break
            if cache is not None:  # every live row's cache holds the prompt and all but its newest token
                self._keep_prefix(cache, prompt_ids + live[0].ids[:-1], len(live), key)
        seconds = time.perf_counter() - started
        completions = []
        for row in rows:
            text, _ = cut_at_stop(self.tokenizer.decode(row.ids, skip_special_tokens=True), params.stop)
            if on_text is not None and len(text) > len(row.emitted):
                on_text(text[len(row.emitted):])
            completions.append(Completion(
                text=text, token_ids=row.ids, logprobs=row.logprobs, finish_reason=row.finish or "length",
                adapter_version=version, prompt_tokens=len(prompt_ids), seconds=seconds,
                extra={"first_token_s": first_token_s, "cached_prompt_tokens": reused},
            ))
        return completions

    def _generator(self, seed: int | None, row: int) -> torch.Generator:
        """Row `row`'s generator: seeded with seed + row (as vLLM seeds its n choices), else random."""
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed + row)
        return generator

    def _advance(self, row: _Row, token: int, logprob: float, params: SamplingParams,
                 on_text: TextCallback | None) -> None:
        """Append one sampled token to a row; end it at eos or a stop string; stream its new text."""
        row.ids.append(token)
        row.logprobs.append(logprob)
        if token in self._eos:
            row.finish = "stop"
            return
        if not params.stop and on_text is None:
            return
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        stop_at = find_stop(text, params.stop)
        if stop_at is not None:
            text = text[:stop_at]
            row.finish = "stop"
        if on_text is not None and not text.endswith("\ufffd") and len(text) > len(row.emitted):
            on_text(text[len(row.emitted):])
            row.emitted = text

    # -- prefix cache (all under self._lock) ------------------------------
    def _prefill(self, prompt_ids: list[int], key: tuple, scored: int = 0):
        """Run the prompt through the model, reusing the cached prefix it shares with the last
        sequence. Returns (cache, logits of the last `scored` + 1 prompt tokens [scored + 1, vocab],
        tokens reused)."""
        prefix, self._prefix = self._prefix, None  # taken: a failed forward leaves no half-updated cache
        cache, reused = None, 0
        if prefix is not None and self.prefix_cache and prefix.key == key:
            common = _common_length(prefix.ids, prompt_ids)
            reused = min(common, len(prompt_ids) - 1 - scored)  # the tokens whose logits are wanted are fed
            if reused >= MIN_REUSED_TOKENS and (reused == len(prefix.ids) or prefix.cache.is_croppable):
                prefix.cache.crop(reused - len(prefix.ids))  # a negative count: tokens removed from the end
                cache = prefix.cache
            else:
                reused = 0
        del prefix  # a dropped cache is freed before the new one is built
        output = self.model(input_ids=torch.tensor([prompt_ids[reused:]], device=self.device),
                            cache=cache, use_cache=True, logits_to_keep=scored + 1)
        return output.cache, output.logits[0].float(), reused

    def _keep_prefix(self, cache, ids: list[int], rows: int, key: tuple) -> None:
        """Keep the first of the cache's `rows` rows, which holds `ids`, for the next call (unless
        off or too long). `key` is the one read before the prefill: a swap from a callback makes it stale."""
        if not self.prefix_cache or len(ids) > self.max_cached_tokens:
            return
        if rows > 1:
            cache.batch_select_indices(torch.tensor([0], device=self.device))
        if cache.get_seq_length() != len(ids):
            return  # never keep a cache that does not hold exactly `ids`
        self._prefix = _Prefix(ids=list(ids), cache=cache, key=key)

    def _cache_key(self) -> tuple:
        parameter = next(self.model.parameters())
        return (self._weights_epoch, parameter.dtype, parameter.device)

    # -- internals -------------------------------------------------------
    def _adapter_context(self, base: bool = False):
        from contextlib import nullcontext

        if self._adapter_config is not None and (base or self._version is None):
            return self.model.disable_adapter()
        return nullcontext()

    @staticmethod
    def _sample(logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator]) -> torch.Tensor:
        """One token per row of `logits` [rows, vocab], row i drawn with generators[i]:
        greedy at temperature 0, else nucleus sampling."""
        if params.temperature <= 0:
            return torch.argmax(logits, -1)
        probs = torch.softmax(logits / params.temperature, -1)
        order = None
        if params.top_p < 1.0:
            probs, order = torch.sort(probs, -1, descending=True)
            probs = probs * (torch.cumsum(probs, -1) - probs < params.top_p)
            probs = probs / probs.sum(-1, keepdim=True)
        choice = torch.stack([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generators)])
        return (choice if order is None else order.gather(-1, choice))[:, 0]


def _common_length(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    limit = min(len(a), len(b))
    for index in range(limit):
        if a[index] != b[index]:
            return index
    return limit
