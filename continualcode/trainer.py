"""The background SDPO trainer: pending examples → sdpo_step → a new adapter version → live.

One daemon thread owns a training copy of the model (base weights + the
trainable LoRA + the EMA teacher tensors), separate from the serving engine's,
so generation never waits on a backward pass. For each claimed batch it runs
`steps_per_feedback` SDPO steps, rolls them back if the loss is not finite or
the divergence exceeds `divergence_limit`, publishes the adapter as a new
version (atomic, see adapters.py), optionally scores it with the promotion gate,
and hot-swaps it into the engine. A failing batch is marked failed with its
error (shown by /status) and the thread goes on.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from .adapters import AdapterRegistry
from .models import ResolvedModel
from .sdpo import SDPOConfig, TeacherState, TrainingExample, make_optimizer, sdpo_step
from .store import Store

GateFn = Callable[["Trainer", str], dict]
"""(trainer, candidate version) -> {"decision": "promoted"|"rejected", "reason": str, "scores": {...}}"""


@dataclass
class TrainerStatus:
    running: bool
    queue: int
    live_version: str | None
    last_metrics: dict | None
    last_error: str | None
    steps_done: int
    recent_losses: list[float] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        store: Store,
        registry: AdapterRegistry,
        resolved: ResolvedModel,
        *,
        engine=None,
        config: SDPOConfig | None = None,
        preset=None,
        batch_size: int = 1,
        steps_per_feedback: int | None = None,
        divergence_limit: float = 5.0,
        gate: GateFn | None = None,
        dtype: str = "auto",
        poll_seconds: float = 2.0,
    ):
        from .lora import preset_for

        self.store, self.registry, self.resolved, self.engine = store, registry, resolved, engine
        self.preset = preset or preset_for(resolved.name)
        self.config = config or SDPOConfig(learning_rate=self.preset.learning_rate)
        self.steps_per_feedback = steps_per_feedback or self.preset.steps_per_feedback
        self.batch_size = batch_size
        self.divergence_limit = divergence_limit
        self.gate = gate
        self.dtype = dtype
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()          # one batch at a time (thread or /train)
        self._thread: threading.Thread | None = None
        self._model = self._tokenizer = self._optimizer = self._teacher = None
        self._loaded_version: str | None = "unloaded"
        self.last_metrics: dict | None = None
        self.last_error: str | None = None
        self.steps_done = 0
        self.recent_losses: list[float] = []

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="continualcode-trainer", daemon=True)
            self._thread.start()

    def wake(self, *_: object) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to finish its current batch and exit; True if it did in time."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def status(self) -> TrainerStatus:
        live = self.registry.live()
        return TrainerStatus(
            running=bool(self._thread and self._thread.is_alive()),
            queue=self.store.queue_length(),
            live_version=live.version if live else None,
            last_metrics=self.last_metrics, last_error=self.last_error,
            steps_done=self.steps_done, recent_losses=list(self.recent_losses[-20:]),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            while not self._stop.is_set() and self.train_batch() is not None:
                pass

    # -- training ------------------------------------------------------------
    def train_pending(self, limit: int | None = None) -> list[dict]:
        """Train on pending examples now (the /train command); returns one result per batch."""
        results = []
        while limit is None or len(results) < limit:
            outcome = self.train_batch()
            if outcome is None:
                break
            results.append(outcome)
        return results

    def train_batch(self) -> dict | None:
        """Claim one batch and learn from it; None when the queue is empty."""
        with self._lock:
            rows = self.store.claim_examples(self.batch_size)
            if not rows:
                return None
            ids = [row["id"] for row in rows]
            try:
                self._ensure_model()
                examples = [training_example(row, self._tokenizer) for row in rows]
                return self._learn(ids, examples)
            except Exception as exc:  # one bad batch must not stop the thread; /status shows it
                self.last_error = f"batch {ids}: {type(exc).__name__}: {exc}"
                self.store.mark_examples(ids, "failed", error=traceback.format_exc(limit=3))
                return {"examples": ids, "error": self.last_error}

    def _learn(self, ids: list[int], examples: list[TrainingExample]) -> dict:
        snapshot = self._snapshot()
        steps: list[dict] = []
        for _ in range(self.steps_per_feedback):
            metrics = sdpo_step(self._model, self._tokenizer, self._optimizer, examples, self.config, self._teacher)
            steps.append(metrics)
            if metrics.get("skipped") and not metrics.get("stepped"):
                break
        last = steps[-1]
        bad = [m for m in steps if not math.isfinite(m["loss"]) or m.get("divergence", 0.0) > self.divergence_limit]
        if not any(m.get("stepped") for m in steps) or bad:
            self._restore(snapshot)
            reason = last.get("skipped") or f"divergence {bad[0].get('divergence')} above {self.divergence_limit}; rolled back"
            status = "skipped" if not bad else "failed"
            self.store.mark_examples(ids, status, error=reason)
            self.last_error = None if status == "skipped" else reason
            return {"examples": ids, "skipped": reason}
        metrics = _summarize(steps)
        parent = self._loaded_version if self._loaded_version not in (None, "unloaded") else None
        version = self.registry.publish(
            self._model, parent=parent, base_model=self.resolved.name, base_checksum=self.resolved.checksum,
            examples=ids, metrics=metrics, teacher_tensors=self._teacher.state_dict() or None,
            repo_root=self.registry.repo_root,
        ).version
        self._loaded_version = version
        decision = self._promote(version)
        self.store.mark_examples(ids, "trained", adapter_version=version)
        self.store.add_train_step(adapter_version=version, example_ids=ids, metrics=metrics)
        self.last_metrics, self.last_error = {**metrics, "version": version, **decision}, None
        self.steps_done += len(steps)
        self.recent_losses.extend(m["loss"] for m in steps)
        return {"examples": ids, "version": version, "metrics": metrics, **decision}

    def _promote(self, version: str) -> dict:
        decision = {"decision": "promoted", "reason": "gate off", "scores": {}}
        if self.gate is not None:
            decision = self.gate(self, version)
        self.registry.set_promotion(version, decision["decision"], decision["reason"], decision.get("scores", {}))
        self.store.add_adapter_event(version, decision["decision"], decision)
        if decision["decision"] == "promoted":
            self.registry.set_live(version, reason="trained")
            self._swap_engine(version)
        else:
            # Kept but not live: keep training from the live weights, not the rejected ones.
            live = self.registry.live()
            self._load_version(live.version if live else None)
        return decision

    def _swap_engine(self, version: str | None) -> float:
        if self.engine is None:
            return 0.0
        path = self.registry.path(version) if version else None
        return self.engine.load_adapter(path, version)

    def rollback(self, version: str | None, reason: str = "rollback") -> float:
        """Make `version` (None = base) live on the engine; training continues from it."""
        with self._lock:
            target = self.registry.rollback(version, reason=reason)
            name = target.version if target else None
            self.store.add_adapter_event(name or "base", "rollback", {"reason": reason})
            seconds = self._swap_engine(name)
            if self._model is not None:
                self._load_version(name)
            return seconds

    # -- model state -----------------------------------------------------------
    def _ensure_model(self) -> None:
        if self._model is not None:
            live = self.registry.live()
            if (live.version if live else None) != self._loaded_version:
                self._load_version(live.version if live else None)
            return
        from .embedded_engine import load_causal_lm, pick_dtype
        from .lora import attach_lora

        device = "cuda" if _cuda() else "cpu"
        base, self._tokenizer = load_causal_lm(self.resolved, pick_dtype(self.dtype, device), device)
        self._model = attach_lora(base, self.preset)
        live = self.registry.live()
        self._load_version(live.version if live else None)

    def _load_version(self, version: str | None) -> None:
        """Reset student, teacher and optimizer to `version` (None = fresh LoRA on the base)."""
        import torch
        from peft.utils import set_peft_model_state_dict

        from .teacher import lora_parameters

        if version is not None:
            set_peft_model_state_dict(self._model, self.registry.load_tensors(version))
        else:
            with torch.no_grad():
                for name, param in lora_parameters(self._model).items():
                    if "lora_B" in name:
                        param.zero_()
        self._teacher = TeacherState.create(self._model, self.config.teacher, self.config.teacher_update_rate)
        teacher = self.registry.load_teacher(version) if version is not None else None
        if teacher and self.config.teacher == "ema":
            self._teacher.load_state_dict(teacher)
        self._optimizer = make_optimizer(self._model, self.config.learning_rate)
        self._loaded_version = version

    def _snapshot(self) -> dict:
        from .teacher import lora_parameters

        return {
            "student": {k: p.detach().clone() for k, p in lora_parameters(self._model).items()},
            "teacher": {k: v.clone() for k, v in self._teacher.state_dict().items()},
            "optimizer": _clone_state(self._optimizer.state_dict()),
        }

    def _restore(self, snapshot: dict) -> None:
        import torch

        from .teacher import lora_parameters

        with torch.no_grad():
            for name, param in lora_parameters(self._model).items():
                param.copy_(snapshot["student"][name])
        if snapshot["teacher"]:
            self._teacher.load_state_dict(snapshot["teacher"])
        self._optimizer.load_state_dict(snapshot["optimizer"])


def training_example(row: dict, tokenizer) -> TrainingExample:
    """A stored example as `sdpo_step` receives it (the trainer and the credit view share this rule).

    y's sampled token ids are used when they still spell y for this tokenizer;
    otherwise (redacted, produced by another tokenizer or the scripted engine,
    missing) y is re-tokenized and the eos token appended, and the sampler's
    log-probs are dropped (the importance ratio then counts as 1).
    """
    ids, logprobs = row.get("y_token_ids"), row.get("y_logprobs")
    if not ids or row.get("redacted") or not _ids_spell(tokenizer, ids, row["y"]):
        ids = tokenizer(row["y"], add_special_tokens=False)["input_ids"]
        eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token) if tokenizer.eos_token else None
        ids = ids + ([eos] if eos is not None else [])
        logprobs = None
    return TrainingExample(messages=row["x"], response_ids=list(ids), feedback=row.get("f"),
                           solution=row.get("s"), template=row.get("template"), old_logprobs=logprobs,
                           meta={"id": row["id"]})


def _ids_spell(tokenizer, ids: list[int], text: str) -> bool:
    try:
        return tokenizer.decode(ids, skip_special_tokens=True).strip() == text.strip()
    except (ValueError, TypeError, OverflowError):
        return False


def _summarize(steps: list[dict]) -> dict:
    keys = ("loss", "divergence", "advantage", "grad_norm", "tokens", "seconds")
    summary = {k: float(steps[-1].get(k, 0.0)) for k in keys}
    summary["steps"] = len(steps)
    summary["first_loss"] = float(steps[0]["loss"])
    summary["seconds"] = float(sum(m.get("seconds", 0.0) for m in steps))
    return summary


def _clone_state(state):
    import copy

    return copy.deepcopy(state)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def wait_until_idle(trainer: Trainer, timeout: float) -> bool:
    """Block until the queue is empty and no batch is running (headless --wait-train)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if trainer.store.queue_length() == 0 and trainer._lock.acquire(timeout=0.1):
            trainer._lock.release()
            return True
        trainer.wake()
        time.sleep(0.2)
    return False
