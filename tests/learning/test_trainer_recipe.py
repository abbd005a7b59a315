"""The background trainer trains each claimed example as one feedback event through the recipe: its
progress shows in `phase`, the user's recent prompts come from the store, the guard holds per event.
Fast: the tiny random Llama stands in for the training copy (the real SmolLM2 runs in test_trainer.py)."""

from __future__ import annotations

import pytest

from continualcode.adapters.registry import AdapterRegistry
from continualcode.learning import recipe as recipe_module
from continualcode.learning.recipe import LearnRecipe
from continualcode.learning.trainer import Trainer
from continualcode.store.db import Store


def queue(store: Store, question: str, reply: str = "The answer is 56.", feedback: str = "Number only.") -> int:
    x = [{"role": "user", "content": question}]
    session = store.start_session("/tmp", "tiny", "embedded")
    store.add_message(session, "user", question)
    message = store.add_message(session, "assistant", reply)
    return store.add_example(store.add_feedback("followup", feedback, message), message, x, feedback,
                             template="hindsight")


@pytest.fixture
def trainer(tmp_path, small_model, tiny_learner):
    store = Store(tmp_path / "store.db")
    trainer = Trainer(store, AdapterRegistry(tmp_path / "adapters"), small_model, steps_per_feedback=2)
    trainer.learner = tiny_learner  # ensure_learner resets it to the live version (base) on first use
    yield trainer
    store.close()


def test_the_default_recipe_is_the_presets_steps_on_the_judged_reply(trainer):
    assert trainer.recipe == LearnRecipe(steps=2)
    queue(trainer.store, "What is 7 * 8?")
    [result] = trainer.train_pending()
    assert result["version"] == "v0001" and result["metrics"]["steps"] == 2
    assert set(result["metrics"]["by_kind"]) == {"judged"} and result["metrics"]["rollouts"] == 0
    assert trainer.steps_taken == 2 and trainer.phase == "idle"


def test_each_event_uses_the_recipe_with_the_stores_recent_prompts_and_reports_progress(trainer, monkeypatch):
    queue(trainer.store, "What is 2 + 2?")
    trainer.store.mark_examples([1], "trained")
    second = queue(trainer.store, "What is 7 * 8?")
    trainer.recipe = LearnRecipe(steps=1, rounds=2, rollouts=2, expand=1, max_new_tokens=4)
    phases = []
    real = trainer._progress

    def progress(example_id):
        report = real(example_id)
        return lambda status: (report(status), phases.append(trainer.phase))
    monkeypatch.setattr(trainer, "_progress", progress)
    [result] = trainer.train_pending()
    assert result["examples"] == [second]
    metrics = result["metrics"]
    assert metrics["rollouts"] == 4 and metrics["expanded"] == 1 and metrics["steps"] == 2
    assert set(metrics["by_kind"]) == {"judged", "rollout", "expansion"}
    assert any(p.startswith(f"training example {second}: round 2/2 · step 1/1 · 4 rollouts sampled · "
                            "1 prompts expanded") for p in phases)
    [step] = trainer.store.recent_train_steps(1)
    assert step["metrics"]["by_kind"]["expansion"]["examples"] == 2  # resampled in each round
    assert trainer.status().phase == "idle" and trainer.steps_taken == 2


def test_a_diverging_event_is_rolled_back_and_the_rest_of_the_batch_publishes(trainer, monkeypatch):
    first, second = queue(trainer.store, "What is 7 * 8?"), queue(trainer.store, "What is 2 + 2?")
    trainer.batch_size = 2
    original = recipe_module.learn_from_feedback

    def guarded(learner, example, *args, **kwargs):
        learner.divergence_limit = -1.0 if example.meta["id"] == first else 5.0
        return original(learner, example, *args, **kwargs)
    monkeypatch.setattr(recipe_module, "learn_from_feedback", guarded)
    [result] = trainer.train_pending()
    assert result["examples"] == [second] and "divergence" in result["skipped_examples"][first]
    assert trainer.store.example(first)["status"] == "failed"
    assert trainer.store.example(second)["status"] == "trained"
