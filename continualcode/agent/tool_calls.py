"""The text format of tool calls: what the model writes, how it is parsed, what comes back.

A 0.5B model cannot be trusted to JSON-escape forty lines of Python, so a call
is plain tagged text, one per turn, at the end of the assistant's message:

    <tool name="edit">
    <arg name="path">src/app.py</arg>
    <arg name="search">
    old text
    </arg>
    <arg name="replace">
    new text
    </arg>
    </tool>

Argument values are taken verbatim (no escaping); one newline right after
`<arg ...>` and one right before `</arg>` are dropped so code can sit on its
own lines. Generation stops at `</tool>` (STOP_STRINGS), so the turn ends where
the call does. The parser is lenient only where the intent is unambiguous
(missing `</tool>` at the end of the text, a ```-fence around the call, quote
style, the case of names, a bare value for a tool with exactly one required
argument). Anything else malformed yields an error message
written for the model — what was wrong and the correct form — that goes back
as the tool result and is also a feedback event for training.

Limitation: a value cannot contain the literal text `</arg>` or `</tool>`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from continualcode.tools import TOOLS, Tool, ToolResult

STOP_STRINGS: tuple[str, ...] = ("</tool>",)
"""Stop generation here: one call per turn, and the turn ends where the call does."""

_TOOL_OPEN = re.compile(r"<tool\b([^>]*?)(/?)>", re.IGNORECASE)
_TOOL_CLOSE = re.compile(r"</tool\s*>", re.IGNORECASE)
_ARG_OPEN = re.compile(r"<arg\b([^>]*)>", re.IGNORECASE)
_ARG_CLOSE = re.compile(r"</arg\s*>", re.IGNORECASE)
_NAME_ATTR = re.compile(r"""\bname\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'/>]+))""", re.IGNORECASE)
_FENCE_OPEN = re.compile(r"```[A-Za-z]*[ \t]*\n?\Z")


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, str]
    raw: str = ""          # the call exactly as the model wrote it


@dataclass(frozen=True)
class ParsedTurn:
    prose: str                  # the text before the call (the whole text when there is none)
    call: ToolCall | None       # None when the turn is a plain answer or the call is malformed
    error: str | None           # for a malformed call: the message to feed back to the model


class _Malformed(ValueError):
    pass


def parse_tool_call(text: str, tools: Mapping[str, Tool] | None = None) -> ParsedTurn:
    """Split an assistant turn into prose and at most one validated tool call."""
    tools = TOOLS if tools is None else tools
    opening = _TOOL_OPEN.search(text)
    if opening is None:
        return ParsedTurn(text.strip(), None, _near_miss(text, tools))
    prose = _strip_fence(text[: opening.start()]).strip()
    try:
        name = _tool_name(opening.group(1), tools)
        if opening.group(2):  # <tool name="run_tests"/>
            args, end = {}, opening.end()
        else:
            args, end = _parse_args(text, opening.end(), name, tools)
        _validate(name, args, tools)
    except _Malformed as exc:
        return ParsedTurn(prose, None, str(exc))
    return ParsedTurn(prose, ToolCall(name, args, text[opening.start(): end]), None)


def _strip_fence(prose: str) -> str:
    """Drop a ``` opener that only wraps the call (the model's markdown habit)."""
    return _FENCE_OPEN.sub("", prose.rstrip(" \t"))


