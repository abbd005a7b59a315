"""The embedded engine: transformers + peft in this process (the CPU default).

Generation is a plain token loop over a KV cache so that text streams token by
token, stop strings are honoured, Ctrl-C (a cancel event) stops it between two
tokens, and the log-prob of every sampled token is kept (the trainer's
importance weights need the sampler's log-probs).

Hot-swap: the serving model carries one LoRA adapter whose tensors are
overwritten in place (`set_peft_model_state_dict`), so a new version never
reloads the base model. A lock held for a whole generation makes the swap
wait for the generation in flight, which therefore finishes on the old weights.
The new tensors are read from disk before the lock is taken, so the swap itself
is a copy of a few MB.
"""

from __future__ import annotations

import json
import threading
import time
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
from continualcode.engines.prompt import eos_ids, find_stop, render_prompt
from continualcode.models import ResolvedModel


class EmbeddedEngine:
    """Engine protocol on an in-process transformers model, with a hot-swappable LoRA."""

    def __init__(self, resolved: ResolvedModel, dtype: str = "auto", device: str | None = None):
        self.device = device or default_device()
        self.dtype = pick_dtype(dtype, self.device)
        self.resolved = resolved
        self.model_name = resolved.name
        self.model, self.tokenizer = load_causal_lm(resolved, self.dtype, self.device)
        self._eos = eos_ids(self.tokenizer, self.model)
        self._lock = threading.RLock()
        self._version: str | None = None
        self._adapter_config: dict | None = None

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
        prompt_ids = self.render(messages)
        started = time.perf_counter()
        generator = torch.Generator(device="cpu")
        if params.seed is not None:
            generator.manual_seed(params.seed)
        else:
            generator.seed()
        out_ids: list[int] = []
        logprobs: list[float] = []
        emitted = ""
        finish = "length"
        with self._lock, torch.inference_mode(), self._adapter_context():
            version = self._version
            input_ids = torch.tensor([prompt_ids], device=self.device)
            cache = None
            for _ in range(params.max_new_tokens):
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                output = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
                cache = output.cache
                logits = output.logits[0, -1].float()
                token = self._sample(logits, params, generator)
                logprobs.append(float(torch.log_softmax(logits, -1)[token]))
                out_ids.append(token)
                if token in self._eos:
                    finish = "stop"
                    break
                text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                stop_at = find_stop(text, params.stop)
                if stop_at is not None:
                    text = text[:stop_at]
                if on_text is not None and not text.endswith("\ufffd") and len(text) > len(emitted):
                    on_text(text[len(emitted):])
                    emitted = text
                if stop_at is not None:
                    finish = "stop"
                    break
                input_ids = torch.tensor([[token]], device=self.device)
        text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
        stop_at = find_stop(text, params.stop)
        if stop_at is not None:
            text = text[:stop_at]
        if on_text is not None and len(text) > len(emitted):
            on_text(text[len(emitted):])
        return Completion(
            text=text, token_ids=out_ids, logprobs=logprobs, finish_reason=finish,
            adapter_version=version, prompt_tokens=len(prompt_ids),
            seconds=time.perf_counter() - started,
        )

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
            return 0.0
        path = Path(path)
        try:
            config = json.loads((path / "adapter_config.json").read_text())
            tensors = load_file(str(path / "adapter_model.safetensors"))
        except (OSError, ValueError, SafetensorError) as exc:
            raise EngineError(f"adapter {version or path} cannot be read ({exc}); roll back to another version") from exc
        started = time.perf_counter()
        with self._lock:
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

    def exclusive(self):
        """Hold off generation and swaps (the credit view swaps teacher tensors in and out)."""
        return self._lock

    def close(self) -> None:
        pass

    # -- internals -------------------------------------------------------
    def _adapter_context(self):
        from contextlib import nullcontext

        if self._adapter_config is not None and self._version is None:
            return self.model.disable_adapter()
        return nullcontext()

    @staticmethod
    def _sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
        if params.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / params.temperature, -1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, -1) - sorted_probs < params.top_p
            sorted_probs = sorted_probs * keep
            choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=generator))
