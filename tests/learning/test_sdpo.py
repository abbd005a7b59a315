"""SDPO core: the loss against a slow float64 reference, the teacher context, the teacher weights,
and (slow) real SmolLM2 steps that learn in the teacher's direction without collapsing."""

from __future__ import annotations

import itertools
import math
import re
import zlib

import pytest
import torch

from continualcode.learning.lora import lora_parameters
from continualcode.learning.sdpo import (
    TeacherState,
    build_batch,
    distillation_loss,
    make_optimizer,
    replay_row_weights,
    response_logits,
    sdpo_step,
    sft_step,
    teacher_messages,
)
from continualcode.learning.teacher import strip_thinking
from continualcode.learning.types import REPROMPT_TEMPLATE, SDPOConfig, TrainingExample

# ----------------------------------------------------------------- reference loss


def reference_loss(student, teacher, response_ids, mask, alpha, top_k, add_tail, is_clip, old, support="student"):
    """SDPO.md's loss written out token by token with explicit sums (float64, autograd-able).

    ``support="union"``: the student's top-K ids, then each of the teacher's top-K ids not already
    among them; ``"full"``: every id."""
    B, T, V = student.shape
    total, count = student.new_zeros(()), 0
    for b in range(B):
        for t in range(T):
            if mask[b, t] == 0:
                continue
            count += 1
            zs, zt = student[b, t], teacher[b, t].detach()
            log_zs = torch.log(sum(torch.exp(zs[v]) for v in range(V)))
            log_zt = torch.log(sum(torch.exp(zt[v]) for v in range(V)))
            ps = [torch.exp(zs[v] - log_zs) for v in range(V)]
            pt = [torch.exp(zt[v] - log_zt) for v in range(V)]
            if top_k is None or support == "full":
                p, q = ps, pt
            else:
                ids = sorted(range(V), key=lambda v: -float(zs[v].detach()))[:top_k]
                if support == "union":
                    ids += [v for v in sorted(range(V), key=lambda v: -float(zt[v]))[:top_k] if v not in ids]
                p, q = [ps[v] for v in ids], [pt[v] for v in ids]
                if add_tail:
                    floor = 1.0 - math.exp(-1e-7)  # the reference clamps log Σp at -1e-7
                    p = p + [torch.clamp(1.0 - sum(p), min=floor)]
                    q = q + [torch.clamp(1.0 - sum(q), min=floor)]
                else:
                    p = [x / sum(p) for x in p]
                    q = [x / sum(q) for x in q]
            if alpha == 0:
                d = sum(q[i] * (torch.log(q[i]) - torch.log(p[i])) for i in range(len(p)))
            elif alpha == 1:
                d = sum(p[i] * (torch.log(p[i]) - torch.log(q[i])) for i in range(len(p)))
            else:
                m = [(1 - alpha) * p[i] + alpha * q[i] for i in range(len(p))]
                d = (1 - alpha) * sum(p[i] * torch.log(p[i] / m[i]) for i in range(len(p))) \
                    + alpha * sum(q[i] * torch.log(q[i] / m[i]) for i in range(len(p)))
            if is_clip is not None:
                now = float(torch.log(ps[int(response_ids[b, t])]).detach())
                d = d * min(math.exp(min(max(now - float(old[b, t]), -20.0), 20.0)), is_clip)
            total = total + d
    return total / max(count, 1)


def random_case(seed: int, B: int = 3, T: int = 4, V: int = 7):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    teacher = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2
    response_ids = torch.randint(0, V, (B, T), generator=g)
    mask = (torch.rand(B, T, generator=g) > 0.3).double()
    mask[1] = 0.0  # an empty row counts nothing
    mask[0, 0] = 1.0  # and at least one token counts (seed 44 masks every token otherwise)
    old = torch.log_softmax(student.detach() + 0.7 * torch.randn(B, T, V, generator=g, dtype=torch.float64), -1)
    old = old.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
    return student, teacher, response_ids, mask, old