def _tool_name(attributes: str, tools: Mapping[str, Tool]) -> str:
    found = _NAME_ATTR.search(attributes)
    if found is None:
        raise _Malformed(_explain("the <tool> tag has no name", None, tools))
    raw = next(g for g in found.groups() if g is not None).strip()
    name = raw.lower().replace("-", "_")
    if name not in tools:
        close = difflib.get_close_matches(name, list(tools), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise _Malformed(_explain(f"there is no tool named {raw!r}.{hint}", close[0] if close else None, tools))
    return name


def _parse_args(text: str, at: int, name: str, tools: Mapping[str, Tool]) -> tuple[dict[str, str], int]:
    """The <arg> elements from `at` up to </tool>; returns (args, end offset of the call)."""
    close = _TOOL_CLOSE.search(text, at)
    body_end = close.start() if close else len(text)
    call_end = close.end() if close else len(text)
    args: dict[str, str] = {}
    pos = at
    while True:
        while pos < body_end and text[pos].isspace():
            pos += 1
        if pos >= body_end:
            return args, call_end
        opening = _ARG_OPEN.match(text, pos, body_end)
        if opening is None and not args and _ARG_OPEN.search(text, pos, body_end) is None:
            required = [p.name for p in tools[name].params if p.required]
            if len(required) == 1:  # <tool name="read_file">src/app.py</tool>: only one place it can go
                return {required[0]: _trim_value(text[pos:body_end]).strip()}, call_end
        if opening is None:
            stray = text[pos:body_end].strip().splitlines()[0][:60]
            raise _Malformed(_explain(
                f"inside <tool name=\"{name}\"> there is text outside any <arg> tag: {stray!r}. "
                "Every argument must be written as <arg name=\"...\">value</arg>", name, tools))
        found = _NAME_ATTR.search(opening.group(1))
        if found is None:
            raise _Malformed(_explain("an <arg> tag has no name", name, tools))
        arg = next(g for g in found.groups() if g is not None).strip().lower()
        closing = _ARG_CLOSE.search(text, opening.end(), body_end)
        nested = _ARG_OPEN.search(text, opening.end(), closing.start() if closing else body_end)
        if closing is None or nested is not None:
            where = " before the next <arg>" if nested is not None else (" before </tool>" if close else "")
            raise _Malformed(_explain(f"<arg name=\"{arg}\"> is not closed{where}; end each value with </arg>", name, tools))
        if arg in args:
            raise _Malformed(_explain(f"the argument {arg!r} is given twice", name, tools))
        args[arg] = _trim_value(text[opening.end(): closing.start()])
        pos = closing.end()


def _trim_value(value: str) -> str:
    """Drop one newline after the opening tag and one before the closing tag."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _validate(name: str, args: dict[str, str], tools: Mapping[str, Tool]) -> None:
    params = {p.name: p for p in tools[name].params}
    for arg in args:
        if arg not in params:
            valid = ", ".join(params) or "none"
            raise _Malformed(_explain(f"{name} has no argument {arg!r} (its arguments: {valid})", name, tools))
    for param in params.values():
        if param.required and param.name not in args:
            raise _Malformed(_explain(f"{name} needs the argument {param.name!r}: {param.description}", name, tools))


def _near_miss(text: str, tools: Mapping[str, Tool]) -> str | None:
    """An error for text that tried to call a tool in some other format; None for plain answers."""
    lowered = text.lower()
    if "<tool_call>" in lowered or "<function" in lowered:
        return _explain("tool calls use <tool name=\"...\"> tags, not <tool_call> or JSON", None, tools)
    if _ARG_OPEN.search(text):
        return _explain("the <arg> tags must be inside a <tool name=\"...\"> tag", None, tools)
    return None


PLACEHOLDERS = {
    "path": "PATH/TO/FILE",
    "content": "(the complete new file content)",
    "search": "(the exact current lines, copied from the file)",
    "replace": "(the new lines)",
    "command": "(the shell command)",
    "pattern": "(the text or regular expression to find)",
    "glob": "*.py",
    "start_line": "1",
    "end_line": "40",
}
"""What examples show for each argument: obviously generic, never code a small model could take for the
user's (an example edit of `def total(prices)` was copied five times into a repo that has no such
function, issue 16)."""


def example_call(tool: Tool, path: str | None = None) -> ToolCall:
    """One example call of `tool`: its required arguments as placeholders (`path`: a real file of the repo)."""
    args = {}
    for param in tool.params:
        if param.required:
            args[param.name] = path if (param.name == "path" and path) else \
                PLACEHOLDERS.get(param.name, f"({param.description})")
    return ToolCall(tool.name, args)


def _explain(problem: str, name: str | None, tools: Mapping[str, Tool] | None = None) -> str:
    """The message fed back for a malformed call: what was wrong, then the correct form."""
    tools = TOOLS if tools is None else tools
    problem = problem if problem.endswith(("?", ".")) else problem + "."
    if name is not None and name in tools:
        tool = tools[name]
        example = render_tool_call(example_call(tool))
        optional = [p.name for p in tool.params if not p.required]
        extra = f" (optional arguments: {', '.join(optional)})" if optional else ""
        return f"Your tool call could not be run: {problem}\nWrite it like this{extra}:\n{example}"
    names = ", ".join(tools)
    example = render_tool_call(ToolCall("read_file", {"path": PLACEHOLDERS["path"]}))
    return (f"Your tool call could not be run: {problem}\nThe tools are: {names}. "
            f"Write one call at the end of your message, like this:\n{example}")


def render_tool_call(call: ToolCall) -> str:
    """The canonical text of a call; `parse_tool_call(render_tool_call(c)).call.args == c.args`."""
    lines = [f'<tool name="{call.name}">']
    for arg, value in call.args.items():
        for tag in (_ARG_OPEN, _ARG_CLOSE, _TOOL_CLOSE):
            if found := tag.search(value):
                raise ValueError(f"argument {arg!r} contains {found.group(0)!r}, which the call format cannot carry")
        if "\n" in value:
            lines.append(f'<arg name="{arg}">\n{value}\n</arg>')
        else:
            lines.append(f'<arg name="{arg}">{value}</arg>')
    lines.append("</tool>")
    return "\n".join(lines)


def render_tool_result(name: str, result: ToolResult) -> str:
    """What the model sees after a call (sent as a user-role message)."""
    attrs = f'tool="{name}" ok="{str(result.ok).lower()}"'
    if result.exit_code is not None:
        attrs += f' exit_code="{result.exit_code}"'
    if result.error_kind:
        attrs += f' error="{result.error_kind}"'
    output = result.output if result.output.strip() else "(no output)"
    return f"<result {attrs}>\n{output}\n</result>"


def render_call_error(error: str) -> str:
    """The user-role message for a malformed call, shaped like a tool result."""
    return f'<result ok="false" error="malformed_call">\n{error}\n</result>'
