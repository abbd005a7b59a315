"""The Engine role: what the agent, the trainer and the credit view need from a model server.

Implementations: `EmbeddedEngine` (transformers + peft in this process, the CPU
default), `ScriptedEngine` (replays fixed completions, for tests and for users
testing their own configurations) and the vLLM engine (an OpenAI-compatible
server with runtime LoRA loading). Mirrors mini-swe-agent's small Protocols.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

Message = dict[str, str]
"""An OpenAI-style chat message: {"role": "system"|"user"|"assistant", "content": "..."}."""


class EngineError(RuntimeError):
    """The engine cannot serve (dead server, bad adapter); the message says what to do."""


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 512
    temperature: float = 0.0          # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()        # stop strings; the stop string stays in the text
    seed: int | None = None
    base: bool = False
    """Sample from the base weights even while an adapter is served (the repair flow's hedged rounds);
    the completions then carry adapter_version None."""
    prefix: str = ""
    """Text the reply starts with (the engine feeds it, then samples the rest). It is part of the
    completion's text and token ids; its log-probs are scored where the engine can, NaN where not."""


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    logprobs: list[float]             # log p(token) under the weights that sampled it
    finish_reason: str                # "stop" | "length" | "cancelled"
    adapter_version: str | None       # None = base weights
    prompt_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


TextCallback = Callable[[str], None]


@runtime_checkable
class Engine(Protocol):
    model_name: str

    @property
    def adapter_version(self) -> str | None: ...

    def generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion: ...

    def sample(
        self,
        messages: list[Message],
        params: SamplingParams,
        n: int,
        cancel: threading.Event | None = None,
    ) -> list[Completion]:
        """n completions of one prompt (candidates), each cut at the stop strings like `generate`.

        Sampled together where the engine can (one prefill and one batched decode,
        or one request with `n`); with `params.seed` the list is reproducible.
        """
        ...

    def score(self, messages: list[Message], response_ids: list[int]) -> list[float]:
        """log p(y_t | x, y_<t) for each response token under the serving weights."""
        ...

    def load_adapter(self, path: Path | None, version: str | None) -> float:
        """Make `path` (a PEFT adapter dir) the serving adapter; None = base. Returns seconds."""
        ...

    def close(self) -> None: ...
