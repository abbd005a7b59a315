"""End to end in the real REPL with a real model: does a correction given twice stick on a new prompt?

The scenario is the learning bench's `bullet-list` (bench/scenarios/public.jsonl), where forward KL
took SmolLM2's held-out pass rate from 0.02-0.04 (base) to 0.50-0.67 on the bench, its "musical
instruments" item from 0.00 to 0.75 (docs/learning.md). (Its "planets" item is no use here: under the
REPL's system prompt the base model already answers it with `*` bullets.) The user corrects two answers
with follow-up messages, the background trainer publishes, the gate promotes, the engine hot-swaps, and
the third, new prompt should be answered as a bullet list where the same REPL answered it in prose.

Measured: it is not, yet. With the shipped settings, and with forward KL, and with 4 rollouts × 2
rounds, the versions are published, promoted and served (the answer changes: "## violin …" becomes
repeated "## bass guitar" sections) but no bullets appear. Why, found with `bench learn --system agent`:
under the REPL's system prompt the hindsight teacher echoed its own template and was worse than no
feedback (bullet eval 0.04 vs 0.33), so there was nothing right to distil; with the feedback before the
request (`followup_template = "prefix"`, the default since) the teacher follows it (0.58) and the
bench's distilled eval rose to 0.42, but one greedy REPL run still answered with headings. The test checks what works (publish, gate,
hot-swap, a changed answer, a quiet prompt line) and marks itself xfail at the bullet check, so it
passes the day the correction sticks; docs/learning.md, "The REPL scenario".
"""

from __future__ import annotations

import os
import re
import sys
import time

import pexpect
import pytest

pytestmark = pytest.mark.slow

BULLET = re.compile(r"(?m)^\s*[-*] \S")
# CI runs SmolLM2; CONTINUALCODE_REPL_TEST_MODEL=qwen2.5-coder-0.5b runs the default model. Each model
# gets a held-out item of the scenario whose base answer has no bullets on the bench under the REPL's
# prompt (Qwen answers the instruments with bullets already).
MODEL = os.environ.get("CONTINUALCODE_REPL_TEST_MODEL", "smollm2-135m")
NEW_PROMPT, ON_TOPIC = {
    "smollm2-135m": ("Name three musical instruments.",
                     r"(?i)guitar|piano|violin|drum|flute|trumpet|cello|saxophone|harp|bass"),
    "qwen2.5-coder-0.5b": ("Name three primary colors.", r"(?i)red.*blue|blue.*red"),
}[MODEL]
TIMEOUT_S = 300 if MODEL == "smollm2-135m" else 900  # /train answers when its steps are done: Qwen's take minutes
CORRECTIONS = [("Name three fruits.", "Give lists as markdown bullets, one '- ' item per line."),
               ("Name three programming languages.", "Use '- ' bullet points for lists.")]


def spawn(repo, *extra):
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "120", "LINES": "40",
           "NO_COLOR": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "continualcode", "--model", MODEL, "--repo", str(repo),
                                           *extra], env=env, encoding="utf-8", timeout=TIMEOUT_S, dimensions=(40, 120))
    child.expect("ready in")
    return child


def prompt(child) -> str:
    """Everything printed since the last prompt, once prompt-toolkit shows the input prompt again."""
    child.expect(r"\x1b\[\?2004h")
    return child.before


def answer(child, text: str) -> str:
    child.sendline(text)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", prompt(child))


def trained(status: str) -> bool:
    """/status says: nothing queued, the trainer idle, and the engine serving the live version."""
    serving, live = re.search(r"serving adapter\s+(\S+)", status), re.search(r"live version\s+(\S+)", status)
    return bool(re.search(r"queue\s+0 pending", status) and re.search(r"trainer\s+running · idle", status)
                and serving and live and serving.group(1) == live.group(1) != "base")


def corrected_then_asked(repo, *flags) -> tuple[str, str, str]:
    """(answer to the new prompt before the corrections, after them, the REPL's whole output)."""
    (repo / ".continualcode").mkdir(exist_ok=True)
    # greedy: before vs after; CONTINUALCODE_REPL_TEST_CONFIG adds TOML lines (other learning settings).
    # fp32: the two answers are computed from different prefix-cache states (the corrections in between);
    # only in fp32 does a cached prefill give a full prefill's tokens (docs/engine.md). In bf16, on an Intel
    # CPU with AMX, the no-learning answer changed without any learning (session 11).
    extra = os.environ.get("CONTINUALCODE_REPL_TEST_CONFIG", "").replace(";", "\n")
    (repo / ".continualcode" / "config.toml").write_text(f'temperature = 0.0\ndtype = "fp32"\n{extra}\n')
    child = spawn(repo, *flags)
    output = prompt(child)
    before = answer(child, NEW_PROMPT)
    answer(child, "/clear")
    for request, correction in CORRECTIONS:
        output += answer(child, request)
        output += answer(child, correction)   # a follow-up message: feedback on the answer above
        answer(child, "/clear")
    if "--no-learn" not in flags:
        output += answer(child, "/train")
        deadline = time.monotonic() + 600     # the background thread may have claimed the examples first
        while not trained(status := answer(child, "/status")):
            assert time.monotonic() < deadline, status
            time.sleep(2)
        # a version passed the gate and is served; the newest step may still be one the gate rejected (the
        # background thread trained on the first follow-up before /train took the second: seen in a full run)
        assert re.search(r"live version\s+v\d{4}", status), status
    answer(child, "/clear")
    after = answer(child, NEW_PROMPT)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    return before, after, output + before + after


def test_a_correction_given_twice_changes_the_answer_to_a_new_prompt(git_repo):
    before, after, output = corrected_then_asked(git_repo)
    assert not BULLET.search(before), before
    # background work (the trainer loading its copy, library warnings) never prints into the REPL
    assert "Loading weights" not in output and "Warning" not in output, output[-2000:]
    assert after.split(NEW_PROMPT)[-1] != before.split(NEW_PROMPT)[-1]  # the promoted version is what answers
    if not BULLET.search(after):
        pytest.xfail("measured: the versions are promoted and served and the answer changes, but it gets no "
                     "bullets yet (docs/learning.md, 'The REPL scenario'); before: "
                     f"{before.split(NEW_PROMPT)[-1].strip()[:200]!r}, after: {after.split(NEW_PROMPT)[-1].strip()[:300]!r}")
    assert re.search(ON_TOPIC, after.split(NEW_PROMPT)[-1], re.S)


def test_without_learning_the_new_prompt_is_answered_as_before(git_repo):
    before, after, _ = corrected_then_asked(git_repo, "--no-learn")
    assert not BULLET.search(after) and after.split(NEW_PROMPT)[-1] == before.split(NEW_PROMPT)[-1]
