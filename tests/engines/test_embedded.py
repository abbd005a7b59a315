from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from continualcode.engines.base import Engine, SamplingParams

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Name three colours."}]


def test_implements_engine_protocol(small_engine):
    assert isinstance(small_engine, Engine)


def test_greedy_generation_streams_the_same_text_it_returns(small_engine):
    pieces: list[str] = []
    completion = small_engine.generate(MESSAGES, SamplingParams(max_new_tokens=24), on_text=pieces.append)
    assert completion.text.strip()
    assert "".join(pieces) == completion.text
    assert len(completion.token_ids) == len(completion.logprobs) <= 24
    assert completion.finish_reason in {"stop", "length"}
    again = small_engine.generate(MESSAGES, SamplingParams(max_new_tokens=24))
    assert again.token_ids == completion.token_ids  # greedy is deterministic


def test_score_equals_a_manual_forward_pass(small_engine):
    completion = small_engine.generate(MESSAGES, SamplingParams(max_new_tokens=12))
    scored = small_engine.score(MESSAGES, completion.token_ids)
    prompt = small_engine.render(MESSAGES)
    ids = torch.tensor([prompt + completion.token_ids])
    with torch.no_grad():
        logits = small_engine.model(input_ids=ids).logits[0].double()
    manual = [float(torch.log_softmax(logits[len(prompt) + i - 1], -1)[tok])
              for i, tok in enumerate(completion.token_ids)]
    assert scored == pytest.approx(manual, abs=1e-4)
    # and the sampler's own log-probs (KV-cached) agree with the full forward pass
    assert completion.logprobs == pytest.approx(manual, abs=1e-3)


def test_seeded_sampling_is_reproducible(small_engine):
    params = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    assert small_engine.generate(MESSAGES, params).token_ids == small_engine.generate(MESSAGES, params).token_ids


def test_stop_string_ends_generation_and_is_kept(small_engine):
    base = small_engine.generate(MESSAGES, SamplingParams(max_new_tokens=24)).text
    stop = base.strip()[3:6]
    completion = small_engine.generate(MESSAGES, SamplingParams(max_new_tokens=24, stop=(stop,)))
    assert completion.finish_reason == "stop"
    assert completion.text.endswith(stop) and len(completion.text) < len(base)


