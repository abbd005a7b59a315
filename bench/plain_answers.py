"""Does the agent answer a question that needs no tool in plain text?

Under the REPL's system prompt in an empty repository (as `continualcode` starts in a new project),
asks the learning bench's general questions (continualcode/evals/sets/learn_public.jsonl, each
distinct one once), greedy, and counts the replies that are a tool call and the ones that pass the
question's check. Qwen2.5-Coder answered most of them with the system prompt's example call
(`I'll read it. <tool name="read_file">PATH/TO/FILE`), docs/tools.md.

    OMP_WAIT_POLICY=PASSIVE python bench/plain_answers.py [--model M] [--template FILE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from continualcode.evals.learning_bench import (
    DEFAULT_SCENARIOS,
    agent_system_prompt,
    load_scenarios,
)
from continualcode.evals.learning_methods import load_learner


def general_checks() -> list:
    seen, checks = set(), []
    for scenario in load_scenarios(DEFAULT_SCENARIOS):
        for check in scenario.general:
            question = check.messages[-1]["content"]
            if question not in seen:
                seen.add(question)
                checks.append(check)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--template", type=Path, action="append", default=[],
                        help="a system prompt template to try (repeatable; default: the packaged one)")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    checks = general_checks()
    learner = load_learner(args.model)
    for template in args.template or [None]:
        prompt = agent_system_prompt(template.read_text() if template else None)
        conversations = [[{"role": "system", "content": prompt}, *check.messages] for check in checks]
        started = time.monotonic()
        samples = learner.sample(conversations, n=1, max_new_tokens=args.max_new_tokens, temperature=0.0, seed=0)
        answers = [group[0].text for group in samples]
        print(json.dumps({"model": args.model, "template": str(template or "packaged"), "questions": len(answers),
                          "tool_call_replies": sum("<tool" in a for a in answers),
                          "passed": sum(c.passes(a) for c, a in zip(checks, answers)),
                          "seconds": round(time.monotonic() - started)}), flush=True)
        if args.verbose:
            for check, answer in zip(checks, answers):
                print(f"  {check.messages[-1]['content'][:60]!r} -> {answer[:100]!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
