from __future__ import annotations

import pytest

from continualcode.adapters.registry import AdapterRegistry
from continualcode.config import ConfigError, Settings
from continualcode.session import make_trainer
from continualcode.store.db import Store


def trainer_for(repo, **settings):
    store = Store.for_repo(repo)
    return make_trainer(store, AdapterRegistry.for_repo(repo), Settings(model="smollm2-135m", **settings), None)


def test_learning_settings_reach_the_trainers_step_and_recipe(git_repo):
    trainer = trainer_for(git_repo, divergence_alpha=0.0, divergence_support="union", learn_rounds=2,
                          learn_rollouts=4, learn_expand=2, learn_teacher_samples=0.25, learn_replay=True,
                          steps_per_feedback=3, learning_rate=1e-4)
    assert (trainer.config.alpha, trainer.config.support, trainer.config.learning_rate) == (0.0, "union", 1e-4)
    recipe = trainer.recipe
    assert (recipe.steps, recipe.rounds, recipe.rollouts, recipe.expand, recipe.teacher_samples, recipe.replay) == \
        (3, 2, 4, 2, 0.25, True)


def test_the_defaults_are_the_presets_and_the_shipped_divergence(git_repo):
    trainer = trainer_for(git_repo)
    defaults = Settings()
    assert trainer.config.learning_rate == trainer.preset.learning_rate
    assert trainer.recipe.steps == trainer.preset.steps_per_feedback
    # alpha, support, teacher samples and replay are measured per model (adapters/presets.toml); a setting
    # overrides the preset.
    preset = trainer.preset
    assert (trainer.config.alpha, trainer.config.support, trainer.recipe.teacher_samples, trainer.recipe.replay) == \
        (preset.divergence_alpha, preset.divergence_support, preset.learn_teacher_samples, preset.learn_replay)
    assert defaults.divergence_support is None and defaults.learn_teacher_samples is None
    overridden = trainer_for(git_repo, divergence_alpha=0.5, learn_replay=not preset.learn_replay,
                             divergence_support="union", learn_teacher_samples=0.5)
    assert (overridden.config.alpha, overridden.config.support, overridden.recipe.teacher_samples,
            overridden.recipe.replay) == (0.5, "union", 0.5, not preset.learn_replay)


@pytest.mark.parametrize("bad", [{"divergence_alpha": 2.0}, {"divergence_alpha": "high"}, {"divergence_support": "teacher"},
                                 {"learn_rounds": 0}, {"learn_teacher_samples": 1.5}])
def test_bad_learning_settings_are_a_clear_config_error(git_repo, bad):
    with pytest.raises(ConfigError, match="learning settings"):
        trainer_for(git_repo, **bad)


def test_repair_settings_reach_the_repairer_and_bad_ones_are_a_clear_config_error(git_repo):
    from continualcode.engines.scripted import ScriptedEngine
    from continualcode.session import open_session

    settings = Settings(model="smollm2-135m", learn=False, repair_candidates=6, repair_rewrites=2, repair_rounds=3)
    session = open_session(git_repo, settings, approver=None, engine=ScriptedEngine([]), start_trainer=False)
    try:
        config = session.agent.repairer.config
        assert (config.candidates, config.rewrites, config.rounds) == (6, 2, 3)
        assert session.agent.recorder.learn_repair is False  # the default: candidates teach nothing
    finally:
        session.close()
    session = open_session(git_repo, Settings(model="smollm2-135m", learn=False, learn_repair=True), approver=None,
                           engine=ScriptedEngine([]), start_trainer=False)
    try:
        assert session.agent.recorder.learn_repair is True
    finally:
        session.close()
    with pytest.raises(ConfigError, match="repair settings.*rewrites"):
        open_session(git_repo, Settings(model="smollm2-135m", learn=False, repair_rewrites=-1), approver=None,
                     engine=ScriptedEngine([]), start_trainer=False)


def test_followup_template_reaches_the_recorded_examples_and_a_bad_one_is_refused_first(git_repo):
    from continualcode.engines.scripted import ScriptedEngine
    from continualcode.session import open_session

    settings = Settings(model="smollm2-135m", engine="scripted", followup_template="prefix")
    session = open_session(git_repo, settings, approver=None, engine=ScriptedEngine([]), start_trainer=False)
    try:
        store, recorder = session.agent.recorder.store, session.agent.recorder
        conversation = store.start_session(str(git_repo), "m", "scripted")
        store.add_message(conversation, "user", "Name three fruits.")
        reply = store.add_message(conversation, "assistant", "Apples, pears and plums.")
        followup = store.example(recorder.record("followup", "Use bullets.", reply))
        failure = store.example(recorder.record("tool_error", "exit 1", reply))
        assert (followup["template"], failure["template"]) == ("prefix", "reprompt")
    finally:
        session.close()
    with pytest.raises(ConfigError, match="followup_template"):  # engine=None: refused before one is loaded
        open_session(git_repo, Settings(model="smollm2-135m", followup_template="after"), approver=None,
                     engine=None, start_trainer=False)
