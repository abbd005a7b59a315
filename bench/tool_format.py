"""How often does the bundled Qwen2.5-Coder-0.5B produce a parsable, sensible tool call?

Builds a small real repository in a temp dir, gives the model the real system
prompt (continualcode.agent.system_prompt.system_prompt) and one of a few realistic
tasks, samples completions the way the agent does (temperature 0.7, stop at
</tool>), parses them with the real parser and checks the call against what a
sensible first step would be (for a question no tool answers: a plain answer). Prints the rates; --out writes every sample.

    OMP_WAIT_POLICY=PASSIVE python bench/tool_format.py            # 12 tasks x 3 samples
    python bench/tool_format.py --samples 1 --tasks read,edit -v   # quicker look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from continualcode.agent.system_prompt import system_prompt
from continualcode.agent.tool_calls import (
    STOP_STRINGS,
    ToolCall,
    parse_tool_call,
    render_tool_call,
    render_tool_result,
)
from continualcode.models import resolve
from continualcode.tools import TOOLS
from continualcode.tools.workspace import Workspace

REPO = {
    "README.md": "# calc\n\nA tiny calculator library.\n\nRun the tests with `python -m pytest -q`.\n",
    "src/calc.py": (
        "def add(a, b):\n    return a - b\n\n\n"
        "def mean(values):\n    return sum(values) / len(values)\n"
    ),
    "src/report.py": (
        "from src.calc import mean\n\n\n"
        "def summary(scores):\n    return f\"average: {mean(scores):.1f}\"\n"
    ),
    "tests/test_calc.py": (
        "from src.calc import add, mean\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_mean():\n    assert mean([1, 2, 3]) == 2\n"
    ),
}

REPO_SUMMARY = "A small Python library (git repository, tests run with pytest)."


@dataclass
class Task:
    key: str
    prompt: str
    sensible: Callable[[ToolCall], bool] | None   # None: no tool is needed, a plain answer is the sensible reply
    history: tuple[tuple[ToolCall, str], ...] = ()   # earlier (call, result) turns


def _path(call: ToolCall) -> str:
    return call.args.get("path", "").strip().removeprefix("./")


TASKS = [
    Task("read", "Show me the contents of src/calc.py.",
         lambda c: c.name == "read_file" and _path(c) == "src/calc.py"),
    Task("list", "What files are in this repository?",
         lambda c: c.name == "list_files" or (c.name == "bash" and c.args["command"].split()[:1] in (["ls"], ["find"]))),
    Task("grep", "Where is the function `mean` used in this project?",
         lambda c: c.name == "grep" and "mean" in c.args.get("pattern", "")),
    Task("tests", "Run the test suite and tell me whether it passes.",
         lambda c: c.name == "run_tests" or (c.name == "bash" and "pytest" in c.args["command"])),
    Task("write", "Create a new file src/hello.py with a function hello() that returns the string 'hello world'.",
         lambda c: c.name == "write_file" and _path(c) == "src/hello.py" and "def hello" in c.args.get("content", "")),
    Task("bash", "Which Python version is installed here? Check it with a command.",
         lambda c: c.name == "bash" and "python" in c.args["command"] and "version" in c.args["command"].lower() or
         (c.name == "bash" and "-V" in c.args["command"])),
    Task("fix-first", "test_add fails: add in src/calc.py returns the wrong result. Please fix it.",
         lambda c: (c.name == "read_file" and _path(c) == "src/calc.py") or c.name == "run_tests" or
         (c.name == "bash" and "pytest" in c.args["command"]) or
         (c.name == "grep" and "add" in c.args.get("pattern", "")) or
         (c.name == "edit" and _path(c) == "src/calc.py" and "a - b" in c.args.get("search", "") and "a + b" in c.args.get("replace", ""))),
    Task("edit", "test_add fails: add in src/calc.py returns the wrong result. Please fix it.",
         lambda c: c.name == "edit" and _path(c) == "src/calc.py" and "a - b" in c.args.get("search", "") and "a + b" in c.args.get("replace", ""),
         history=((ToolCall("read_file", {"path": "src/calc.py"}), "I'll read the file first."),)),
    Task("readme", "Read the first 3 lines of README.md.",
         lambda c: c.name == "read_file" and _path(c) == "README.md"),
    # questions no file or command answers: the sensible reply is plain text (the packaged prompt once
    # said "each reply: ... exactly one tool call" and Qwen answered these with its example read_file call)
    Task("plain-capital", "What is the capital of France?", None),
    Task("plain-python", "In Python, what does the keyword `yield` do?", None),
    Task("plain-arith", "What is 12 * 12?", None),
]


def build_repo(root: Path) -> Workspace:
    for rel, text in REPO.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return Workspace(root)


def messages_for(task: Task, ws: Workspace, template: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt(TOOLS, REPO_SUMMARY, template=template)},
                {"role": "user", "content": task.prompt}]
    for call, prose in task.history:  # real tool results from the real tools
        messages.append({"role": "assistant", "content": f"{prose}\n{render_tool_call(call)}"})
        messages.append({"role": "user", "content": render_tool_result(call.name, TOOLS[call.name].run(call.args, ws))})
    return messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--tasks", default="", help="comma-separated task keys (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--template", type=Path, help="try another system prompt template (default: the packaged one)")
    parser.add_argument("--out", type=Path, help="write every sample as JSON here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    path = resolve(args.model).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if args.dtype == "fp32" else torch.bfloat16)
    model.eval()
    tasks = [t for t in TASKS if not args.tasks or t.key in args.tasks.split(",")]

    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        ws = build_repo(Path(tmp))
        for task in tasks:
            template = args.template.read_text() if args.template else None
            text = tokenizer.apply_chat_template(messages_for(task, ws, template), add_generation_prompt=True, tokenize=False)
            inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **inputs, do_sample=True, temperature=args.temperature, top_p=1.0,
                    max_new_tokens=args.max_new_tokens, num_return_sequences=args.samples,
                    stop_strings=list(STOP_STRINGS), tokenizer=tokenizer,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
            for seq in out:
                completion = tokenizer.decode(seq[inputs["input_ids"].shape[1]:], skip_special_tokens=True)
                turn = parse_tool_call(completion)
                if task.sensible is None:
                    sensible = turn.call is None and turn.error is None and bool(completion.strip())
                else:
                    sensible = turn.call is not None and task.sensible(turn.call)
                rows.append({"task": task.key, "completion": completion, "parsed": turn.call is not None,
                             "malformed": turn.error is not None, "sensible": sensible,
                             "call": None if turn.call is None else {"name": turn.call.name, "args": turn.call.args},
                             "error": turn.error})
                if args.verbose:
                    mark = "SENSIBLE" if sensible else "parsed" if turn.call else "MALFORMED" if turn.error else "no call"
                    print(f"--- {task.key}: {mark}\n{completion}\n" + (f"[error] {turn.error}\n" if turn.error else ""), flush=True)
    seconds = time.monotonic() - started

    print(f"model {args.model}, {len(tasks)} tasks x {args.samples} samples, T={args.temperature}, "
          f"max_new_tokens={args.max_new_tokens}, {seconds:.0f} s")
    for task in tasks:
        mine = [r for r in rows if r["task"] == task.key]
        print(f"  {task.key:13s} parsable {sum(r['parsed'] for r in mine)}/{len(mine)}  sensible {sum(r['sensible'] for r in mine)}/{len(mine)}")
    needs_call = {t.key for t in tasks if t.sensible is not None}
    tool_rows = [r for r in rows if r["task"] in needs_call]
    plain_rows = [r for r in rows if r["task"] not in needs_call]
    if tool_rows:
        total, parsed = len(tool_rows), sum(r["parsed"] for r in tool_rows)
        malformed, sensible = sum(r["malformed"] for r in tool_rows), sum(r["sensible"] for r in tool_rows)
        print(f"tasks that need a tool: parsable call {parsed}/{total} = {parsed / total:.0%}   malformed: "
              f"{malformed}/{total}   no call: {total - parsed - malformed}/{total}   "
              f"sensible call: {sensible}/{total} = {sensible / total:.0%}")
    if plain_rows:
        total, plain = len(plain_rows), sum(r["sensible"] for r in plain_rows)
        print(f"questions that need none: plain answer {plain}/{total} = {plain / total:.0%}   "
              f"tool call: {sum(r['parsed'] for r in plain_rows)}/{total}   malformed: {sum(r['malformed'] for r in plain_rows)}/{total}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
