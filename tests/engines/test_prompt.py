"""The one prompt renderer and the one stop rule (continualcode.engines.prompt)."""

from __future__ import annotations

import pytest

from continualcode.engines.base import SamplingParams
from continualcode.engines.prompt import cut_at_stop, find_stop, render_prompt
from continualcode.engines.scripted import ScriptedEngine
from continualcode.learning.batch import build_batch
from continualcode.learning.types import SDPOConfig, TrainingExample

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "You are a coding agent. <tool name=\"read_file\">"},
     {"role": "user", "content": "Fix app.py:\n\n  def add(a, b):\n\treturn a - b\n"},
     {"role": "assistant", "content": "I'll read it.\n<tool name=\"read_file\">\n<arg name=\"path\">app.py</arg>\n</tool>"},
     {"role": "user", "content": "<result tool=\"read_file\" ok=\"true\">\n   1| déjà vu 日本 ü\n</result>"}],
]


def test_find_stop_keeps_the_earliest_stop_string():
    assert find_stop("abc</tool>def</tool>", ("</tool>",)) == len("abc</tool>")
    assert find_stop("one two three", ("three", "two")) == len("one two")
    assert find_stop("nothing here", ("</tool>",)) is None
    assert find_stop("empty stop", ("",)) is None
    assert cut_at_stop("x</tool>tail", ("</tool>",)) == ("x</tool>", True)
    assert cut_at_stop("no stop", ("</tool>",)) == ("no stop", False)


def test_the_scripted_engine_obeys_the_stop_rule():
    engine = ScriptedEngine(['call <tool name="grep">\n<arg name="pattern">x</arg>\n</tool> and more text'])
    completion = engine.generate([{"role": "user", "content": "hi"}], SamplingParams(stop=("</tool>",)))
    assert completion.text.endswith("</tool>") and "more text" not in completion.text
    assert completion.token_ids == list(completion.text.encode())


@pytest.fixture(scope="module", params=["smollm2-135m", "qwen2.5-coder-0.5b"])
def tokenizer(request):
    from transformers import AutoTokenizer

    from continualcode.models import resolve

    return AutoTokenizer.from_pretrained(resolve(request.param).path)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_sampling_and_training_condition_on_identical_prompt_ids(tokenizer, messages):
    """The importance ratio compares a token's sampled log-prob with its training log-prob: the
    training batch must hold exactly the ids the engines render (both bundled tokenizers)."""
    sampled_prompt = render_prompt(tokenizer, messages)
    response = tokenizer("Sure.", add_special_tokens=False)["input_ids"]
    batch = build_batch(tokenizer, [TrainingExample(messages, response, feedback="Shorter.")], SDPOConfig())
    row = batch.student_ids[0][batch.student_attention[0].bool()].tolist()
    assert row == sampled_prompt + response
    assert sampled_prompt[-1] != response[0] or len(sampled_prompt) > 1


@pytest.mark.slow
def test_sampler_logprobs_match_the_training_forward(small_engine):
    """End to end on SmolLM2 (fp32): the log-probs the embedded engine recorded while sampling are the
    ones the training forward gives the same tokens, so every importance ratio starts at 1."""
    import torch

    from continualcode.learning.batch import run_student

    messages = CONVERSATIONS[1]
    completion = small_engine.generate(messages, SamplingParams(max_new_tokens=12, temperature=0.0))
    example = TrainingExample(messages, completion.token_ids, feedback="x")
    batch = build_batch(small_engine.tokenizer, [example], SDPOConfig())
    logits = run_student(small_engine.model, batch, train=False).float()
    logp = torch.log_softmax(logits, -1)[0].gather(-1, batch.response_ids[0][:, None])[:, 0]
    assert torch.allclose(logp, torch.tensor(completion.logprobs), atol=2e-3), (logp, completion.logprobs)