def test_cancel_stops_between_tokens(small_engine):
    cancel = threading.Event()
    seen: list[str] = []

    def on_text(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            cancel.set()

    completion = small_engine.generate(MESSAGES, SamplingParams(max_new_tokens=64), on_text=on_text, cancel=cancel)
    assert completion.finish_reason == "cancelled"
    assert len(completion.token_ids) <= 5


@pytest.fixture
def random_adapter(small_model, tmp_path):
    """A real PEFT adapter for SmolLM2 with non-zero B, saved with save_pretrained."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(small_model.path)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    path = tmp_path / "adapter"
    model.save_pretrained(path)
    return path, model


def test_hot_swap_changes_scores_without_reload_and_back(small_model, random_adapter):
    from continualcode.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine(small_model, dtype="fp32")
    path, peft_model = random_adapter
    ids = engine.generate(MESSAGES, SamplingParams(max_new_tokens=8)).token_ids
    base_scores = engine.score(MESSAGES, ids)
    base_weight = engine.model.get_input_embeddings().weight
    seconds = engine.load_adapter(path, "v0001")
    assert engine.adapter_version == "v0001" and seconds < 5
    adapted = engine.score(MESSAGES, ids)
    assert max(abs(a - b) for a, b in zip(adapted, base_scores)) > 1e-3
    prompt = engine.render(MESSAGES)
    with torch.no_grad():
        expected = torch.log_softmax(peft_model(input_ids=torch.tensor([prompt + ids])).logits[0], -1)
    manual = [float(expected[len(prompt) + i - 1, t]) for i, t in enumerate(ids)]
    assert adapted == pytest.approx(manual, abs=1e-4)
    assert engine.model.get_input_embeddings().weight.data_ptr() == base_weight.data_ptr()  # base not reloaded
    engine.load_adapter(path, "v0002")  # same shapes: an in-place copy
    engine.load_adapter(None, None)
    assert engine.score(MESSAGES, ids) == pytest.approx(base_scores, abs=1e-5)


def test_generation_in_flight_finishes_on_the_old_weights(small_model, random_adapter):
    from continualcode.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine(small_model, dtype="fp32")
    expected = engine.generate(MESSAGES, SamplingParams(max_new_tokens=20)).token_ids
    started = threading.Event()
    swapped: list[float] = []

    def swap_when_started(piece: str) -> None:
        if not started.is_set():
            started.set()
            threading.Thread(target=lambda: swapped.append(engine.load_adapter(random_adapter[0], "v0001"))).start()

    completion = engine.generate(MESSAGES, SamplingParams(max_new_tokens=20), on_text=swap_when_started)
    assert completion.adapter_version is None
    assert completion.token_ids == expected
    for _ in range(100):
        if swapped:
            break
        threading.Event().wait(0.05)
    assert engine.adapter_version == "v0001"


def test_corrupt_adapter_gives_a_clear_error_and_keeps_serving(small_model, random_adapter):
    from continualcode.engines.base import EngineError
    from continualcode.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine(small_model, dtype="fp32")
    path = random_adapter[0]
    (path / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EngineError, match="cannot be read"):
        engine.load_adapter(path, "v0009")
    assert engine.adapter_version is None
    assert engine.generate(MESSAGES, SamplingParams(max_new_tokens=4)).token_ids


# -- prefix cache and batched candidates ---------------------------------------

SYSTEM = ("You are a coding agent working in the user's repository. Call one tool per turn:\n"
          '<tool name="read">\n<arg name="path">PATH</arg>\n</tool>\nRepository demo: app.py, test_app.py')
TOOL_RESULTS = [
    '<result tool="run_tests" ok="false" exit_code="1">\nFAILED test_app.py::test_add - assert -1 == 3\n</result>',
    '<result tool="read" ok="true">\ndef add(a, b):\n    return a - b\n</result>',
    '<result tool="edit" ok="true">\napp.py: 1 line changed\n</result>',
    '<result tool="run_tests" ok="true" exit_code="0">\n1 passed in 0.01s\n</result>',
]


def test_prefix_cache_leaves_tokens_and_logprobs_unchanged_over_an_agent_conversation(small_model):
    """Five turns that grow as the agent's do (system, request, reply, tool result, ...): the
    cached engine feeds only the new tokens and samples what a full prefill samples."""
    from continualcode.engines.embedded import EmbeddedEngine

    cached = EmbeddedEngine(small_model, dtype="fp32")
    plain = EmbeddedEngine(small_model, dtype="fp32", prefix_cache=False)
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": "The tests fail. Find and fix the bug."}]
    params = SamplingParams(max_new_tokens=16)
    previous_prompt = 0
    for turn in range(5):
        with_cache, without = cached.generate(messages, params), plain.generate(messages, params)
        assert with_cache.token_ids == without.token_ids, turn
        assert with_cache.logprobs == pytest.approx(without.logprobs, abs=1e-4)
        assert without.extra["cached_prompt_tokens"] == 0
        reused = with_cache.extra["cached_prompt_tokens"]
        assert reused >= previous_prompt if turn else reused == 0  # the whole previous prompt came from the cache
        assert reused < with_cache.prompt_tokens
        previous_prompt = with_cache.prompt_tokens
        if turn < 4:
            messages = messages + [{"role": "assistant", "content": with_cache.text},
                                   {"role": "user", "content": TOOL_RESULTS[turn]}]
    assert cached.score(messages, with_cache.token_ids) == pytest.approx(with_cache.logprobs, abs=1e-4)


def test_a_swap_or_another_conversation_drops_the_prefix_cache(small_model, random_adapter):
    from continualcode.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine(small_model, dtype="fp32")
    params = SamplingParams(max_new_tokens=6)
    engine.generate(MESSAGES, params)
    assert engine.generate(MESSAGES, params).extra["cached_prompt_tokens"] == len(engine.render(MESSAGES)) - 1
    engine.load_adapter(random_adapter[0], "v0001")
    adapted = engine.generate(MESSAGES, params)
    assert adapted.extra["cached_prompt_tokens"] == 0  # keys and values of the old weights are never reused
    assert adapted.logprobs == pytest.approx(engine.score(MESSAGES, adapted.token_ids), abs=1e-4)
    other = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Bonjour"}]
    assert engine.generate(other, params).extra["cached_prompt_tokens"] == 0  # a tiny common prefix: dropped
    with engine.exclusive():
        pass  # whoever held the lock may have changed the weights
    assert engine.generate(other, params).extra["cached_prompt_tokens"] == 0


def test_base_sampling_while_an_adapter_is_served_matches_the_base_model(small_model, random_adapter):
    """SamplingParams(base=True): the repair flow's hedged rounds sample the base weights with the adapter
    loaded: the same tokens as before it was loaded, adapter_version None, and no cache shared with the adapter."""
    from continualcode.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine(small_model, dtype="fp32")
    params = SamplingParams(max_new_tokens=12, temperature=0.8, seed=5)
    before = engine.sample(MESSAGES, params, 3)
    engine.load_adapter(random_adapter[0], "v0001")
    adapted = engine.sample(MESSAGES, params, 3)
    base = engine.sample(MESSAGES, dataclasses.replace(params, base=True), 3)
    assert [c.token_ids for c in base] == [c.token_ids for c in before]
    assert base[0].extra["cached_prompt_tokens"] == 0  # the adapter's keys and values are not the base's
    assert {c.adapter_version for c in base} == {None} and {c.adapter_version for c in adapted} == {"v0001"}
    assert [c.token_ids for c in adapted] != [c.token_ids for c in before]
    assert engine.adapter_version == "v0001"  # still served
    assert engine.sample(MESSAGES, params, 3)[0].token_ids == adapted[0].token_ids


POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


def test_sample_decodes_n_candidates_in_one_batch(small_engine):
    params = SamplingParams(max_new_tokens=16, temperature=0.7, seed=11)
    candidates = small_engine.sample(POEM, params, 4)
    assert len(candidates) == 4 and len({tuple(c.token_ids) for c in candidates}) > 1
    for candidate in candidates:
        assert candidate.text == small_engine.tokenizer.decode(candidate.token_ids, skip_special_tokens=True)
        assert len(candidate.token_ids) == len(candidate.logprobs) <= 16
        # the raw (untempered) log-probs the sampler recorded, as a teacher-forced pass scores them
        assert candidate.logprobs == pytest.approx(small_engine.score(POEM, candidate.token_ids), abs=1e-3)
    again = small_engine.sample(POEM, params, 4)
    assert [c.token_ids for c in again] == [c.token_ids for c in candidates]  # seeded: reproducible
    assert again[0].extra["cached_prompt_tokens"] == len(small_engine.render(POEM)) - 1  # one prefill, reused
    greedy = small_engine.generate(POEM, SamplingParams(max_new_tokens=8))
    assert [c.token_ids for c in small_engine.sample(POEM, SamplingParams(max_new_tokens=8), 2)] == [greedy.token_ids] * 2


def test_sample_cuts_each_row_at_its_own_stop_string(small_engine):
    from continualcode.engines.prompt import cut_at_stop

    stops = (",", ".")
    free = small_engine.sample(POEM, SamplingParams(max_new_tokens=24, temperature=0.7, seed=11), 4)
    cut = small_engine.sample(POEM, SamplingParams(max_new_tokens=24, temperature=0.7, seed=11, stop=stops), 4)
    assert len({len(c.token_ids) for c in cut}) > 1  # rows stopped at different steps
    for whole, row in zip(free, cut):
        # a finished row no longer changes, the others continue exactly as without stop strings
        assert row.token_ids == whole.token_ids[: len(row.token_ids)]
        assert (row.text, row.finish_reason == "stop") == cut_at_stop(whole.text, stops)


def test_sample_honours_cancel_between_steps(small_engine):
    cancel = threading.Event()
    forwards: list[int] = []

    def count_forwards(*_) -> None:
        forwards.append(1)
        if len(forwards) == 3:
            cancel.set()

    hook = small_engine.model.register_forward_hook(count_forwards)
    try:
        rows = small_engine.sample(POEM, SamplingParams(max_new_tokens=32, temperature=0.7, seed=1), 3, cancel=cancel)
    finally:
        hook.remove()
    assert [(len(r.token_ids), r.finish_reason) for r in rows] == [(3, "cancelled")] * 3


def test_a_given_prefix_starts_every_row_and_is_scored_like_the_rest(small_engine):
    """``SamplingParams.prefix`` forces the reply's first tokens; they count as the reply's own."""
    prefix = "The sea is"
    params = SamplingParams(max_new_tokens=12, temperature=0.7, seed=3, prefix=prefix)
    for completion in small_engine.sample(POEM, params, 2) + [small_engine.generate(POEM, params)]:
        assert completion.text.startswith(prefix)
        given = small_engine.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        assert completion.token_ids[: len(given)] == given
        assert len(completion.token_ids) == len(completion.logprobs) <= 12 + len(given)
        # a teacher-forced pass over the whole reply (prefix included) agrees with what was recorded
        assert completion.logprobs == pytest.approx(small_engine.score(POEM, completion.token_ids), abs=1e-3)
