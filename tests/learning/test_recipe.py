"""The feedback-event recipe: each lever's data reaches `sdpo_step` (a spy records every call), the event is
guarded as a whole, the teacher cache runs the teacher once per round; on the tiny random Llama (fast)
and, for what needs a model that reads, the real SmolLM2 (slow)."""

from __future__ import annotations

import pytest
import torch

from continualcode.learning import learner as learner_module
from continualcode.learning import sdpo as sdpo_module
from continualcode.learning.batch import build_batch, response_logits
from continualcode.learning.lora import lora_state, swapped
from continualcode.learning.probes import Accepted, replay_prompts
from continualcode.learning.recipe import (
    LearnRecipe,
    Progress,
    learn_from_feedback,
    parse_requests,
)
from continualcode.learning.teacher import TeacherState, teacher_messages
from continualcode.learning.types import SDPOConfig, TrainingExample

TOKENS = 6  # the tiny model never stops by itself: every answer is this long


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


X = user("What is 7 * 8?")
FEEDBACK = "Answer with the number only, nothing else."


def judged(learner) -> TrainingExample:
    [[y]] = learner.sample([X], n=1, max_new_tokens=TOKENS, seed=123)
    return learner.example(X, y.text, token_ids=y.token_ids, logprobs=y.logprobs, feedback=FEEDBACK,
                           template="hindsight", meta={"id": 1})


@pytest.fixture
def calls(monkeypatch):
    """Every sdpo_step the learner runs: (examples, keyword arguments, metrics)."""
    seen: list[tuple[list[TrainingExample], dict, dict]] = []
    real = learner_module.sdpo_step

    def spy(model, tokenizer, optimizer, examples, config, teacher_state, **kwargs):
        metrics = real(model, tokenizer, optimizer, examples, config, teacher_state, **kwargs)
        seen.append((list(examples), kwargs, metrics))
        return metrics
    monkeypatch.setattr(learner_module, "sdpo_step", spy)
    return seen


def recipe(**overrides) -> LearnRecipe:
    return LearnRecipe(**{"steps": 1, "max_new_tokens": TOKENS, **overrides})


def kinds(examples: list[TrainingExample]) -> list[str]:
    return [e.meta["kind"] for e in examples]


# ----------------------------------------------------------------------------- the default


def test_the_default_recipe_is_the_plain_learn_loop(tiny_learner):
    """Shipped behaviour is unchanged: the default recipe = `Learner.learn` on the judged reply alone."""
    example = judged(tiny_learner)
    start = tiny_learner.snapshot()
    plain = tiny_learner.learn([example], 4)
    after_plain = lora_state(tiny_learner.model)
    tiny_learner.restore(start)
    summary = learn_from_feedback(tiny_learner, example, LearnRecipe(steps=4))
    after_recipe = lora_state(tiny_learner.model)
    assert all(torch.equal(after_plain[k], after_recipe[k]) for k in after_plain)
    assert summary["steps"] == plain["steps"] == 4 and summary["loss"] == pytest.approx(plain["loss"])
    assert summary["rollouts"] == summary["expanded"] == summary["replayed"] == 0
    assert set(summary["by_kind"]) == {"judged"} and summary["by_kind"]["judged"]["tokens"] == 4 * TOKENS


# ----------------------------------------------------------------------------- lever 1: rollouts


def test_rollouts_are_sampled_per_round_and_resampled_for_the_next(tiny_learner, calls):
    example = judged(tiny_learner)
    summary = learn_from_feedback(tiny_learner, example, recipe(rounds=2, rollouts=3, temperature=1.0))
    assert [kinds(e) for e, _, _ in calls] == [["judged", "rollout", "rollout", "rollout"], ["rollout"] * 3]
    first, second = calls[0][0][1:], calls[1][0]
    for rollout in first + second:  # same prompt and feedback as the judged reply, the sampler's log-probs
        assert rollout.messages == X and rollout.feedback == FEEDBACK and rollout.template == "hindsight"
        assert rollout.old_logprobs is not None and len(rollout.old_logprobs) == len(rollout.response_ids)
    assert calls[0][0][0].response_ids == example.response_ids  # y itself is in the first round
    assert {tuple(r.response_ids) for r in first}.isdisjoint({tuple(r.response_ids) for r in second})
    assert summary["rollouts"] == 6 and summary["rounds"] == 2 and summary["steps"] == 2
    assert all(m["stepped"] and m["tokens"] > 0 for _, _, m in calls)


# ----------------------------------------------------------------------------- lever 2: expansion


