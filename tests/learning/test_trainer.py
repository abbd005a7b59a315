"""The background trainer on the real SmolLM2: publish, hot-swap, roll back, survive errors."""

from __future__ import annotations

import pytest
import torch

from continualcode.adapters.registry import AdapterRegistry
from continualcode.engines.base import SamplingParams
from continualcode.engines.embedded import EmbeddedEngine
from continualcode.learning.trainer import Trainer, wait_until_idle
from continualcode.store.db import Store

pytestmark = pytest.mark.slow

X = [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}]


def queue_example(store: Store, engine, feedback: str = "Answer with one word only.") -> int:
    session = store.start_session("/tmp", "smollm2-135m", "embedded")
    for message in X:
        store.add_message(session, message["role"], message["content"])
    completion = engine.generate(X, SamplingParams(max_new_tokens=24))
    reply = store.add_message(session, "assistant", completion.text, token_ids=completion.token_ids,
                              logprobs=completion.logprobs, adapter_version=completion.adapter_version)
    feedback_id = store.add_feedback("followup", feedback, reply)
    return store.add_example(feedback_id, reply, X, feedback, template="hindsight")


@pytest.fixture
def parts(tmp_path, small_model):
    store = Store(tmp_path / "store.db")
    registry = AdapterRegistry(tmp_path / "adapters")
    engine = EmbeddedEngine(small_model, dtype="fp32")
    trainer = Trainer(store, registry, small_model, engine=engine, dtype="fp32", steps_per_feedback=2)
    yield store, registry, engine, trainer
    trainer.stop()
    store.close()


def test_train_publishes_a_version_and_hot_swaps_it(parts):
    store, registry, engine, trainer = parts
    example = queue_example(store, engine)
    ids = engine.generate(X, SamplingParams(max_new_tokens=8)).token_ids
    before = engine.score(X, ids)
    [result] = trainer.train_pending()
    assert result["version"] == "v0001" and result["decision"] == "promoted"
    assert registry.live().version == "v0001" and engine.adapter_version == "v0001"
    assert engine.score(X, ids) != pytest.approx(before, abs=1e-6)  # the serving weights changed
    row = store.example(example)
    assert row["status"] == "trained" and row["adapter_version"] == "v0001"
    [step] = store.recent_train_steps(1)
    assert step["adapter_version"] == "v0001" and step["metrics"]["steps"] == 2
    meta = registry.get("v0001").meta
    assert meta["parent"] is None and meta["examples"] == [example]
    assert registry.load_teacher("v0001")  # the EMA teacher is persisted beside it
    status = trainer.status()
    assert status.queue == 0 and status.live_version == "v0001" and status.last_error is None


def test_second_version_chains_and_rollback_restores_serving_and_training(parts):
    store, registry, engine, trainer = parts
    queue_example(store, engine)
    trainer.train_pending()
    ids = engine.generate(X, SamplingParams(max_new_tokens=8)).token_ids
    at_v1 = engine.score(X, ids)
    queue_example(store, engine, "Be brief.")
    [second] = trainer.train_pending()
    assert second["version"] == "v0002" and registry.get("v0002").parent == "v0001"
    seconds = trainer.rollback("v0001")
    assert seconds < 1.0 and engine.adapter_version == "v0001"
    assert engine.score(X, ids) == pytest.approx(at_v1, abs=1e-5)
    queue_example(store, engine, "Shorter.")
    [third] = trainer.train_pending()
    assert registry.get(third["version"]).parent == "v0001"  # training continued from the rollback
    trainer.rollback(None)
    assert engine.adapter_version is None


def test_divergence_rolls_the_step_back_and_publishes_nothing(parts):
    store, registry, engine, trainer = parts
    example = queue_example(store, engine)
    trainer.ensure_learner().divergence_limit = -1.0  # every step counts as diverged
    from continualcode.learning.lora import lora_parameters

    before = {k: p.detach().clone() for k, p in lora_parameters(trainer.learner.model).items()}
    [result] = trainer.train_pending()
    assert "rolled back" in result["skipped"]
    after = lora_parameters(trainer.learner.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert registry.list() == [] and store.example(example)["status"] == "failed"
    assert "divergence" in trainer.status().last_error


def test_a_bad_batch_is_marked_and_the_thread_goes_on(parts):
    store, registry, engine, trainer = parts
    bad = queue_example(store, engine)
    store.db.execute("UPDATE examples SET x = ? WHERE id = ?", ['[{"role": "nobody"}]', bad])
    store.db.conn.commit()
    good = queue_example(store, engine)
    trainer.start()
    trainer.wake()
    assert wait_until_idle(trainer, timeout=300)
    assert store.example(bad)["status"] == "failed" and store.example(good)["status"] == "trained"
    assert trainer.status().running
    assert trainer.stop(timeout=60)
    assert not trainer.status().running