# add_tail only matters with top_k, so full-vocabulary cases appear once.
GRID = [(a, k, tail, clip) for a, k, tail, clip in itertools.product([0.0, 0.25, 0.5, 1.0], [None, 1, 5],
                                                                      [True, False], [None, 2.0])
        if k is not None or tail]


@pytest.mark.parametrize("alpha,top_k,add_tail,is_clip", GRID)
def test_loss_and_gradient_match_reference(alpha, top_k, add_tail, is_clip):
    check_against_reference(alpha, top_k, add_tail, is_clip, "student")


# The union support over the same grid (full vocabulary = top_k None, covered above), and "full" once.
UNION_GRID = [(a, k, tail, clip, "union") for a, k, tail, clip in GRID if k is not None] + \
    [(0.5, 3, True, None, "full"), (0.0, 1, False, 2.0, "full")]


@pytest.mark.parametrize("alpha,top_k,add_tail,is_clip,support", UNION_GRID)
def test_union_and_full_support_match_reference(alpha, top_k, add_tail, is_clip, support):
    check_against_reference(alpha, top_k, add_tail, is_clip, support)


def check_against_reference(alpha, top_k, add_tail, is_clip, support):
    # A seed that is the same in every process (hash() of a tuple holding None or a str is not).
    seed = zlib.crc32(repr((alpha, top_k, add_tail, is_clip, support)).encode()) % 1000
    student, teacher, ids, mask, old = random_case(seed=seed)
    loss, stats = distillation_loss(student, teacher, ids, mask, alpha=alpha, top_k=top_k, add_tail=add_tail,
                                    is_clip=is_clip, old_logprobs=old if is_clip else None, support=support)
    (grad,) = torch.autograd.grad(loss, student)
    expected = reference_loss(student, teacher, ids, mask, alpha, top_k, add_tail, is_clip, old, support)
    (expected_grad,) = torch.autograd.grad(expected, student)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)
    assert torch.allclose(grad, expected_grad, rtol=1e-7, atol=1e-12)
    assert grad[1].abs().max() == 0  # the all-masked row gets no gradient
    assert stats["tokens"] == int(mask.sum())
    assert stats["example_tokens"] == mask.sum(-1).long().tolist()
    rows = [reference_loss(student[b:b + 1], teacher[b:b + 1], ids[b:b + 1], mask[b:b + 1], alpha, top_k, add_tail,
                           is_clip, old[b:b + 1], support).item() for b in range(len(mask))]
    assert stats["example_loss"] == pytest.approx(rows, rel=1e-9, abs=1e-12)


def test_replay_rows_weigh_as_a_group_not_by_their_token_count():
    """Issue 15, lever 4: with replay rows in a step the loss is mean(feedback tokens) + w · mean(replay
    tokens); a plain token-mean would give the one judged reply a fifth of the gradient beside four replay
    answers. Rows 0 and 2 are replay, row 1 is empty, row 3 is the feedback."""
    student, teacher, ids, mask, old = random_case(seed=7, B=4)
    mask[3] = 1.0
    examples = [TrainingExample([], [1], anchor=True), TrainingExample([], [1]), TrainingExample([], [1], anchor=True),
                TrainingExample([], [1], feedback="f")]
    weights = replay_row_weights(examples, mask, 0.5)
    loss, _ = distillation_loss(student, teacher, ids, mask, alpha=0.0, top_k=5, row_weights=weights)
    (grad,) = torch.autograd.grad(loss, student)

    def group(rows):
        return reference_loss(student[rows], teacher[rows], ids[rows], mask[rows], 0.0, 5, True, None, old[rows])
    expected = group([1, 3]) + 0.5 * group([0, 2])
    (expected_grad,) = torch.autograd.grad(expected, student)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    assert torch.allclose(grad, expected_grad, rtol=1e-7, atol=1e-12)
    token_mean, _ = distillation_loss(student, teacher, ids, mask, alpha=0.0, top_k=5)
    assert token_mean.item() != pytest.approx(loss.item())  # the weighting changes the loss
    # No replay rows, or nothing but replay rows: the plain token-mean.
    assert replay_row_weights(examples[1:2] + examples[3:], mask[:2], 1.0) is None
    assert replay_row_weights(examples[:1], mask[:1], 1.0) is None
    with pytest.raises(ValueError, match="replay_weight"):
        SDPOConfig(replay_weight=-1.0)


