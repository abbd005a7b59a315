"""The vLLM engine: an OpenAI-compatible vLLM server with runtime LoRA loading.

The prompt is rendered here with the model's own chat template and sent as
token ids to the completions endpoint, so the ids the trainer sees are exactly
the ids the server conditioned on; the server returns every sampled token id
(`return_token_ids`) with its log-prob (`logprobs=0`), and `score` reads
teacher-forced log-probs back with `prompt_logprobs=0`.

Hot-swap: each adapter version is loaded under a name that includes a hash of
its weights (`cc-v0007-1a2b3c4d`), requests switch to that name, and the
previous adapter is unloaded. A name is never reused for different weights:
vLLM keys its prefix cache by adapter name, so a same-name reload can serve
blocks computed with the old weights (vLLM logs a warning saying so).
Unloading only removes the name from the server's table; a generation in
flight on the previous adapter finishes on its weights.

Admin calls (health, load, unload, models) use the standard library so this
module needs nothing beyond the `openai` client.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from continualcode.adapters.presets import preset_for
from continualcode.engines.base import (
    Completion,
    EngineError,
    Message,
    SamplingParams,
    TextCallback,
)
from continualcode.engines.prompt import render_prompt
from continualcode.engines.vllm_server import FALLBACK_HINT, VLLMServer
from continualcode.models import ResolvedModel

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_name(path: Path, version: str | None) -> str:
    """`cc-<version>-<first 8 hex of the weights' sha256>`: equal names mean equal weights."""
    path = Path(path)
    for filename in ADAPTER_FILES:
        weights = path / filename
        if weights.is_file():
            break
    else:
        raise EngineError(f"adapter {version or path}: no {' or '.join(ADAPTER_FILES)} in {path}; "
                          "roll back to another version")
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", version or path.name).strip("-") or "adapter"
    return f"cc-{label}-{digest.hexdigest()[:8]}"


class VLLMEngine:
    """Engine protocol on a vLLM server (started here as a child, or already running)."""

    def __init__(self, resolved: ResolvedModel, url: str, server: VLLMServer | None = None,
                 request_timeout: float = 600.0):
        self.resolved = resolved
        self.model_name = resolved.name
        self.url = url.rstrip("/").removesuffix("/v1")
        self.server = server
        self._lock = threading.Lock()       # guards the two fields below
        self._swap_lock = threading.Lock()  # one load_adapter at a time (trainer vs /rollback)
        self._version: str | None = None
        self._adapter: str | None = None  # the served LoRA name; None = base model
        self.last_swap: dict[str, float] = {}
        base = self._base_model()
        self.served_model: str = base["id"]
        self.max_model_len: int = int(base.get("max_model_len") or 2048)
        from openai import (
            OpenAI,  # imported once the server answered: a dead URL fails fast
        )
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        self.client = OpenAI(base_url=self.url + "/v1", api_key="EMPTY", max_retries=0,
                             timeout=request_timeout)

    @classmethod
    def from_settings(cls, resolved: ResolvedModel, settings) -> "VLLMEngine":
        """Connect to `settings.vllm_url`, or start `settings.vllm_command serve` as a child."""
        if settings.vllm_url:
            return cls(resolved, settings.vllm_url)
        rank = max(16, preset_for(resolved.name).rank)
        server = VLLMServer.start(settings.vllm_command, resolved.path, resolved.name, rank)
        try:
            return cls(resolved, server.url, server=server)
        except BaseException:
            server.stop()
            raise

    # -- Engine protocol -------------------------------------------------
    @property
    def adapter_version(self) -> str | None:
        return self._version

    @property
    def adapter(self) -> str | None:
        """The served LoRA name requests go to (None = base model)."""
        return self._adapter

    def render(self, messages: list[Message]) -> list[int]:
        return render_prompt(self.tokenizer, messages)

    def generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        return self._complete(messages, params, 1, on_text, cancel)[0]

    def sample(
        self,
        messages: list[Message],
        params: SamplingParams,
        n: int,
        cancel: threading.Event | None = None,
    ) -> list[Completion]:
        """n completions from one request (`n=`): the server prefills once and samples the n
        together; with a seed, choice i uses seed + i (vLLM's parallel sampling)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        return self._complete(messages, params, n, None, cancel)

    def _complete(self, messages: list[Message], params: SamplingParams, n: int,
                  on_text: TextCallback | None, cancel: threading.Event | None) -> list[Completion]:
        """One streamed request for n choices; the stream is read per choice index."""
        prompt_ids = self.render(messages)
        prefix_ids = list(self.tokenizer(params.prefix, add_special_tokens=False)["input_ids"]) if params.prefix else []
        with self._lock:
            adapter, version = (None, None) if params.base else (self._adapter, self._version)
        room = self.max_model_len - len(prompt_ids) - len(prefix_ids)
        if room < 1:
            raise EngineError(f"the prompt has {len(prompt_ids)} tokens, more than the server's context "
                              f"({self.max_model_len}); start a new conversation or clear it")
        started = time.perf_counter()
        # the given start leads every choice; the server scores only what it samples (NaN: ratio 1 in training)
        texts = [params.prefix] * n
        ids, logprobs = [list(prefix_ids) for _ in range(n)], [[float("nan")] * len(prefix_ids) for _ in range(n)]
        finish: list[str | None] = [None] * n
        stream = self._call(
            self.client.completions.create,
            model=adapter or self.served_model, prompt=prompt_ids + prefix_ids, n=n,
            max_tokens=min(params.max_new_tokens, room), temperature=params.temperature,
            top_p=params.top_p, seed=params.seed, stop=list(params.stop) or None,
            logprobs=0, stream=True,
            extra_body={"return_token_ids": True, "return_tokens_as_token_ids": True,
                        "include_stop_str_in_output": True, "skip_special_tokens": True},
        )
        try:
            for chunk in self._guard(stream):
                if cancel is not None and cancel.is_set():
                    finish = [reason or "cancelled" for reason in finish]
                    break
                for choice in chunk.choices:
                    index = choice.index
                    new_ids, new_logprobs = _chunk_tokens(choice)
                    ids[index] += new_ids
                    logprobs[index] += new_logprobs
                    if choice.text:
                        texts[index] += choice.text
                        if on_text is not None:
                            on_text(choice.text)
                    if choice.finish_reason:
                        finish[index] = "stop" if choice.finish_reason == "stop" else "length"
        finally:
            stream.close()  # on cancel this drops the connection, which aborts the request
        seconds = time.perf_counter() - started
        return [Completion(
            text=texts[i], token_ids=ids[i], logprobs=logprobs[i], finish_reason=finish[i] or "length",
            adapter_version=version, prompt_tokens=len(prompt_ids), seconds=seconds,
            extra={"adapter": adapter},
        ) for i in range(n)]

    def score(self, messages: list[Message], response_ids: list[int]) -> list[float]:
        """Teacher-forced log-probs from the server's prompt log-probs over prompt + response."""
        response_ids = [int(t) for t in response_ids]
        if not response_ids:
            return []
        prompt_ids = self.render(messages)
        ids = prompt_ids + response_ids
        if len(ids) >= self.max_model_len:
            raise EngineError(f"prompt + response are {len(ids)} tokens, more than the server's context "
                              f"({self.max_model_len}) minus one")
        with self._lock:
            adapter = self._adapter
        result = self._call(self.client.completions.create, model=adapter or self.served_model,
                            prompt=ids, max_tokens=1, temperature=0.0,
                            extra_body={"prompt_logprobs": 0})
        table = (result.choices[0].model_extra or {}).get("prompt_logprobs")
        if not table or len(table) != len(ids):
            raise EngineError(f"vLLM server at {self.url} returned no prompt log-probs; it needs vLLM >= 0.6")
        scores = []
        for token, entry in zip(response_ids, table[len(prompt_ids):]):
            item = entry.get(str(token))
            if item is None:
                raise EngineError(f"vLLM server omitted the log-prob of token {token}")
            scores.append(float(item["logprob"] if isinstance(item, dict) else item))
        return scores

    def load_adapter(self, path: Path | None, version: str | None) -> float:
        """Load `path` under a fresh name, route requests to it, unload the previous one, and
        warm it with a one-token request (the first request on a new adapter pays for moving
        it into a LoRA slot: better here, in the trainer's thread, than in the user's next
        answer). Returns seconds; swaps are serialized, generations are not blocked."""
        with self._swap_lock:
            return self._swap(path, version)

    def _swap(self, path: Path | None, version: str | None) -> float:
        started = time.perf_counter()
        name = adapter_name(path, version) if path is not None else None
        with self._lock:
            previous = self._adapter
            if name == previous:
                self._version = version
                return 0.0
        if name is not None:
            status, body = self._admin("POST", "/v1/load_lora_adapter",
                                       {"lora_name": name, "lora_path": str(Path(path).resolve())})
            if status == 404 and '"detail"' in body:  # FastAPI's answer for a route that is not there
                raise EngineError(f"vLLM server at {self.url} does not allow runtime LoRA loading; start it "
                                  f"with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, {FALLBACK_HINT}")
            if status != 200 and not (status == 400 and "already been loaded" in body):
                raise EngineError(f"vLLM could not load adapter {version} from {path} (HTTP {status}: "
                                  f"{_error_message(body)}); roll back to another version, {FALLBACK_HINT}")
        loaded = time.perf_counter()
        with self._lock:
            self._adapter, self._version = name, version
        if previous is not None:
            self._admin("POST", "/v1/unload_lora_adapter", {"lora_name": previous})  # 404: already gone
        unloaded = time.perf_counter()
        if name is not None:
            self._call(self.client.completions.create, model=name, prompt=[0], max_tokens=1, temperature=0.0)
        done = time.perf_counter()
        self.last_swap = {"load_s": loaded - started, "unload_s": unloaded - loaded, "warm_s": done - unloaded}
        return done - started

    def served_adapters(self) -> list[str]:
        """LoRA names the server currently serves (GET /v1/models, entries with a parent)."""
        return [m["id"] for m in self._models() if m.get("parent")]

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()

    # -- internals -------------------------------------------------------
    def _models(self) -> list[dict]:
        status, body = self._admin("GET", "/v1/models")
        if status != 200:
            raise EngineError(f"vLLM server at {self.url} answered GET /v1/models with HTTP {status}; {FALLBACK_HINT}")
        return json.loads(body)["data"]

    def _base_model(self) -> dict:
        """The served base model: the entry named like the resolved model, else the first without a parent."""
        bases = [m for m in self._models() if not m.get("parent")]
        if not bases:
            raise EngineError(f"vLLM server at {self.url} serves no base model")
        for model in bases:
            if model["id"] == self.resolved.name or model.get("root") == self.resolved.path:
                return model
        return bases[0]

    def _admin(self, method: str, route: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + route, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from exc

    def _call(self, function, **kwargs):
        import openai

        try:
            return function(**kwargs)
        except openai.APIConnectionError as exc:
            raise self._unreachable(exc) from exc
        except openai.APIStatusError as exc:
            raise EngineError(f"vLLM server at {self.url} refused the request (HTTP {exc.status_code}: "
                              f"{_error_message(exc.response.text)}); {FALLBACK_HINT}") from exc

    def _guard(self, stream):
        """Iterate a response stream, turning a dropped connection into EngineError."""
        import openai

        try:
            yield from stream
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> EngineError:
        detail = f"vLLM server at {self.url} is unreachable ({type(exc).__name__}: {exc})"
        if self.server is not None and not self.server.alive():
            detail = (f"the vLLM server this session started has exited (code {self.server.process.returncode}); "
                      f"last lines of {self.server.log_path}:\n{self.server.log_tail(15)}\n")
        return EngineError(f"{detail}; restart it, or continue with `--engine embedded`")


def _chunk_tokens(choice) -> tuple[list[int], list[float]]:
    """Token ids and their log-probs from one streamed choice."""
    extra = choice.model_extra or {}
    logprobs = choice.logprobs
    values = [float(v) for v in (logprobs.token_logprobs or [])] if logprobs else []
    ids = extra.get("token_ids")
    if ids is None and logprobs is not None:  # older servers: tokens read "token_id:123"
        ids = [int(t.split(":", 1)[1]) for t in logprobs.tokens or []]
    ids = [int(t) for t in ids or []]
    if len(ids) != len(values):
        raise EngineError(f"vLLM returned {len(ids)} token ids but {len(values)} log-probs in one chunk")
    return ids, values


def _error_message(body: str) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:300]
