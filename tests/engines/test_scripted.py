from __future__ import annotations

import pytest

from continualcode.engines.base import Engine, EngineError, SamplingParams
from continualcode.engines.scripted import ScriptedEngine

ASK = [{"role": "user", "content": "fix it"}]


def test_generate_replays_the_script_cut_at_the_stop_strings():
    engine = ScriptedEngine(['<tool name="read">x</tool> trailing', "done"])
    assert isinstance(engine, Engine)
    pieces: list[str] = []
    first = engine.generate(ASK, SamplingParams(stop=("</tool>",)), on_text=pieces.append)
    assert first.text == '<tool name="read">x</tool>' == "".join(pieces)
    assert first.token_ids == list(first.text.encode()) and first.finish_reason == "stop"
    assert engine.generate(ASK, SamplingParams()).text == "done"
    with pytest.raises(EngineError, match="no replies left"):
        engine.generate(ASK, SamplingParams())


def test_sample_returns_the_next_n_replies_each_cut_at_the_stop_strings():
    engine = ScriptedEngine(["a</tool>b", "c", "d</tool>", "e"])
    candidates = engine.sample(ASK, SamplingParams(stop=("</tool>",)), 3)
    assert [c.text for c in candidates] == ["a</tool>", "c", "d</tool>"]
    assert all(c.logprobs == [0.0] * len(c.token_ids) for c in candidates)
    assert len(engine.calls) == 3
    with pytest.raises(EngineError, match="1 replies left, not 2"):
        engine.sample(ASK, SamplingParams(), 2)
    assert engine.generate(ASK, SamplingParams()).text == "e"  # a refused sample consumed nothing


def test_sample_wraps_around_a_looping_script():
    engine = ScriptedEngine(["x", "y"], loop=True)
    assert [c.text for c in engine.sample(ASK, SamplingParams(), 5)] == ["x", "y", "x", "y", "x"]
