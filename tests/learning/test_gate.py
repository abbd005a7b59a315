"""The promotion gate: decision rules by hand, replay sets from a real store, and the real
trainer on SmolLM2 promoting a sane step and rejecting a wrecked one (kept, not served)."""

from __future__ import annotations

import pytest
import torch

from continualcode.config import Settings
from continualcode.learning.checks import Check
from continualcode.learning.gate import (
    GateConfig,
    decide,
    degenerate,
    gate_event,
    gate_for,
    replay_checks,
)
from continualcode.learning.probes import GENERAL_PROBES, accepted_answers
from continualcode.store.db import Store

X = [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}]


def scores(pass_rate: float, logprob: float | None = -1.0, distinct: float = 1.0) -> dict:
    return {"pass": pass_rate, "accepted_logprob": logprob, "distinct": distinct}


def test_decide_tolerates_the_threshold_and_rejects_past_it():
    config = GateConfig(threshold=0.1)
    assert decide(scores(0.75), scores(0.75), config)[0] == "promoted"
    assert decide(scores(0.8), scores(0.7), config)[0] == "promoted"  # exactly the allowed drop
    decision, reason = decide(scores(0.75), scores(0.5), config)
    assert decision == "rejected" and "0.75 → 0.50" in reason


def test_decide_rejects_a_log_prob_drop_and_a_collapse():
    config = GateConfig(logprob_drop=0.5)
    decision, reason = decide(scores(1.0, -1.0), scores(1.0, -1.8), config)
    assert decision == "rejected" and "log-prob" in reason
    assert decide(scores(1.0, -1.0), scores(1.0, -1.4), config)[0] == "promoted"
    assert decide(scores(1.0, None), scores(1.0, None), config)[0] == "promoted"
    decision, reason = decide(scores(0.5, distinct=1.0), scores(0.5, distinct=0.25), config)
    assert decision == "rejected" and "collapsed" in reason


@pytest.mark.parametrize("text, expected", [
    ("", True), ("  \n", True), ("\n\n\n\n\n\n", True), ("NO NO NO NO NO NO NO NO NO", True),
    ("The capital of France is Paris.", False), ("def f(x):\n    return x + 1\n", False),
])
def test_degenerate_catches_empty_output_and_loops(text, expected):
    assert degenerate(text) is expected


@pytest.mark.parametrize("answer", ["", "NO", "YES", "5", "7", "Paris", "blue", "down", "Shakespeare", "January",
                                    "def add(a, b):\n    return a + b"])
def test_no_constant_answer_passes_every_probe(answer):
    assert not all(probe.passes(answer) for probe in GENERAL_PROBES)


@pytest.mark.slow
def test_base_smollm2_passes_every_probe_greedily(small_model):
    """Otherwise a probe cannot show a regression."""
    from continualcode.engines.loading import load_causal_lm
    from continualcode.learning.sampler import generate

    model, tokenizer = load_causal_lm(small_model, torch.float32)
    answers = generate(model, tokenizer, [p.messages for p in GENERAL_PROBES], max_new_tokens=GateConfig().max_new_tokens,
                       temperature=0.0)
    assert [p.passes(group[0].text) for p, group in zip(GENERAL_PROBES, answers)] == [True] * len(GENERAL_PROBES)


def add_example(store: Store, x: list[dict], feedback: str, solution: str | None = None) -> int:
    session = store.start_session("/tmp", "smollm2-135m", "embedded")
    for message in x:
        store.add_message(session, message["role"], message["content"])
    reply = store.add_message(session, "assistant", "Paris is the capital of France, a country in Europe.")
    feedback_id = store.add_feedback("followup", feedback, reply)
    return store.add_example(feedback_id, reply, x, feedback, s=solution, template="hindsight")


def test_replay_set_is_the_probes_then_distinct_recent_feedback_prompts(tmp_path):
    store = Store(tmp_path / "store.db")
    add_example(store, X, "One word.")
    add_example(store, X, "Shorter.")  # same prompt: replayed once
    other = [{"role": "user", "content": "Name a prime number."}]
    add_example(store, other, "Just the number.")
    config = GateConfig(replay_size=4)
    checks = replay_checks(store, config)
    assert checks[: len(config.probes)] == list(config.probes)
    replayed = [c.messages for c in checks[len(config.probes):]]
    assert replayed == [other, X]  # newest first, deduplicated
    assert all(not c.pass_regex and not c.fail_regex for c in checks[len(config.probes):])


def test_accepted_answers_are_solutions_and_replies_whose_tests_passed(tmp_path, small_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model.path)
    store = Store(tmp_path / "store.db")
    add_example(store, X, "One word.", solution="Paris")
    session = store.start_session("/tmp", "smollm2-135m", "embedded")
    store.add_message(session, "user", "Fix the test.")
    passed = store.add_message(session, "assistant", "Done: the tests pass.")
    store.add_feedback("test_pass", "checks passed", passed)
    answers = accepted_answers(store, tokenizer, GateConfig().accepted_size)
    assert [tokenizer.decode(a.response_ids, skip_special_tokens=True) for a in answers] == \
        ["Paris", "Done: the tests pass."]
    assert answers[0].messages == X and answers[1].messages == [{"role": "user", "content": "Fix the test."}]