def test_union_support_pulls_the_student_toward_a_token_only_the_teacher_ranks_high():
    """Issue 15: the teacher's preferred token (the `{` of a JSON answer) sits far outside the student's
    top-K. Under the student's support it hides in the tail bucket with every other unlikely token, so no
    alpha can single it out; under the union it has its own entry, and forward KL (alpha 0) pulls the
    student to it. For alpha > 0 the gradient on a token is proportional to the student's own probability
    of it (reverse KL and the generalized JSD alike), so support alone does not help there: the direction
    lever (alpha) and the support lever work together."""
    V, target = 50, 37
    student = torch.zeros(1, 1, V, dtype=torch.float64)
    student[0, 0, :5] = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0])   # top-5: tokens 0-4
    student[0, 0, target] = -4.0                                  # the student almost never emits it
    teacher = student.clone()
    teacher[0, 0, target] = 8.0                                   # the teacher's first choice
    ids, mask = torch.tensor([[0]]), torch.ones(1, 1)

    def raised(support: str, alpha: float, steps: int = 20, lr: float = 0.5) -> float:
        logits = student.clone()
        for _ in range(steps):
            logits.requires_grad_(True)
            loss, _ = distillation_loss(logits, teacher, ids, mask, alpha=alpha, top_k=5, support=support)
            (grad,) = torch.autograd.grad(loss, logits)
            logits = (logits - lr * grad).detach()
        p = torch.softmax(logits[0, 0], -1)
        return float(torch.log(p[target]) - torch.log(p[10]))  # against a tail token the teacher does not prefer

    start = float(student[0, 0, target] - student[0, 0, 10])
    for alpha in (0.0, 0.5, 1.0):
        # In the tail bucket each token's logit moves in proportion to its own probability: the rare
        # target falls behind the other tail tokens instead of rising toward the teacher.
        assert raised("student", alpha) < start + 0.01
        assert raised("union", alpha) == pytest.approx(raised("full", alpha), abs=0.01)
    assert raised("union", 0.0) > start + 5.0   # p(target): 1e-4 -> 0.25 in 20 steps
    assert raised("full", 0.0) > start + 5.0


# -------------------------------------------------------------- teacher context

X = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Fix the bug."},
     {"role": "assistant", "content": "calling a tool"}, {"role": "user", "content": "tool output: ok"}]


def test_reprompt_template_is_the_reference_text():
    out = teacher_messages(X, feedback="tests fail: test_x")
    assert out[:3] == X[:3]
    assert out[3]["content"] == (
        "tool output: ok\nThe following is feedback from your unsuccessful earlier attempt:\n\n"
        "tests fail: test_x\n\n\n\nCorrectly solve the original question.\n")
    assert X[3]["content"] == "tool output: ok"  # the input is not mutated
    with_solution = teacher_messages(X, feedback="ignored by default", solution="<think>hmm</think>the fix")
    assert with_solution[3]["content"] == REPROMPT_TEMPLATE.format(
        prompt="tool output: ok", solution="\nCorrect solution:\n\nthe fix\n\n", feedback="")
    both = teacher_messages(X, feedback="why", solution="fix", feedback_with_solution=True)
    assert "fix" in both[3]["content"] and "why" in both[3]["content"]


def test_hindsight_template_appends_the_next_user_message_without_calling_it_a_failure():
    out = teacher_messages(X, feedback="  lowercase please ", template="hindsight")
    text = out[3]["content"]
    assert text.startswith("tool output: ok\n\n") and text.rstrip().endswith("lowercase please")
    assert "unsuccessful" not in text and "Correctly solve" not in text