def test_expansion_prompts_are_other_prompts_taught_with_the_standing_instruction(tiny_learner, calls):
    example = judged(tiny_learner)
    recent = [X, user("What is 2 + 2?"), user("Name a prime number."), user("What is 2 + 2?")]
    summary = learn_from_feedback(tiny_learner, example, recipe(expand=2), recent_prompts=recent)
    [(examples, _, metrics)] = calls
    expansion = [e for e in examples if e.meta["kind"] == "expansion"]
    assert [e.messages for e in expansion] == [user("What is 2 + 2?"), user("Name a prime number.")]
    assert all(e.feedback == FEEDBACK and e.template == "instruction" for e in expansion)
    assert summary["expansion_prompts"] == ["What is 2 + 2?", "Name a prime number."]
    rows = [i for i, e in enumerate(examples) if e.meta["kind"] == "expansion"]
    assert all(metrics["example_stats"][i]["tokens"] == TOKENS for i in rows)  # they reached the loss
    assert summary["by_kind"]["expansion"]["examples"] == 2


def test_the_standing_instruction_template_says_where_the_feedback_came_from():
    text = teacher_messages(user("What is 2 + 2?"), FEEDBACK, template="instruction")[0]["content"]
    assert text.startswith("What is 2 + 2?\n\n[Standing instruction]") and FEEDBACK in text
    assert "unsuccessful" not in text and "does not apply" in text


def test_model_written_requests_are_parsed_robustly():
    listed = "Sure! Here are some:\n1. How do I run the tests?\n2) **Add a --verbose flag to the CLI.**\n" \
             "3: \"Why is the build slow?\"\n4. ok\n5. How do I run the tests?\n6. What does main.py do?"
    assert parse_requests(listed, 3) == ["How do I run the tests?", "Add a --verbose flag to the CLI.",
                                         "Why is the build slow?"]
    assert parse_requests("- Fix the typo in README.\n* Rename foo to bar.", 4,
                          exclude=("rename foo to bar.",)) == ["Fix the typo in README."]
    assert parse_requests("Explain the cache layer please.\nrandom words here", 2) == ["Explain the cache layer please."]
    assert parse_requests("", 4) == [] and parse_requests("§§§ \n 1.\n 2. x", 4) == []


def test_model_written_prompts_fill_up_to_n_under_the_judged_system_prompt(tiny_learner, monkeypatch):
    from continualcode.learning import recipe as recipe_module
    from continualcode.learning.sampler import Sample

    system = {"role": "system", "content": "You are a coding agent."}
    example = judged(tiny_learner)
    example.messages = [system, *X]
    real = tiny_learner.sample
    asked = []

    def sample(conversations, **kwargs):
        if "Write 2 other requests" in conversations[0][-1]["content"]:
            asked.append(conversations[0][-1]["content"])
            return [[Sample("1. What is 3 * 4?\n2. What is 7 * 8?\n3. Spell 'cat'.", [], [])]]
        return real(conversations, **kwargs)
    monkeypatch.setattr(tiny_learner, "sample", sample)
    prompts = recipe_module.expansion_prompts(tiny_learner, example, recipe(expand=3), [user("Hi there.")], seed=0)
    assert "What is 7 * 8?" in asked[0]  # the judged request is the model's example
    assert prompts == [user("Hi there."), [system, *user("What is 3 * 4?")], [system, *user("Spell 'cat'.")]]


# ----------------------------------------------------------------------------- lever 3: teacher samples


def test_teacher_samples_come_from_the_teacher_context_and_carry_its_full_distribution(tiny_learner, calls,
                                                                                        monkeypatch):
    seen_logits = []
    real_loss = sdpo_module.distillation_loss

    def loss_spy(student, teacher, *args, **kwargs):
        seen_logits.append(teacher.detach().clone())
        return real_loss(student, teacher, *args, **kwargs)
    monkeypatch.setattr(sdpo_module, "distillation_loss", loss_spy)
    example = judged(tiny_learner)
    sampled = []
    real_sample = tiny_learner.sample
    monkeypatch.setattr(tiny_learner, "sample", lambda c, **kw: sampled.append(c) or real_sample(c, **kw))
    teacher_before = {k: t.clone() for k, t in tiny_learner.teacher.tensors.items()}
    summary = learn_from_feedback(tiny_learner, example, recipe(rollouts=2, teacher_samples=0.5))
    assert sampled[0][:2] == [X, teacher_messages(X, FEEDBACK, template="hindsight")]  # one batched call
    [(examples, _, _)] = calls
    assert kinds(examples) == ["judged", "rollout", "teacher"]
    drawn = examples[2]
    assert drawn.messages == X and drawn.feedback == FEEDBACK  # the student reads x, the teacher x'
    assert drawn.old_logprobs is None  # sampled from x': the student's importance ratio is 1
    # The loss saw the teacher's whole next-token distribution on those tokens (soft labels, not one-hot):
    batch = build_batch(tiny_learner.tokenizer, [drawn], tiny_learner.config)
    with torch.no_grad(), swapped(tiny_learner.model, teacher_before):
        tiny_learner.model.eval()
        expected = response_logits(tiny_learner.model, batch.teacher_ids, batch.teacher_attention,
                                   batch.teacher_positions, batch.response_length)
    got = seen_logits[0][2, : len(drawn.response_ids)]
    assert torch.allclose(got, expected[0], atol=1e-5)
    probs = torch.softmax(got.float(), -1)
    assert float(probs.max(-1).values.max()) < 0.99 and int((probs > 1e-6).sum(-1).min()) > 100
    assert summary["teacher_samples"] == 1 and summary["rollouts"] == 1


