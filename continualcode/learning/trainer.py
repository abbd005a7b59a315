"""The background SDPO trainer: pending examples → sdpo_step → a new adapter version → live.

One daemon thread owns a `Learner` (a training copy of the model, separate
from the serving engine's, so generation never waits on a backward pass). It
trains each claimed example as one feedback event with its `LearnRecipe`
(`learning.recipe.learn_from_feedback`; the default recipe is
`steps_per_feedback` SDPO steps on the judged reply, rolled back by the
learner's guard if the loss is not finite or the divergence exceeds its
limit), publishes the adapter as a new version (atomic, see
continualcode.adapters.registry), optionally scores it with the promotion
gate, and hot-swaps it into the engine. A failing batch is marked failed with
its error (shown by /status) and the thread goes on. `phase` says what it is
doing (the event's round, step, rollouts sampled, prompts expanded, seconds).
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from continualcode.adapters.presets import preset_for
from continualcode.adapters.registry import AdapterRegistry
from continualcode.engines.factory import serve_version
from continualcode.learning.examples import training_example
from continualcode.learning.probes import accepted_answers
from continualcode.learning.recipe import LearnRecipe, Progress
from continualcode.learning.types import SDPOConfig
from continualcode.models import ResolvedModel
from continualcode.store.db import Store

if TYPE_CHECKING:
    from continualcode.learning.learner import Learner

GateFn = Callable[["Trainer", str], dict]
"""(trainer, candidate version) -> {"decision": "promoted"|"rejected", "reason": str, "scores": {...}}"""

UNLOADED = object()
"""`Trainer.loaded_version` before the model is loaded."""


@dataclass
class TrainerStatus:
    running: bool
    queue: int
    live_version: str | None
    last_metrics: dict | None
    last_error: str | None
    steps_done: int
    recent_losses: list[float] = field(default_factory=list)
    phase: str = "idle"
    """What the thread is doing now: idle, loading the model, training, the gate (with the example ids)."""


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
        divergence_limit: float | None = None,
        gate: GateFn | None = None,
        dtype: str = "auto",
        poll_seconds: float = 2.0,
        recipe: LearnRecipe | None = None,
    ):
        self.store, self.registry, self.resolved, self.engine = store, registry, resolved, engine
        self.preset = preset or preset_for(resolved.name)
        self.config = config or SDPOConfig(learning_rate=self.preset.learning_rate)
        self.steps_per_feedback = steps_per_feedback or self.preset.steps_per_feedback
        self.recipe = recipe or LearnRecipe(steps=self.steps_per_feedback)
        """How each feedback event is trained; the default is the judged reply alone, one round."""
        self.batch_size = batch_size
        self.divergence_limit = divergence_limit
        self.gate = gate
        self.dtype = dtype
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()          # one batch at a time (thread or /train)
        self._thread: threading.Thread | None = None
        self.learner: Learner | None = None
        self.loaded_version: str | None | object = UNLOADED
        self.last_metrics: dict | None = None
        self.last_error: str | None = None
        self.steps_done = 0
        self.steps_taken = 0
        """Optimizer steps run so far, counted as they happen (steps_done counts finished batches')."""
        self.recent_losses: list[float] = []
        self.phase = "idle"

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

    def busy(self) -> bool:
        """A batch is being trained right now."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
            return False
        return True

    def status(self) -> TrainerStatus:
        live = self.registry.live()
        return TrainerStatus(
            running=bool(self._thread and self._thread.is_alive()),
            queue=self.store.queue_length(),
            live_version=live.version if live else None,
            last_metrics=self.last_metrics, last_error=self.last_error,
            steps_done=self.steps_done, recent_losses=list(self.recent_losses[-20:]), phase=self.phase,
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
                learner = self.ensure_learner()
                examples = [training_example(row, learner.tokenizer) for row in rows]
                self.phase = f"training example(s) {ids}"
                return self._learn(ids, examples)
            except Exception as exc:  # one bad batch must not stop the thread; /status shows it
                self.last_error = f"batch {ids}: {type(exc).__name__}: {exc}"
                self.store.mark_examples(ids, "failed", error=traceback.format_exc(limit=3))
                return {"examples": ids, "error": self.last_error}
            finally:
                self.phase = "idle"

    def _learn(self, ids: list[int], examples: list) -> dict:
        """Each example is one feedback event; the events that were not rolled back become one version."""
        from continualcode.learning.recipe import learn_from_feedback

        trained, summaries, skipped = [], [], {}
        for example_id, example in zip(ids, examples):
            summary = learn_from_feedback(
                self.learner, example, self.recipe, recent_prompts=self._recent_prompts(),
                accepted=accepted_answers(self.store, self.learner.tokenizer, self.recipe.replay_size)
                if self.recipe.replay else (),
                progress=self._progress(example_id), seed=example_id)
            if "rolled_back" in summary:
                reason = summary["rolled_back"]
                self.store.mark_examples([example_id], "failed" if summary["failed"] else "skipped", error=reason)
                self.last_error = reason if summary["failed"] else None
                skipped[example_id] = reason
            else:
                trained.append(example_id)
                summaries.append(summary)
        if not trained:
            return {"examples": ids, "skipped": "; ".join(dict.fromkeys(skipped.values()))}
        last = summaries[-1]
        metrics = {k: last[k] for k in ("loss", "divergence", "advantage", "grad_norm", "tokens")}
        metrics.update(first_loss=summaries[0]["first_loss"], by_kind=last["by_kind"],
                       **{k: sum(s[k] for s in summaries) for k in ("seconds", "steps", "rollouts", "teacher_samples",
                                                                     "expanded", "replayed")})
        parent = self.loaded_version if self.loaded_version is not UNLOADED else None
        version = self.learner.publish(self.registry, parent=parent, examples=trained, metrics=metrics,
                                       checksum=self.resolved.checksum).version
        self.loaded_version = version
        decision = self._promote(version)
        self.store.mark_examples(trained, "trained", adapter_version=version)
        self.store.add_train_step(adapter_version=version, example_ids=trained, metrics=metrics)
        self.last_metrics, self.last_error = {**metrics, "version": version, **decision}, None
        self.steps_done += metrics["steps"]
        self.recent_losses.extend(m["loss"] for s in summaries for m in s["history"])
        result = {"examples": trained, "version": version, "metrics": metrics, **decision}
        if skipped:
            result["skipped_examples"] = skipped
        return result

    def _progress(self, example_id: int):
        """The recipe's progress callback: `phase` for /status and the TUI, and the live step count."""
        before = self.steps_taken

        def report(progress: Progress) -> None:
            self.steps_taken = before + progress.taken
            self.phase = f"training example {example_id}: {progress}"
        return report

    def _recent_prompts(self) -> list[list[dict]]:
        """The user's latest judged prompts (distinct conversations, newest first): the recipe's
        expansion candidates; the recipe skips the event's own."""
        if not self.recipe.expand:
            return []
        seen: set[str] = set()
        prompts = []
        for row in self.store.recent_examples(8 * (self.recipe.expand + 1)):
            if row["x"] and repr(row["x"]) not in seen:
                seen.add(repr(row["x"]))
                prompts.append(row["x"])
        return prompts

    def _promote(self, version: str) -> dict:
        decision = {"decision": "promoted", "reason": "gate off", "scores": {}}
        if self.gate is not None:
            self.phase = f"scoring {version} with the promotion gate"
            decision = self.gate(self, version)
        self.registry.set_promotion(version, decision["decision"], decision["reason"], decision.get("scores", {}))
        self.store.add_adapter_event(version, decision["decision"], decision)
        if decision["decision"] == "promoted":
            self.registry.set_live(version, reason="trained")
            self._serve(version)
        else:
            # Kept but not live: keep training from the live weights, not the rejected ones.
            live = self.registry.live()
            self._load_version(live.version if live else None)
        return decision

    def _serve(self, version: str | None) -> float:
        return 0.0 if self.engine is None else serve_version(self.engine, self.registry, version)

    def rollback(self, version: str | None, reason: str = "rollback") -> float:
        """Make `version` (None = base) live on the engine; training continues from it."""
        with self._lock:
            target = self.registry.rollback(version, reason=reason)
            name = target.version if target else None
            self.store.add_adapter_event(name or "base", "rollback", {"reason": reason})
            seconds = self._serve(name)
            if self.learner is not None:
                self._load_version(name)
            return seconds

    # -- model state -----------------------------------------------------------
    def ensure_learner(self) -> Learner:
        """The training copy, loaded on first use and reset to the live version when LIVE moved."""
        live = self.registry.live()
        live_name = live.version if live else None
        if self.learner is None:
            from continualcode.learning.learner import Learner

            self.phase = f"loading {self.resolved.name} for training"
            kwargs = {} if self.divergence_limit is None else {"divergence_limit": self.divergence_limit}
            self.learner = Learner.load(self.resolved, self.preset, config=self.config, dtype=self.dtype, **kwargs)
        if self.loaded_version is UNLOADED or self.loaded_version != live_name:
            self._load_version(live_name)
        return self.learner

    def _load_version(self, version: str | None) -> None:
        """Reset student, teacher and optimizer to `version` (None = fresh LoRA on the base)."""
        self.learner.start_from_version(self.registry, version)
        self.loaded_version = version


def wait_until_idle(trainer: Trainer, timeout: float) -> bool:
    """Block until the queue is empty and no batch is running (headless --wait-train)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if trainer.store.queue_length() == 0 and not trainer.busy():
            return True
        trainer.wake()
        time.sleep(0.2)
    return False