def test_prefix_template_puts_the_feedback_before_the_request():
    out = teacher_messages(X, feedback="  lowercase please ", template="prefix")
    assert out[3]["content"] == "lowercase please\n\ntool output: ok" and out[:3] == X[:3]
    with_solution = teacher_messages(X, feedback="f", solution="s", template="prefix", feedback_with_solution=True)
    assert with_solution[3]["content"].startswith("f\n\ntool output: ok") and "s" in with_solution[3]["content"]
    assert SDPOConfig(template="prefix").template == "prefix"


def test_teacher_messages_edge_cases():
    assert teacher_messages(X) == X and teacher_messages(X, feedback="  ") == X
    with pytest.raises(ValueError, match="no user message"):
        teacher_messages([{"role": "system", "content": "s"}], feedback="f")
    with pytest.raises(ValueError, match="unknown teacher template"):
        teacher_messages(X, feedback="f", template="nope")
    assert strip_thinking("<think>a\nb</think>\nanswer") == "answer"
    assert strip_thinking("answer<think>unfinished") == "answer"


# -------------------------------------------------------------- teacher weights


def _toy_peft(seed: int = 0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    return get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"], init_lora_weights=True))


def test_ema_update_is_per_tensor_lerp_of_lora_a_and_b():
    model = _toy_peft()
    teacher = TeacherState.create(model, "ema", rate=0.05)
    params = lora_parameters(model)
    assert set(teacher.tensors) == set(params) and len(params) == 4
    before = {k: t.clone() for k, t in teacher.tensors.items()}
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn_like(p))
    teacher.update(model)
    for key, param in params.items():
        assert torch.allclose(teacher.tensors[key], 0.95 * before[key] + 0.05 * param.detach(), atol=1e-7)


def test_teacher_modes_run_the_right_weights_and_restore_the_student():
    model = _toy_peft()
    x = torch.randn(3, 8)
    with torch.no_grad():
        for p in lora_parameters(model).values():
            p.add_(0.3 * torch.randn_like(p))
    live = model(x).detach()
    with model.disable_adapter():
        base = model(x).detach()
    student_weights = {k: p.detach().clone() for k, p in lora_parameters(model).items()}
    ema = TeacherState.create(model, "ema", rate=0.5)
    ema.tensors = {k: torch.zeros_like(t) for k, t in ema.tensors.items()}  # a zero adapter == the base model
    assert torch.allclose(ema.logits(model, lambda: model(x)), base, atol=1e-6)
    assert all(torch.equal(p, student_weights[k]) for k, p in lora_parameters(model).items())
    assert torch.allclose(TeacherState(mode="live").logits(model, lambda: model(x)), live)
    assert torch.allclose(TeacherState(mode="base").logits(model, lambda: model(x)), base)
    tr = TeacherState(mode="trust_region", rate=0.05).logits(model, lambda: model(x))
    assert torch.allclose(tr, base + 0.05 * (live - base), atol=1e-6)
    assert model.training  # the teacher pass runs in eval mode and restores the mode


def test_teacher_state_dict_round_trip_and_mismatch():
    model = _toy_peft()
    teacher = TeacherState.create(model, "ema")
    with torch.no_grad():
        for t in teacher.tensors.values():
            t.normal_()
    saved = teacher.state_dict()
    fresh = TeacherState.create(model, "ema")
    fresh.load_state_dict(saved)
    assert all(torch.equal(fresh.tensors[k], saved[k]) for k in saved)
    with pytest.raises(ValueError, match="do not match"):
        fresh.load_state_dict({k: v for k, v in list(saved.items())[:2]})
    assert TeacherState.create(_toy_peft(), "base").state_dict() == {}


