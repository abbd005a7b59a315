"""What a repair candidate is asked: the repair conversation, the retry message, the reply's forced start.

Kept apart from the flow (continualcode.agent.repair) because these texts are what the benchmark tunes:
docs/agent.md has the measurements behind each choice.
"""

from __future__ import annotations

from continualcode.agent.edit_formats import EditFormat
from continualcode.agent.failures import Failure, is_test_file
from continualcode.agent.function_parts import (
    LONG_DOCSTRING_LINES,
    FunctionParts,
    function_parts,
    head_prefix,
    without_function,
)

REPAIR_SYSTEM = ("You are an expert Python programmer. You fix bugs so that failing tests pass: you read the "
                 "error and the code, find the wrong line, and write the corrected code. You never change the tests.")
"""The candidates' own system prompt: under the agent's (which teaches tool calls) the bundled model
answered many candidates with a tool call instead of code (docs/agent.md)."""
CONTEXT = """{request}

The check `{check}` fails:

{failure}

The files involved:

{files}
{hint}
{instructions}"""
RETRY = """That fix did not work: the check `{check}` still fails ({detail}):

{failure}

Write a different fix. {instructions}"""
LARGE_FILE_CHARS = 12_000
"""Files longer than this are shown around the implicated lines instead of whole."""

REWRITE = ("The function `{name}` of {path} is left out above: write it again, correctly, so that the tests "
           "pass. Its docstring and the failing tests say what it must do. Reply with one ```python block "
           "holding the complete `def {name}`, nothing else. Do not change the tests.")
PREFIXES = ("name", "bug", "def", "none")
"""RepairConfig.prefix values (candidate_prefix)."""


def repair_conversation(request: str, check: str, failure: Failure, files: dict[str, str],
                        suspects: list[tuple[str, str]], fmt: EditFormat) -> list[dict]:
    """[system, user]: the request, the failure, the files, the hint and the edit form's instructions."""
    return _conversation(request, check, failure, show_files(files, failure, fmt, check), hint(suspects),
                         fmt.instructions(list(files), suspects))


def _conversation(request: str, check: str, failure: Failure, shown: str, hint_text: str,
                  instructions: str) -> list[dict]:
    return [{"role": "system", "content": REPAIR_SYSTEM}, {"role": "user", "content": CONTEXT.format(
        request=request.strip(), check=check, failure=failure.output, files=shown, hint=hint_text,
        instructions=instructions)}]


def retry_message(check: str, failure: str, detail: str, fmt: EditFormat, files: dict[str, str],
                  suspects: list[tuple[str, str]]) -> str:
    return RETRY.format(check=check, failure=failure, detail=detail,
                        instructions=fmt.instructions(list(files), suspects))


def show_files(files: dict[str, str], failure: Failure, fmt: EditFormat, check: str) -> str:
    """Each file as the edit form wants it; a large one only around the lines the failure names."""
    parts = []
    for path, text in files.items():
        note = " (a test: read it, do not change it)" if is_test_file(path, check) else ""
        if len(text) > LARGE_FILE_CHARS:
            lines = text.splitlines()
            marks = [line for p, line in failure.frames if p == path] or [1]
            low, high = max(1, min(marks) - 40), min(len(lines), max(marks) + 40)
            parts.append(f"### {path}{note} (lines {low}-{high} of {len(lines)})\n```\n"
                         + "\n".join(f"{i:>4}| {lines[i - 1]}" for i in range(low, high + 1)) + "\n```")
        else:
            shown = fmt.show(path, text)
            parts.append(shown.replace(f"### {path}", f"### {path}{note}", 1) if note else shown)
    return "\n\n".join(parts)


def candidate_prefix(format_name: str, mode: str, suspects: list[tuple[str, str]],
                     parts: FunctionParts | None = None) -> str:
    """How every fix candidate of the function form starts (RepairConfig.prefix). With "name" and one
    suspect (`parts`: suspect_parts) whose docstring is long, its whole head (signature and docstring) is
    given: copying it back costs most of a candidate's tokens."""
    if format_name != "function" or mode == "none":
        return ""
    if mode == "bug":
        return "```python\n# The bug:"
    if mode == "name" and len(suspects) == 1:
        if parts is not None and parts.docstring_lines >= LONG_DOCSTRING_LINES:
            return head_prefix(parts)
        return f"```python\ndef {suspects[0][1]}("
    return "```python\ndef "


def suspect_parts(suspects: list[tuple[str, str]], files: dict[str, str]) -> FunctionParts | None:
    """The head and body of the one suspect function, when there is exactly one and it is shown."""
    if len(suspects) != 1 or suspects[0][0] not in files:
        return None
    path, name = suspects[0]
    return function_parts(files[path], path, name)


def rewrite_conversation(request: str, check: str, failure: Failure, files: dict[str, str],
                         parts: FunctionParts, fmt: EditFormat) -> tuple[list[dict], str]:
    """([system, user], forced prefix) for candidates that write the suspect afresh: the files as for a
    fix, but the suspect function left out (the bundled model shown the buggy body mostly copies it); the
    reply starts with its head."""
    shown = {**files, parts.path: without_function(files[parts.path], parts)}
    return (_conversation(request, check, failure, show_files(shown, failure, fmt, check), "",
                          REWRITE.format(name=parts.name, path=parts.path)), head_prefix(parts))


def hint(suspects: list[tuple[str, str]]) -> str:
    if not suspects:
        return ""
    if len(suspects) == 1:
        return f"\nThe failing test runs `{suspects[0][1]}` ({suspects[0][0]}): the bug is there.\n"
    named = ", ".join(f"`{name}` ({path})" for path, name in suspects[:6])
    return f"\nThe failing tests run {named}: the bug is in one of them.\n"
