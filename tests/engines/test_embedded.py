from __future__ import annotations

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