def test_separate_a_b_averaging_stays_close_to_averaging_delta_w():
    """The docstring's claim: EMA(B)·EMA(A) ≈ EMA(B·A) while A barely moves (PEFT init B = 0)."""
    model = _toy_peft(seed=1)
    teacher = TeacherState.create(model, "ema", rate=0.05)
    opt = make_optimizer(model, 1e-3)
    key = "base_model.model.0.lora_{}.weight"
    params = lora_parameters(model)
    delta_ema = torch.zeros(16, 8)
    x, target = torch.randn(64, 8), torch.randn(64, 5)
    for _ in range(40):
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        teacher.update(model)
        delta_ema.lerp_((params[key.format("B")] @ params[key.format("A")]).detach(), 0.05)
    approx = teacher.tensors[key.format("B")] @ teacher.tensors[key.format("A")]
    # Measured: 0.5 % at lr 1e-4 (the presets' scale), 4 % at this 10× lr, 12 % at 1e-2.
    relative = ((approx - delta_ema).norm() / delta_ema.norm()).item()
    assert 0 < relative < 0.08


# ------------------------------------------------------- real model (SmolLM2-135M)


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from continualcode.models import resolve

    path = resolve("smollm2-135m").path
    return path, AutoTokenizer.from_pretrained(path), AutoModelForCausalLM


def _fresh(smollm2):
    from continualcode.adapters.presets import preset_for
    from continualcode.learning.lora import attach_lora

    path, tokenizer, auto = smollm2
    torch.manual_seed(0)
    return attach_lora(auto.from_pretrained(path), preset_for(path)), tokenizer, preset_for(path)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _logprob(model, tokenizer, messages, text: str) -> float:
    batch = build_batch(tokenizer, [TrainingExample(messages, _ids(tokenizer, text))], SDPOConfig(), teacher=False)
    model.eval()
    with torch.no_grad():
        logits = response_logits(model, batch.student_ids, batch.student_attention, batch.student_positions,
                                 batch.response_length)
    return torch.log_softmax(logits.float(), -1)[0].gather(-1, batch.response_ids[0, :, None]).sum().item()