class AnsweringLearner:
    """A learner whose greedy answers are a table per weights: ``now`` as trained, ``before`` inside
    ``weights(...)`` (what ``gate_event`` swaps in for the pre-event snapshot)."""

    def __init__(self, now: dict[str, str], before: dict[str, str]) -> None:
        self.now, self.before, self.current, self.asked = now, before, now, []

    def prompt_tokens(self, messages):
        return 10

    def sample(self, conversations, n, **_):
        from types import SimpleNamespace

        self.asked.append(len(conversations))
        return [[SimpleNamespace(text=self.current[c[-1]["content"]])] for c in conversations]

    def mean_logprob(self, answers):
        return None

    def weights(self, tensors):
        from contextlib import contextmanager

        @contextmanager
        def swapped():
            assert tensors == "snapshot tensors"
            self.current = self.before
            yield
            self.current = self.now
        return swapped()


SANE = {"What is 2 + 3?": "5", "What is the capital of France?": "Paris.",
        "Write a Python function add(a, b) that returns the sum of a and b.": "def add(a, b):\n    return a + b",
        "What color is the sky on a clear day?": "Blue.", "What is the opposite of 'up'?": "Down.",
        "Who wrote 'Romeo and Juliet'?": "Shakespeare.", "Name the first month of the year.": "January.",
        "How many days are in a week?": "Seven.", "What is 7 * 8?": "56"}


def test_gate_event_compares_the_weights_now_with_the_snapshot_before_the_event():
    numbers = {prompt: "32" for prompt in SANE}  # the number-only collapse: a number for every question
    checks = [*GateConfig().probes, Check([{"role": "user", "content": "What is 7 * 8?"}])]
    collapsed = AnsweringLearner(now=numbers, before=SANE)
    decision = gate_event(collapsed, {"student": "snapshot tensors"}, checks)
    assert decision["decision"] == "rejected" and "1.00 → 0.11" in decision["reason"]  # only 7 * 8's "32"
    assert decision["scores"]["pass_live"] == 1.0 and decision["scores"]["items"] == 9
    assert decision["scores"]["regressed"] == [p for p in SANE if p != "What is 7 * 8?"]
    assert collapsed.asked == [9, 9] and collapsed.current is numbers  # both weights asked, and swapped back
    same = gate_event(AnsweringLearner(now=SANE, before=SANE), {"student": "snapshot tensors"}, checks)
    assert same["decision"] == "promoted" and same["scores"]["regressed"] == []


def test_gate_for_follows_the_settings():
    assert gate_for(Settings(gate=False)) is None
    gate = gate_for(Settings(gate=True, gate_threshold=0.3))
    assert gate.config.threshold == 0.3


# ----------------------------------------------------------------------------- real trainer


@pytest.fixture
def trainer_parts(tmp_path, small_model):
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.learning.gate import PromotionGate
    from continualcode.learning.trainer import Trainer

    store = Store(tmp_path / "store.db")
    registry = AdapterRegistry(tmp_path / "adapters")
    trainer = Trainer(store, registry, small_model, dtype="fp32", steps_per_feedback=1, gate=PromotionGate())
    yield store, registry, trainer
    store.close()


@pytest.mark.slow
def test_a_sane_step_is_promoted_and_a_wrecked_one_is_kept_but_not_served(trainer_parts):
    from continualcode.learning.lora import lora_parameters

    store, registry, trainer = trainer_parts
    add_example(store, X, "Answer in one word.", solution="Paris")
    [first] = trainer.train_pending()
    assert first["decision"] == "promoted", first["reason"]
    scores = first["scores"]
    assert scores["live_version"] == "base" and scores["items"] == len(GateConfig().probes) + 1
    assert scores["pass_candidate"] >= scores["pass_live"] - GateConfig().threshold and scores["accepted"] == 1
    assert scores["seconds"] > 0
    assert registry.live().version == "v0001"

    for group in trainer.learner.optimizer.param_groups:
        group["lr"] = 1.0  # one AdamW step of size ~1 per weight wrecks the model
    add_example(store, X, "Shorter.")
    [second] = trainer.train_pending()
    assert second["decision"] == "rejected", second
    assert registry.live().version == "v0001"  # kept on disk, not served
    # v0001's answers were remembered when it was the candidate: only the new candidate generated.
    assert second["scores"]["generated"] == second["scores"]["items"]
    meta = registry.get(second["version"]).meta["promotion"]
    assert meta["decision"] == "rejected" and meta["reason"] == second["reason"] and meta["scores"]
    [event] = [e for e in store.adapter_events(second["version"]) if e["event"] == "rejected"]
    assert event["detail"]["reason"] == second["reason"]
    # Training continues from the live weights, not the rejected ones.
    live = registry.load_tensors("v0001")
    params = lora_parameters(trainer.learner.model)
    assert set(live) == set(params)
    assert all(torch.equal(params[k].detach(), live[k]) for k in live)
    assert trainer.loaded_version == "v0001"
