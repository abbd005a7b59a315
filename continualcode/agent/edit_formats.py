"""How a candidate fix is written: three forms a small model can be asked for, and their parsers.

- ``whole``: the complete corrected file (``### path`` then a fenced block).
  Easiest to write, costly in tokens for anything but small files.
- ``search_replace``: aider-style blocks (``path``, ``<<<<<<< SEARCH``, the
  current lines, ``=======``, the new lines, ``>>>>>>> REPLACE``). Short;
  the current lines must be copied (matched leniently: trailing spaces and a
  consistent indentation shift are forgiven).
- ``lines``: files are shown numbered; the reply names ``path:START-END``
  (or ``path:LINE``) and gives the new lines in a fenced block. Shortest;
  needs the model to read the numbers right.
- ``function``: the corrected function (or method), whole, in a fenced
  block; it replaces the function of the same name (a new name is added to
  the module the tests import it from). Between the other two in length, and
  the unit a code model has seen most often.

Each parser returns the new full text of every file it changes, so the repair
flow applies any form the same way. Which one ships as the default was
measured on the public agent benchmark (docs/agent.md).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterator, Protocol

from continualcode.agent.failures import is_test_file
from continualcode.agent.function_parts import def_start


class CandidateError(ValueError):
    """A reply that is not a usable fix; the message says why (it is the candidate's feedback)."""


_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(?P<body>.*?)(?:\n```|\Z)", re.DOTALL)
_HEADER = re.compile(r"^(?:#+\s*|File:\s*|\*\*)?`?(?P<path>[\w./-]+\.\w+)`?(?:\*\*)?\s*:?\s*$", re.MULTILINE)


def number_lines(text: str) -> str:
    return "\n".join(f"{i:>4}| {line}" for i, line in enumerate(text.splitlines(), 1))


class EditFormat(Protocol):
    name: str
    stop: tuple[str, ...]
    """Where a reply is complete: generation stops there (small models ramble on after the fix)."""

    def show(self, path: str, text: str) -> str: ...
    def instructions(self, editable: list[str], suspects: list[tuple[str, str]] = ()) -> str: ...
    def parse(self, reply: str, files: dict[str, str]) -> dict[str, str]: ...
    def max_new_tokens(self, files: dict[str, str]) -> int: ...


def _fenced(path: str, text: str) -> str:
    return f"### {path}\n```python\n{text.rstrip()}\n```"


def check_python(path: str, text: str) -> None:
    if path.endswith(".py"):
        try:
            ast.parse(text)
        except SyntaxError as exc:
            raise CandidateError(f"{path} would not parse: {exc.msg} (line {exc.lineno})") from None


CLOSING_FENCE = ("\n```\n",)
"""The end of the fenced block (the opening fence is "```python", so it does not match)."""


@dataclass(frozen=True)
class WholeFile:
    name: str = "whole"
    stop: tuple[str, ...] = CLOSING_FENCE

    def show(self, path: str, text: str) -> str:
        return _fenced(path, text)

    def instructions(self, editable: list[str], suspects: list[tuple[str, str]] = ()) -> str:
        target = editable[0] if editable else "the file"
        return (f"Reply with the complete corrected file: first a line `### {target}` (the file's path), then "
                "the whole file in one ```python block, every line, changed or not. Change only what the fix "
                "needs. Do not change the tests.")

    def parse(self, reply: str, files: dict[str, str]) -> dict[str, str]:
        blocks = [(m.start(), m.group("body")) for m in _FENCE.finditer(reply)]
        if not blocks:
            raise CandidateError("the reply has no ```python block with the corrected file")
        editable = [p for p in files if p in reply] or list(files)
        out: dict[str, str] = {}
        for start, body in blocks:
            headers = [m for m in _HEADER.finditer(reply, 0, start) if m.group("path") in files]
            path = headers[-1].group("path") if headers else (editable[0] if len(blocks) == 1 else None)
            if path is None or path in out:
                continue
            out[path] = body.rstrip("\n") + "\n"
        if not out:
            raise CandidateError("no code block could be matched to one of the files shown")
        return out

    def max_new_tokens(self, files: dict[str, str]) -> int:
        longest = max((len(t) for p, t in files.items() if not is_test_file(p)), default=400)
        return min(1024, 40 + longest // 3)


_SR_BLOCK = re.compile(r"(?P<path>[^\n`]*?)\n*(?:```[\w-]*\n)?<{5,9} ?SEARCH\n(?P<search>.*?)\n?={5,9}\n"
                       r"(?P<replace>.*?)\n?>{5,9} ?REPLACE", re.DOTALL)


@dataclass(frozen=True)
class SearchReplace:
    name: str = "search_replace"
    stop: tuple[str, ...] = ("REPLACE\n",)

    def show(self, path: str, text: str) -> str:
        return _fenced(path, text)

    def instructions(self, editable: list[str], suspects: list[tuple[str, str]] = ()) -> str:
        target = editable[0] if editable else "app.py"
        return ("Reply with the fix as a search/replace block: the file's path on its own line, then\n"
                "<<<<<<< SEARCH\n(the current lines to change, copied exactly)\n=======\n(the new lines)\n"
                f">>>>>>> REPLACE\nFor example, to change a line of {target}:\n{target}\n<<<<<<< SEARCH\n"
                "    old line\n=======\n    new line\n>>>>>>> REPLACE\n"
                "Keep the blocks short: only the lines that change. Do not change the tests.")

    def parse(self, reply: str, files: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        blocks = list(_SR_BLOCK.finditer(reply))
        if not blocks:
            raise CandidateError("the reply has no <<<<<<< SEARCH / ======= / >>>>>>> REPLACE block")
        for block in blocks:
            named = block.group("path").strip().strip("`*#: ")
            path = named if named in files else (next(iter(files)) if len(files) == 1 else None)
            if path is None:
                path = next((p for p in files if p.endswith(named) or named.endswith(p)), None) if named else None
            if path is None:
                raise CandidateError(f"the block names {named!r}, which is not one of the files shown")
            current = out.get(path, files[path])
            out[path] = replace_lines(current, block.group("search"), block.group("replace"), path)
        return out

    def max_new_tokens(self, files: dict[str, str]) -> int:
        return 256


def replace_lines(text: str, search: str, replace: str, path: str) -> str:
    """`text` with the lines `search` replaced by `replace`: exact first, then forgiving whitespace."""
    if search and text.count(search) == 1:
        return text.replace(search, replace, 1)
    lines = text.splitlines()
    want = [line.rstrip() for line in search.splitlines()]
    while want and not want[0].strip():
        want.pop(0)
    while want and not want[-1].strip():
        want.pop()
    if not want:
        raise CandidateError(f"the SEARCH part for {path} is empty")
    hits = [i for i in range(len(lines) - len(want) + 1)
            if [line.strip() for line in lines[i:i + len(want)]] == [w.strip() for w in want]]
    if len(hits) != 1:
        raise CandidateError(f"the SEARCH lines {'match nothing' if not hits else 'match several places'} in {path}; "
                             "copy them exactly from the file")
    at = hits[0]
    shift = _indent(lines[at]) - _indent(want[0])
    new = [(" " * shift + line if shift > 0 else line[min(-shift, _indent(line)):]) if line.strip() else line
           for line in replace.splitlines()]
    result = lines[:at] + new + lines[at + len(want):]
    return "\n".join(result) + ("\n" if text.endswith("\n") else "")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


_LINES_HEADER = re.compile(r"(?P<path>[\w./-]+\.\w+)\s*:\s*(?:lines?\s*)?(?P<start>\d+)(?:\s*-\s*(?P<end>\d+))?")


@dataclass(frozen=True)
class LineRange:
    name: str = "lines"
    stop: tuple[str, ...] = CLOSING_FENCE

    def show(self, path: str, text: str) -> str:
        return f"### {path}\n```\n{number_lines(text)}\n```"

    def instructions(self, editable: list[str], suspects: list[tuple[str, str]] = ()) -> str:
        target = editable[0] if editable else "app.py"
        return ("The files are shown with line numbers. Reply with the line range to replace and the new lines: "
                f"a line `{target}:START-END` (or `{target}:LINE` for one line), then the new lines, without "
                "numbers, in one ```python block. Only the lines that change. Do not change the tests.")

    def parse(self, reply: str, files: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        edits = []
        for block in _FENCE.finditer(reply):
            headers = list(_LINES_HEADER.finditer(reply, 0, block.start()))
            if not headers:
                continue
            header = headers[-1]
            path = header.group("path")
            if path not in files:
                path = next((p for p in files if p.endswith(path)), None)
                if path is None:
                    raise CandidateError(f"{header.group('path')!r} is not one of the files shown")
            start = int(header.group("start"))
            end = int(header.group("end") or start)
            body = re.sub(r"^ *\d+\| ?", "", block.group("body"), flags=re.MULTILINE)
            edits.append((path, start, end, body))
        if not edits:
            raise CandidateError("the reply has no `path:START-END` line followed by a ```python block")
        for path, start, end, body in sorted(edits, key=lambda e: (e[0], -e[1])):
            lines = out.get(path, files[path]).splitlines()
            if not 1 <= start <= end <= len(lines):
                raise CandidateError(f"lines {start}-{end} are outside {path} (it has {len(lines)} lines)")
            lines[start - 1:end] = body.splitlines()
            out[path] = "\n".join(lines) + "\n"
        return out

    def max_new_tokens(self, files: dict[str, str]) -> int:
        return 192


@dataclass(frozen=True)
class FunctionRewrite:
    name: str = "function"
    stop: tuple[str, ...] = CLOSING_FENCE

    def show(self, path: str, text: str) -> str:
        return _fenced(path, text)

    def instructions(self, editable: list[str], suspects: list[tuple[str, str]] = ()) -> str:
        target = f"`{suspects[0][1]}`" if len(suspects) == 1 else "function"
        return (f"Reply with the corrected {target}: one ```python block holding the fixed `def` (a method: just "
                "its `def`), without its docstring, nothing else. Fix the bug the failing test shows; change "
                "nothing else. Do not change the tests.")

    def parse(self, reply: str, files: dict[str, str]) -> dict[str, str]:
        blocks = [m.group("body") for m in _FENCE.finditer(reply)] or [reply]
        out: dict[str, str] = {}
        found = False
        wanted = _names_tests_need(files)
        for body in blocks:
            for name, source in _functions_in(body):
                place = _place_of(name, {p: out.get(p, t) for p, t in files.items()})
                if place is None and name not in wanted:
                    continue  # a helper or a copy of the test code: not part of the fix
                found = True
                if place is None:
                    target = next((p for p in files if not is_test_file(p)), None)
                    if target is None:
                        raise CandidateError(f"no file to add {name} to")
                    current = out.get(target, files[target])
                    out[target] = current.rstrip("\n") + "\n\n\n" + source.rstrip("\n") + "\n"
                    continue
                path, start, end, indent = place
                lines = out.get(path, files[path]).splitlines()
                source = _keep_docstring(source, "\n".join(lines[start - 1:end]))
                new = _reindent(source, indent).splitlines()
                lines[start - 1:end] = new
                out[path] = "\n".join(lines) + "\n"
        if not found:
            raise CandidateError("the reply has no `def` (a complete function in a ```python block)")
        return out

    def max_new_tokens(self, files: dict[str, str]) -> int:
        return 320


def _parsed(files: dict[str, str], *, tests: bool) -> Iterator[tuple[str, ast.Module]]:
    """(path, syntax tree) of the test files (tests=True) or of the other Python files; files that do
    not parse are skipped."""
    for path, text in files.items():
        if is_test_file(path) != tests or not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        yield path, tree


def _names_tests_need(files: dict[str, str]) -> set[str]:
    """Names the test files use but do not define (a missing function the fix may add)."""
    used, defined = set(), set()
    for _, tree in _parsed(files, tests=True):
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.alias):
                used.add(node.asname or node.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
    return used - defined


def _parseable_prefix(text: str) -> ast.Module:
    """`text` parsed, or its longest prefix that parses (a reply cut off, or rambling into a broken
    second function after the fixed one)."""
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        error = exc
    lines = text.splitlines()
    for end in range(len(lines) - 1, 0, -1):
        try:
            tree = ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body):
            return tree
    raise CandidateError(f"the function does not parse: {error.msg} (line {error.lineno})") from None


def _functions_in(code: str) -> list[tuple[str, str]]:
    """(name, source) of every function defined at the top of `code` or inside its classes."""
    text = _dedent(code)
    tree = _parseable_prefix(text)
    lines = text.splitlines()
    found = []
    for node in tree.body:
        nodes = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in nodes:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = def_start(item)
                source = _dedent("\n".join(lines[start - 1:item.end_lineno]))
                # `def  name(`: a forced prefix ending in "def " and the model's " name" token
                found.append((item.name, re.sub(rf"^(\s*(?:async\s+)?def)\s+{item.name}\b", rf"\1 {item.name}",
                                                source, count=1, flags=re.MULTILINE)))
    return found


def _place_of(name: str, files: dict[str, str]) -> tuple[str, int, int, int] | None:
    """(path, first line, last line, indentation) of the one function or method called `name`."""
    hits = []
    for path, tree in _parsed(files, tests=False):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                start = def_start(node)
                hits.append((path, start, node.end_lineno, node.col_offset))
    if len(hits) > 1:
        raise CandidateError(f"several functions are called {name}; cannot tell which one the fix replaces")
    return hits[0] if hits else None


def _keep_docstring(new: str, old: str) -> str:
    """`new` with `old`'s docstring put back when the candidate left it out (it was told it may)."""
    try:
        old_node = ast.parse(_dedent(old)).body[0]
        new_node = ast.parse(_dedent(new)).body[0]
    except (SyntaxError, IndexError):
        return new
    doc = ast.get_docstring(old_node, clean=False) if isinstance(old_node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if not doc or not isinstance(new_node, (ast.FunctionDef, ast.AsyncFunctionDef)) or ast.get_docstring(new_node):
        return new
    old_lines = _dedent(old).splitlines()
    first = old_node.body[0]
    doc_lines = old_lines[first.lineno - 1:first.end_lineno]
    new_lines = _dedent(new).splitlines()
    body_at = new_node.body[0].lineno - 1
    indent = len(new_lines[body_at]) - len(new_lines[body_at].lstrip())
    doc_indent = len(doc_lines[0]) - len(doc_lines[0].lstrip())
    shifted = [(" " * indent + line[doc_indent:]) if line.strip() else line for line in doc_lines]
    return "\n".join(new_lines[:body_at] + shifted + new_lines[body_at:])


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code.strip("\n"))


def _reindent(source: str, indent: int) -> str:
    return "\n".join((" " * indent + line) if line.strip() else line for line in _dedent(source).splitlines())


FORMATS: dict[str, EditFormat] = {f.name: f for f in (WholeFile(), SearchReplace(), LineRange(), FunctionRewrite())}
