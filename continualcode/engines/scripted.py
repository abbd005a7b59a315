"""A deterministic engine that replays fixed completions.

Shipped in the package (like mini-swe-agent's DeterministicModel) so that agent
loop tests, and users checking their own configurations, run without a model:
`--engine scripted --script replies.json`, where the file is a JSON list of
assistant replies. Token ids are the UTF-8 bytes of the reply, so scoring and
training code paths still see consistent ids.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from continualcode.engines.base import (
    Completion,
    EngineError,
    Message,
    SamplingParams,
    TextCallback,
)
from continualcode.engines.prompt import cut_at_stop


class ScriptedEngine:
    """Replays `replies` in order; raises when the script runs out."""

    model_name = "scripted"

    def __init__(self, replies: list[str], *, loop: bool = False):
        self.replies = list(replies)
        self.loop = loop
        self.calls: list[list[Message]] = []
        self.params: list[SamplingParams] = []  # the sampling parameters of each call, in order
        self._next = 0
        self._version: str | None = None
        self.loaded: list[tuple[str | None, str | None]] = []

    @classmethod
    def from_file(cls, path: str | Path) -> "ScriptedEngine":
        try:
            replies = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read script {path}: {exc}") from exc
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise EngineError(f"script {path} must be a JSON list of strings (assistant replies)")
        return cls(replies)

    @property
    def adapter_version(self) -> str | None:
        return self._version

    def generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        reply = self._next_reply(messages, params)
        if on_text is not None:
            for piece in _chunks(reply):
                if cancel is not None and cancel.is_set():
                    break
                on_text(piece)
        return self._completion(reply, messages, params)

    def sample(
        self,
        messages: list[Message],
        params: SamplingParams,
        n: int,
        cancel: threading.Event | None = None,
    ) -> list[Completion]:
        """The next n replies of the script, in order (one recorded call per reply)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        if not self.loop and len(self.replies) - self._next < n:
            raise EngineError(f"the scripted engine has {len(self.replies) - self._next} replies left, not {n}")
        return [self._completion(self._next_reply(messages, params), messages, params) for _ in range(n)]

    def score(self, messages: list[Message], response_ids: list[int]) -> list[float]:
        return [0.0] * len(response_ids)

    def load_adapter(self, path: Path | None, version: str | None) -> float:
        self._version = version
        self.loaded.append((str(path) if path else None, version))
        return 0.0

    def close(self) -> None:
        pass

    def _next_reply(self, messages: list[Message], params: SamplingParams) -> str:
        if self._next >= len(self.replies):
            if not self.loop or not self.replies:
                raise EngineError("the scripted engine has no replies left")
            self._next = 0
        reply = self.replies[self._next]
        if params.prefix and not reply.startswith(params.prefix):
            reply = params.prefix + reply  # the reply's given start, as the other engines feed it
        reply, _ = cut_at_stop(reply, params.stop)  # the stop rule every engine obeys
        self._next += 1
        self.calls.append([dict(m) for m in messages])
        self.params.append(params)
        return reply

    def _completion(self, reply: str, messages: list[Message], params: SamplingParams) -> Completion:
        ids = list(reply.encode())
        return Completion(
            text=reply, token_ids=ids, logprobs=[0.0] * len(ids), finish_reason="stop",
            adapter_version=None if params.base else self._version,
            prompt_tokens=sum(len(m["content"]) for m in messages),
        )


def _chunks(text: str, size: int = 8):
    for start in range(0, len(text), size):
        yield text[start : start + size]
