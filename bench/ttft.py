"""Time to first token across an agent conversation, and batched vs sequential candidates.

    python bench/ttft.py [--model qwen2.5-coder-0.5b] [--dtype auto] [--turns 5] [--repeats 2]
                         [--candidates 8] [--tokens 128]

Part 1 replays an agent-like conversation on the embedded engine: the real
system prompt (tools + the summary of a small temporary repo), the user's
request, then per turn a reply with a tool call and the tool's result, so the
prompt grows by appending as the agent's does. At each turn it times the first
token of a short reply (render + prefill + one sampled token) with the prefix
cache off and on; the cache starts empty on turn 1 (a new session). It prints
turn 1 vs the last turn for both, with the ratio (issue 16's target: the last
turn within 1.5x turn 1 with the cache).

Part 2 samples `--candidates` repairs of `--tokens` tokens for the last turn's
prompt, once with `EmbeddedEngine.sample` (one prefill, one batched decode) and
once as that many sequential `generate` calls (prefix cache on for both), and
prints the seconds and the ratio. No stop strings and no eos cut short here:
both produce about the same number of tokens, which the table shows.

Numbers depend on the machine's load (other jobs share the cores): the load
average is printed with them. Ratios are from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from continualcode.agent.system_prompt import repo_summary, system_prompt
from continualcode.agent.tool_calls import (
    ToolCall,
    render_tool_call,
    render_tool_result,
)
from continualcode.engines.base import SamplingParams
from continualcode.engines.embedded import EmbeddedEngine
from continualcode.models import resolve
from continualcode.tools import ToolResult, default_tools

CART = '''"""A shopping cart."""


class Cart:
    def __init__(self):
        self.items = []

    def add(self, name, price, quantity=1):
        if price < 0:
            raise ValueError("price must not be negative")
        self.items.append((name, price, quantity))

    def total(self):
        total = 0
        for name, price, quantity in self.items:
            total += price * quantity
        return total

    def discount(self, percent):
        return self.total() * (1 - percent / 10)
'''
TEST_CART = '''from cart import Cart


def test_total():
    cart = Cart()
    cart.add("apple", 2.0, 3)
    assert cart.total() == 6.0


def test_discount():
    cart = Cart()
    cart.add("pear", 10.0)
    assert cart.discount(20) == 8.0
'''
PYTEST_FAILURE = '''F.                                                                       [100%]
=================================== FAILURES ===================================
________________________________ test_discount _________________________________

    def test_discount():
        cart = Cart()
        cart.add("pear", 10.0)
>       assert cart.discount(20) == 8.0
E       assert -10.0 == 8.0
E        +  where -10.0 = <bound method Cart.discount of <cart.Cart object at 0x7f2c>>(20)

test_cart.py:13: AssertionError
=========================== short test summary info ============================
FAILED test_cart.py::test_discount - assert -10.0 == 8.0
1 failed, 1 passed in 0.03s'''


def numbered(text: str) -> str:
    return "\n".join(f"{i:4}  {line}" for i, line in enumerate(text.splitlines(), 1))


def agent_turns() -> list[tuple[str, str]]:
    """(assistant reply, tool result) pairs of a plausible repair session."""
    steps = [
        ("I'll run the tests first.", ToolCall("run_tests", {}), ToolResult(False, PYTEST_FAILURE, 1, error_kind="exit_code")),
        ("The discount is wrong; let me read cart.py.", ToolCall("read_file", {"path": "cart.py"}),
         ToolResult(True, numbered(CART))),
        ("Let me check the test as well.", ToolCall("read_file", {"path": "test_cart.py"}),
         ToolResult(True, numbered(TEST_CART))),
        ("The percentage is divided by 10 instead of 100.",
         ToolCall("edit", {"path": "cart.py", "search": "        return self.total() * (1 - percent / 10)",
                           "replace": "        return self.total() * (1 - percent / 100)"}),
         ToolResult(True, "cart.py: 1 line changed", changed_paths=["cart.py"])),
    ]
    return [(f"{prose}\n{render_tool_call(call)}", render_tool_result(call.name, result)) for prose, call, result in steps]


def conversation(repo: Path, turns: int) -> list[list[dict]]:
    """The prompt of each turn: system, request, then (reply, result) pairs appended."""
    messages = [{"role": "system", "content": system_prompt(default_tools(), repo_summary(repo))},
                {"role": "user", "content": "The tests fail. Find and fix the bug so that python -m pytest -q passes."}]
    prompts = [list(messages)]
    pairs = agent_turns()
    for turn in range(turns - 1):
        reply, result = pairs[turn % len(pairs)]
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": result}]
        prompts.append(list(messages))
    return prompts


def first_token_seconds(engine: EmbeddedEngine, prompts: list[list[dict]], cached: bool) -> list[tuple[float, int]]:
    """(seconds to the first token, prompt tokens taken from the cache) per turn, from an empty cache."""
    engine.prefix_cache = cached
    engine.clear_prefix_cache()
    results = []
    for messages in prompts:
        completion = engine.generate(messages, SamplingParams(max_new_tokens=8))
        results.append((completion.extra["first_token_s"], completion.extra["cached_prompt_tokens"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="conversations per setting; the median is shown")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    started = time.perf_counter()
    engine = EmbeddedEngine(resolve(args.model), dtype=args.dtype)
    print(f"{args.model} ({engine.dtype}) loaded in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "shop"
        repo.mkdir()
        (repo / "cart.py").write_text(CART)
        (repo / "test_cart.py").write_text(TEST_CART)
        prompts = conversation(repo, args.turns)
    lengths = [len(engine.render(m)) for m in prompts]
    engine.generate(prompts[0][:1] + [{"role": "user", "content": "hi"}], SamplingParams(max_new_tokens=2))  # warm-up

    runs = {False: [], True: []}
    for _ in range(args.repeats):
        for cached in (False, True):  # interleaved, so a change in load hits both settings
            runs[cached].append(first_token_seconds(engine, prompts, cached))
    print(f"\n{'turn':>4} {'prompt tokens':>13} {'no cache s':>10} {'cache s':>8} {'from cache':>10}")
    medians = {}
    for cached in (False, True):
        medians[cached] = [statistics.median(run[t][0] for run in runs[cached]) for t in range(args.turns)]
    for turn in range(args.turns):
        reused = runs[True][0][turn][1]
        print(f"{turn + 1:>4} {lengths[turn]:>13} {medians[False][turn]:>10.2f} {medians[True][turn]:>8.2f} {reused:>10}")
    for cached in (False, True):
        first, last = medians[cached][0], medians[cached][-1]
        print(f"time to first token, turn {args.turns} / turn 1, prefix cache {'on ' if cached else 'off'}: "
              f"{last:.2f} s / {first:.2f} s = {last / first:.2f}")

    engine.prefix_cache = True
    last = prompts[-1]
    params = SamplingParams(max_new_tokens=args.tokens, temperature=0.7, seed=0)
    engine.generate(last, SamplingParams(max_new_tokens=1))  # both start from the cached prompt
    started = time.perf_counter()
    batch = engine.sample(last, params, args.candidates)
    batched = time.perf_counter() - started
    started = time.perf_counter()
    sequential = [engine.generate(last, SamplingParams(max_new_tokens=args.tokens, temperature=0.7, seed=i))
                  for i in range(args.candidates)]
    one_by_one = time.perf_counter() - started
    batch_tokens = sum(len(c.token_ids) for c in batch)
    seq_tokens = sum(len(c.token_ids) for c in sequential)
    print(f"\n{args.candidates} candidates of up to {args.tokens} tokens on the turn-{args.turns} prompt "
          f"({lengths[-1]} tokens):")
    print(f"  batched sample():     {batched:7.1f} s, {batch_tokens} tokens, {batch_tokens / batched:5.1f} tok/s")
    print(f"  sequential generate(): {one_by_one:6.1f} s, {seq_tokens} tokens, {seq_tokens / one_by_one:5.1f} tok/s")
    print(f"  sequential / batched: {one_by_one / batched:.2f}x")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