@pytest.mark.slow
def test_batch_has_identical_response_ids_and_padding_does_not_change_logits(smollm2):
    model, tokenizer, _ = _fresh(smollm2)
    long_feedback = " ".join(["the test failed"] * 400)
    examples = [TrainingExample(X, _ids(tokenizer, "Done.<|im_end|>"), feedback=long_feedback),
                TrainingExample(_user("hi"), _ids(tokenizer, "Hello! How can I help you today?<|im_end|>"),
                                solution="Hi.", template="hindsight")]
    config = SDPOConfig(max_reprompt_tokens=64)
    batch = build_batch(tokenizer, examples, config)
    T = batch.response_length
    assert torch.equal(batch.student_ids[:, -T:], batch.teacher_ids[:, -T:])
    assert batch.student_ids[0, -T:][:3].tolist() == examples[0].response_ids
    prompt = tokenizer.apply_chat_template(X, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert batch.student_ids[0, -T - len(prompt):-T].tolist() == prompt
    teacher_text = tokenizer.decode(batch.teacher_ids[0][batch.teacher_attention[0].bool()])
    assert "tokens cut" in teacher_text and teacher_text.count("the test failed") < 40
    with torch.no_grad():
        model.eval()
        both = response_logits(model, batch.student_ids, batch.student_attention, batch.student_positions, T)
        for row, example in enumerate(examples):
            alone = build_batch(tokenizer, [example], config)
            one = response_logits(model, alone.student_ids, alone.student_attention, alone.student_positions,
                                  alone.response_length)
            n = len(example.response_ids)
            assert torch.allclose(both[row, :n], one[0, :n], atol=2e-3)


@pytest.mark.slow
def test_sdpo_steps_move_the_student_toward_the_teachers_preference(smollm2):
    """Feedback in the teacher context, a few steps: the student's margin moves the teacher's way."""
    model, tokenizer, _ = _fresh(smollm2)
    x, feedback = _user("Is the sky blue? Answer YES or NO."), "I said YES or NO only."
    good, bad = "YES<|im_end|>", 'The answer is "No."<|im_end|>'
    x_teacher = teacher_messages(x, feedback=feedback)
    teacher_margin = _logprob(model, tokenizer, x_teacher, good) - _logprob(model, tokenizer, x_teacher, bad)
    before = _logprob(model, tokenizer, x, good) - _logprob(model, tokenizer, x, bad)
    assert teacher_margin > before + 1.0, "precondition: the teacher prefers the compliant answer more"
    config = SDPOConfig()
    teacher = TeacherState.create(model, config.teacher, config.teacher_update_rate)
    optimizer = make_optimizer(model, config.learning_rate)
    example = TrainingExample(x, _ids(tokenizer, bad), feedback=feedback)
    for _ in range(3):
        metrics = sdpo_step(model, tokenizer, optimizer, [example, TrainingExample(x, [1, 2])], config, teacher)
        assert metrics["stepped"] and metrics["tokens"] == len(example.response_ids)
        assert metrics["example_advantage"][1] is None  # no feedback: masked out
    after = _logprob(model, tokenizer, x, good) - _logprob(model, tokenizer, x, bad)
    assert after > before + 0.5, f"margin {before:.2f} -> {after:.2f}"


PROBES = [(_user("What is the capital of France?"), "The capital of France is Paris.", r"Paris"),
          (_user("What is 2 + 2?"), "2 + 2 = 4", r"\b4\b"),
          (_user("Write a Python function add(a, b) that returns a + b."), "def add(a, b):\n    return a + b",
           r"def add")]


def _answers(model, tokenizer, messages) -> str:
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    model.eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_default_settings_do_not_collapse_unrelated_answers(smollm2):
    """The planning probe's failure (live teacher, lr 5e-4: newlines for everything) must not recur with
    the defaults: after a feedback's worth of steps (×2), unrelated probes keep their correct answers."""
    model, tokenizer, preset = _fresh(smollm2)
    config = SDPOConfig(learning_rate=preset.learning_rate)
    before = [_logprob(model, tokenizer, m, answer) for m, answer, _ in PROBES]
    assert all(re.search(rx, _answers(model, tokenizer, m)) for m, _, rx in PROBES), "precondition"
    teacher = TeacherState.create(model, config.teacher, config.teacher_update_rate)
    optimizer = make_optimizer(model, config.learning_rate)
    example = TrainingExample(_user("Is the sky blue? Answer YES or NO."),
                              _ids(tokenizer, 'The answer is "No."<|im_end|>'), feedback="I said YES or NO only.")
    for _ in range(2 * preset.steps_per_feedback):
        sdpo_step(model, tokenizer, optimizer, [example], config, teacher)
    after = [_logprob(model, tokenizer, m, answer) for m, answer, _ in PROBES]
    for (messages, answer, rx), b, a in zip(PROBES, before, after):
        assert a > b - 1.0, f"log p({answer!r}) fell {b:.2f} -> {a:.2f}"
        assert re.search(rx, _answers(model, tokenizer, messages)), f"lost the answer to {messages[0]['content']!r}"


@pytest.mark.slow
def test_sft_step_lowers_cross_entropy_and_skips_empty_batches(smollm2):
    model, tokenizer, _ = _fresh(smollm2)
    config = SDPOConfig()
    optimizer = make_optimizer(model, 1e-3)
    example = TrainingExample(_user("Say hi."), _ids(tokenizer, "Hi there!<|im_end|>"))
    first = sft_step(model, tokenizer, optimizer, [example], config)
    second = sft_step(model, tokenizer, optimizer, [example], config)
    assert second["loss"] < first["loss"] and first["tokens"] == len(example.response_ids)
    teacher = TeacherState.create(model, "ema")
    skipped = sdpo_step(model, tokenizer, optimizer, [example], config, teacher)
    assert not skipped["stepped"] and skipped["example_advantage"] == [None]
    # Hybrid mode: rewards alone (no feedback) are signal; the two answers to one prompt form a GRPO group.
    other = TrainingExample(example.messages, _ids(tokenizer, "No.<|im_end|>"), reward=0.0)
    rewarded = TrainingExample(example.messages, example.response_ids, reward=1.0)
    hybrid = sdpo_step(model, tokenizer, optimizer, [rewarded, other], SDPOConfig(hybrid_lambda=0.5), teacher)
    assert hybrid["stepped"] and hybrid["tokens"] == len(rewarded.response_ids) + len(other.response_ids)
