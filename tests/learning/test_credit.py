"""The credit view: its numbers are the trainer's token advantages, on the trainer's inputs.

Slow tests compare against an independent computation on the real SmolLM2: chat-template the
student context x and the teacher context x' (teacher_messages), run the model on each followed
by y, and call sdpo.token_advantages. Fast tests cover which example is shown, the trainer's
example rule, rendering and the messages when credit is unavailable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from rich.style import Style

from continualcode.agent.feedback import FeedbackRecorder
from continualcode.engines.scripted import ScriptedEngine
from continualcode.learning.credit import (
    NEUTRAL_BAND,
    Alternative,
    CreditUnavailable,
    CreditView,
    TokenCredit,
    credit_for_message,
    credit_for_turn,
    example_row,
    judged_turns,
    token_spans,
)
from continualcode.learning.examples import training_example
from continualcode.learning.lora import lora_parameters
from continualcode.learning.sdpo import token_advantages
from continualcode.learning.teacher import teacher_messages
from continualcode.store.db import Store
from continualcode.ui.credit_view import advantage_style, credit_text, render_credit

X = [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Is water wet? Answer YES or NO."}]
REPLY = "Water is a liquid that makes things wet, so the answer is yes."


@pytest.fixture(scope="module")
def tokenizer(small_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(small_model.path)


def judged_reply(store: Store, tokenizer, *, kind: str = "denial", feedback: str = "I said YES or NO only.",
                 learn: bool = True, session: int | None = None) -> tuple[int, int]:
    """A stored conversation X → REPLY (sampled ids + eos) with one feedback event; (session, reply id)."""
    session = session or store.start_session("/tmp", "smollm2-135m", "embedded")
    for message in X:
        store.add_message(session, message["role"], message["content"])
    ids = tokenizer(REPLY, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    reply = store.add_message(session, "assistant", REPLY, token_ids=ids, logprobs=[-1.0] * len(ids))
    FeedbackRecorder(store, learn=learn).record(kind, feedback, reply)
    return session, reply


def reference(model, tokenizer, messages, feedback, template, y_ids):
    """(advantages, teacher logits) computed directly: one unpadded forward per context."""
    def logits(conversation):
        prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        with torch.no_grad():
            out = model(input_ids=torch.tensor([prompt + y_ids])).logits[0].float()
        return out[len(prompt) - 1: -1]

    student = logits(messages)
    teacher = logits(teacher_messages(messages, feedback, None, template))
    return token_advantages(student[None], teacher[None], torch.tensor([y_ids]))[0], teacher


# -- fast --------------------------------------------------------------------------------------

def test_training_example_keeps_sampled_ids_or_retokenizes(tmp_path, tokenizer):
    """The rule the trainer and the credit view share (continualcode.learning.examples.training_example)."""
    store = Store(tmp_path / "store.db")
    _, reply = judged_reply(store, tokenizer)
    _, other = judged_reply(store, tokenizer, kind="followup", feedback="shorter please")
    rows = [example_row(store, reply), example_row(store, other),
            {**example_row(store, reply), "redacted": 1},                        # y changed: re-tokenize
            {**example_row(store, reply), "y_token_ids": [1, 2, 3]},             # ids no longer spell y
            {**example_row(store, reply), "y_token_ids": None}]
    for row in rows[:2]:
        example = training_example(row, tokenizer)
        assert example.response_ids == row["y_token_ids"] and example.old_logprobs == row["y_logprobs"]
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    for row in rows[2:]:
        example = training_example(row, tokenizer)
        assert example.response_ids == tokenizer(row["y"], add_special_tokens=False)["input_ids"] + [eos]
        assert example.old_logprobs is None
    assert training_example(rows[0], tokenizer).template == "reprompt"
    assert training_example(rows[1], tokenizer).template == "hindsight"


def test_which_example_is_shown(tmp_path, tokenizer):
    store = Store(tmp_path / "store.db")
    session, first = judged_reply(store, tokenizer)
    _, second = judged_reply(store, tokenizer, kind="followup", feedback="no", session=session)
    assert [m["id"] for m in judged_turns(store, session)] == [second, first]  # newest first
    FeedbackRecorder(store).record("manual", "and be brief", second)
    assert example_row(store, second)["f"] == "and be brief"  # the latest example of the message
    earliest = store.examples_for_message(second)[0]["id"]
    assert example_row(store, second, earliest)["f"] == "no"
    with pytest.raises(CreditUnavailable, match="not an assistant turn"):
        example_row(store, first - 1)
    with pytest.raises(CreditUnavailable, match="does not judge"):
        example_row(store, first, earliest)
    _, quiet = judged_reply(store, tokenizer, learn=False)
    with pytest.raises(CreditUnavailable, match="learning was off"):
        example_row(store, quiet)
    engine = SimpleNamespace(model=object(), model_name="test")
    with pytest.raises(CreditUnavailable, match="only 2 turn"):
        credit_for_turn(engine, store, None, session, 3)
    with pytest.raises(CreditUnavailable, match="no assistant turn"):
        credit_for_turn(engine, store, None, store.start_session("/tmp", "m", "e"))


def test_engines_without_weights_say_why(tmp_path, tokenizer):
    store = Store(tmp_path / "store.db")
    session, reply = judged_reply(store, tokenizer)
    with pytest.raises(CreditUnavailable, match="scripted engine.*--engine embedded"):
        credit_for_turn(ScriptedEngine([]), store, None, session)
    remote = SimpleNamespace(model_name="Qwen2.5-Coder-7B", adapter_version=None)
    with pytest.raises(CreditUnavailable, match="another process.*continualcode credit MESSAGE_ID"):
        credit_for_message(remote, tokenizer, store, reply)


def test_token_spans_join_to_the_text(tokenizer):
    text = "héllo wörld 😀 done\n  x = 1"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans = token_spans(tokenizer, ids)
    assert len(spans) == len(ids) and "".join(spans) == text
    assert "" in spans and any("😀" in s for s in spans)  # a split character belongs to its last byte token


def synthetic_view(advantages: list[float]) -> CreditView:
    tokens = [TokenCredit(i, i, f"t{i}", a, a - 1.0, -1.0, [Alternative(9, "x", 0.5)]) for i, a in enumerate(advantages)]
    return CreditView(1, 1, "f", None, "reprompt", True, None, "student", "teacher", tokens)


def test_colours_follow_the_sign_of_the_advantage():
    assert advantage_style(0.0) == advantage_style(NEUTRAL_BAND / 2) == advantage_style(-NEUTRAL_BAND / 2) == ""

    def background(advantage):
        return Style.parse(advantage_style(advantage)).bgcolor.get_truecolor()

    for advantage in (-0.2, -0.5, -3.0):
        red, green, blue = background(advantage)
        assert red > blue and red > green, advantage
    for advantage in (0.2, 0.5, 3.0):
        red, green, blue = background(advantage)
        assert blue > red, advantage
    assert Style.parse(advantage_style(-3.0)).bold and not Style.parse(advantage_style(-0.5)).bold
    view = synthetic_view([-2.0, 0.01, 0.4])
    text = credit_text(view, selected=1)
    assert text.plain == "t0t1t2"
    styles = [str(span.style) for span in text.spans]
    assert styles == [advantage_style(-2.0), "reverse", advantage_style(0.4)]
    console = Console(width=100, record=True, file=open(os.devnull, "w"))
    console.print(render_credit(view))
    out = console.export_text()
    assert "where the teacher disagrees most" in out and "'x' 0.50" in out and "mean A -0.530" in out
    payload = json.loads(json.dumps(view.to_json()))
    assert [t["advantage"] for t in payload["tokens"]] == [-2.0, 0.01, 0.4]
    assert payload["tokens"][0]["teacher_top"] == [{"id": 9, "text": "x", "prob": 0.5}]


# -- slow: real SmolLM2 ------------------------------------------------------------------------

@pytest.fixture
def engine(small_model):
    from continualcode.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(small_model, dtype="fp32")


@pytest.mark.slow
@pytest.mark.parametrize("kind,template", [("denial", "reprompt"), ("followup", "hindsight")])
def test_credit_equals_token_advantages_on_the_trainers_inputs(tmp_path, engine, kind, template):
    store = Store(tmp_path / "store.db")
    _, reply = judged_reply(store, engine.tokenizer, kind=kind)
    view = credit_for_message(engine, None, store, reply, top_k=4)
    y_ids = store.message(reply)["token_ids"]
    feedback = example_row(store, reply)["f"]
    expected, teacher = reference(engine.model, engine.tokenizer, X, feedback, template, y_ids)
    got = torch.tensor([t.advantage for t in view.tokens])
    assert view.template == template and [t.id for t in view.tokens] == y_ids
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert expected.abs().max() > 0.05  # the feedback really is in the teacher's context
    top = torch.softmax(teacher, -1).topk(4)
    for t, token in enumerate(view.tokens):
        assert [a.id for a in token.teacher_top] == top.indices[t].tolist()
        assert [a.prob for a in token.teacher_top] == pytest.approx(top.values[t].tolist(), abs=1e-5)
        assert token.advantage == pytest.approx(token.teacher_logprob - token.student_logprob, abs=1e-5)
    assert "".join(t.text for t in view.tokens) == REPLY + "<|im_end|>"
    assert "base model" in view.student and "base model" in view.teacher
    bare = credit_for_message(engine.model, engine.tokenizer, store, reply, top_k=4)  # a model, not an engine
    assert [t.advantage for t in bare.tokens] == pytest.approx([t.advantage for t in view.tokens], abs=1e-6)


@pytest.mark.slow
def test_live_adapter_is_the_student_and_its_saved_ema_teacher_the_teacher(tmp_path, engine, small_model):
    from transformers import AutoModelForCausalLM

    from continualcode.adapters.presets import preset_for
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.learning.lora import attach_lora

    torch.manual_seed(0)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(small_model.path, dtype=torch.float32),
                        preset_for(small_model.name)).eval()
    params = lora_parameters(model)
    with torch.no_grad():
        for name, param in params.items():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    student_state = {k: p.detach().clone() for k, p in params.items()}
    teacher_state = {k: v + 0.02 * torch.randn_like(v) for k, v in student_state.items()}
    registry = AdapterRegistry(tmp_path / "adapters")
    registry.publish(model, parent=None, base_model=small_model.name, base_checksum=None, examples=[],
                     metrics={}, teacher_tensors=teacher_state)
    engine.load_adapter(registry.path("v0001"), "v0001")

    store = Store(tmp_path / "store.db")
    _, reply = judged_reply(store, engine.tokenizer)
    y_ids = store.message(reply)["token_ids"]
    serving_before = engine.score(X, y_ids)
    view = credit_for_message(engine, None, store, reply, registry=registry)
    assert engine.score(X, y_ids) == pytest.approx(serving_before, abs=1e-6)  # serving weights restored
    assert view.adapter_version == "v0001" and "EMA teacher saved with v0001" in view.teacher

    feedback = example_row(store, reply)["f"]
    prompt = teacher_messages(X, feedback, None, "reprompt")

    def logits(conversation, state):
        with torch.no_grad():
            for key, param in params.items():
                param.copy_(state[key])
        ids = engine.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids + y_ids])).logits[0, len(ids) - 1: -1].float()

    expected = token_advantages(logits(X, student_state)[None], logits(prompt, teacher_state)[None],
                                torch.tensor([y_ids]))[0]
    got = torch.tensor([t.advantage for t in view.tokens])
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    same_weights = token_advantages(logits(X, student_state)[None], logits(prompt, student_state)[None],
                                    torch.tensor([y_ids]))[0]
    assert not torch.allclose(got, same_weights, atol=1e-3)  # the EMA tensors, not the live ones, were used


@pytest.mark.slow
def test_slash_credit_and_cli_json_show_the_same_numbers(git_repo, engine):
    from continualcode.config import Settings
    from continualcode.session import open_session
    from continualcode.ui.slash import SlashError, run_slash

    settings = Settings(model="smollm2-135m", engine="embedded", dtype="fp32")
    session = open_session(git_repo, settings, approver=None, engine=engine, start_trainer=False)
    try:
        _, reply = judged_reply(session.store, engine.tokenizer, session=session.session_id)
        view = credit_for_turn(engine, session.store, session.registry, session.session_id)
        console = Console(width=120, record=True, file=open(os.devnull, "w"))
        console.print(run_slash(session, "/credit"))
        out = console.export_text()
        assert "Water is a liquid" in out and "I said YES or NO only." in out and "mean A" in out
        with pytest.raises(SlashError, match="only 1 turn"):
            run_slash(session, "/credit 2")
        with pytest.raises(SlashError, match="usage: /credit"):
            run_slash(session, "/credit latest")
    finally:
        session.close()

    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cli = [sys.executable, "-m", "continualcode", "--repo", str(git_repo), "--model", "smollm2-135m", "--dtype", "fp32"]
    done = subprocess.run([*cli, "credit", str(reply), "--json"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["message_id"] == reply and payload["template"] == "reprompt"
    assert [t["id"] for t in payload["tokens"]] == [t.id for t in view.tokens]
    assert [t["advantage"] for t in payload["tokens"]] == pytest.approx([t.advantage for t in view.tokens], abs=1e-4)
    assert len(payload["tokens"][0]["teacher_top"]) == 5 and {"id", "text", "prob"} <= set(payload["tokens"][0]["teacher_top"][0])

    scripted = subprocess.run([*cli, "--engine", "scripted", "credit", str(reply)], capture_output=True, text=True,
                              env=env, timeout=120)
    assert scripted.returncode == 1 and "scripted engine" in scripted.stderr
    missing = subprocess.run([*cli, "credit", "999"], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "not an assistant turn" in missing.stderr