def test_teacher_samples_alone_add_one_per_round():
    assert LearnRecipe(teacher_samples=0.25).split() == (0, 1)
    assert LearnRecipe(rollouts=8, teacher_samples=0.25).split() == (6, 2)
    assert LearnRecipe(rollouts=4).split() == (4, 0)
    with pytest.raises(ValueError, match="fraction"):
        LearnRecipe(teacher_samples=1.5)


# ----------------------------------------------------------------------------- lever 4: replay


def test_replay_examples_are_taught_by_the_frozen_pre_event_weights(tiny_learner, calls, monkeypatch):
    seen_logits = []
    real_loss = sdpo_module.distillation_loss
    monkeypatch.setattr(sdpo_module, "distillation_loss",
                        lambda s, t, *a, **k: seen_logits.append(t.detach().clone()) or real_loss(s, t, *a, **k))
    example = judged(tiny_learner)
    before = lora_state(tiny_learner.model)
    accepted = [Accepted(user("Say hi."), tiny_learner.tokenizer("Hi!", add_special_tokens=False)["input_ids"])]
    general = replay_prompts()[:3]
    summary = learn_from_feedback(tiny_learner, example, recipe(steps=3, replay=True, replay_size=2),
                                  replay=general, accepted=accepted)
    assert len(calls) == 3
    examples, kwargs, _ = calls[0]
    anchor = kwargs["anchor"]
    assert isinstance(anchor, TeacherState) and anchor is not tiny_learner.teacher
    assert all(torch.equal(anchor.tensors[k], before[k].float()) for k in before)  # the pre-update student
    replayed = [e for e in examples if e.meta["kind"] == "replay"]
    assert [e.messages for e in replayed] == [*general[:2], user("Say hi.")]
    assert all(e.anchor and e.feedback is None for e in replayed)
    # Step 3 still compares against the pre-event weights (the student has moved since): x unchanged.
    row = examples.index(replayed[0])
    batch = build_batch(tiny_learner.tokenizer, [replayed[0]], tiny_learner.config)
    assert torch.equal(batch.teacher_ids, batch.student_ids)
    with torch.no_grad(), swapped(tiny_learner.model, before):
        tiny_learner.model.eval()
        expected = response_logits(tiny_learner.model, batch.student_ids, batch.student_attention,
                                   batch.student_positions, batch.response_length)
    n = len(replayed[0].response_ids)
    assert torch.allclose(seen_logits[2][row, :n], expected[0, :n], atol=1e-5)
    assert not torch.equal(lora_state(tiny_learner.model)[next(iter(before))], next(iter(before.values())))
    assert summary["replayed"] == 2 and summary["by_kind"]["replay"]["examples"] == 3


def test_replay_prompts_leave_out_held_out_items():
    prompts = replay_prompts()
    assert len(prompts) >= 6 and user("What is the capital of France?") in prompts
    assert user("What is the capital of France?") not in replay_prompts([user("What is the capital of France?")])


def test_replay_examples_need_an_anchor(tiny_learner):
    example = TrainingExample(X, [5, 6, 7], anchor=True)
    assert example.has_signal(SDPOConfig())
    with pytest.raises(ValueError, match="anchor"):
        sdpo_module.sdpo_step(tiny_learner.model, tiny_learner.tokenizer, tiny_learner.optimizer, [example],
                              tiny_learner.config, tiny_learner.teacher)


# ----------------------------------------------------------------------------- lever 5: cost


def test_the_teacher_cache_runs_the_teacher_once_per_round(tiny_learner, monkeypatch):
    passes = []
    real = TeacherState.logits
    monkeypatch.setattr(TeacherState, "logits", lambda self, *a: passes.append(self.mode) or real(self, *a))
    example = judged(tiny_learner)
    start = {k: t.clone() for k, t in tiny_learner.teacher.tensors.items()}
    learn_from_feedback(tiny_learner, example, recipe(steps=3, rounds=2, rollouts=1, cache_teacher=True))
    assert len(passes) == 2
    passes.clear()
    tiny_learner.teacher.tensors = {k: t.clone() for k, t in start.items()}
    learn_from_feedback(tiny_learner, example, recipe(steps=3, rounds=1))
    assert len(passes) == 3


def test_a_deferred_ema_update_moves_by_the_weight_of_the_steps_taken(tiny_learner):
    teacher = TeacherState.create(tiny_learner.model, "ema", 0.1)
    start = {k: t.clone() for k, t in teacher.tensors.items()}
    student = lora_state(tiny_learner.model)
    teacher.tensors = {k: torch.zeros_like(t) for k, t in start.items()}
    teacher.update(tiny_learner.model, steps=3)
    key = next(iter(student))
    assert torch.allclose(teacher.tensors[key], (1 - 0.9 ** 3) * student[key].float(), atol=1e-7)


# ----------------------------------------------------------------------------- the event as a whole


def test_a_bad_round_rolls_back_the_whole_event(tiny_learner, calls):
    example = judged(tiny_learner)
    before = tiny_learner.snapshot()
    tiny_learner.divergence_limit = -1.0  # every step counts as diverged
    summary = learn_from_feedback(tiny_learner, example, recipe(rounds=3, rollouts=1, replay=True))
    assert summary["failed"] and "rolled back" in summary["rolled_back"]
    assert len(calls) == 1  # stopped after the first bad round
    after = lora_state(tiny_learner.model)
    assert all(torch.equal(before["student"][k], after[k]) for k in after)
    assert all(torch.equal(before["teacher"][k], tiny_learner.teacher.tensors[k]) for k in after)


def test_progress_reports_rounds_steps_rollouts_and_expansion(tiny_learner):
    lines: list[str] = []
    taken: list[int] = []

    def progress(status: Progress) -> None:
        lines.append(str(status))
        taken.append(status.taken)
    learn_from_feedback(tiny_learner, judged(tiny_learner), recipe(steps=2, rounds=2, rollouts=2, expand=1),
                        recent_prompts=[user("What is 2 + 2?")], progress=progress)
    assert "round 1/2 · sampling · 1 prompts expanded" in lines[1]
    assert any(line.startswith("round 2/2 · step 2/2 · 4 rollouts sampled · 1 prompts expanded") for line in lines)
    assert lines[-1].startswith("round 2/2 · done") and taken[-1] == 4


# ----------------------------------------------------------------------------- real model (SmolLM2)


@pytest.mark.slow
def test_feedback_that_cannot_apply_elsewhere_costs_little_on_expansion_prompts(small_model):
    """Issue 15: where the feedback does not apply the teacher should agree with the student, so the
    expansion prompts' loss is far below the judged prompt's. Not so on SmolLM2 (nor on Qwen2.5-Coder):
    an expected failure that turns into a failure the day it passes, so that change also updates the
    docs (the plumbing checked before it fails normally)."""
    from continualcode.evals.learning_methods import load_learner

    learner = load_learner(small_model.name)
    x = user("My script foo.py crashes with an IndexError when I run it. Where is the bug?")
    [[y]] = learner.sample([x], n=1, max_new_tokens=32, seed=0)
    example = learner.example(x, y.text, token_ids=y.token_ids, logprobs=y.logprobs,
                              feedback="The bug is on line 12 of foo.py.", template="hindsight")
    recent = [user(t) for t in ("What is the capital of France?", "Write a Python function that reverses a string.",
                                "What is 9 + 6?")]
    summary = learn_from_feedback(learner, example, LearnRecipe(steps=1, expand=3, max_new_tokens=32),
                                  recent_prompts=recent)
    by_kind = summary["by_kind"]
    assert by_kind["expansion"]["examples"] == 3 and by_kind["judged"]["tokens"] > 0
    assert summary["expansion_prompts"] == [m[0]["content"] for m in recent]
    expansion, judged_loss = by_kind["expansion"]["loss"], by_kind["judged"]["loss"]
    if expansion < 0.25 * judged_loss:
        pytest.fail(f"expansion loss {expansion:.3f} is now far below the judged {judged_loss:.3f}: update "
                    "docs/sdpo.md ('One feedback event') and make this a plain assertion")
    pytest.xfail(f"measured on SmolLM2: expansion loss {expansion:.3f} vs judged {judged_loss:.3f} "
                 "(docs/sdpo.md, 'One feedback event')")
