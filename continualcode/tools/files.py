"""read_file, write_file and edit: the tools that look at and change one file.

Edits are exact search/replace that must match once: a small model's edit is
checkable, and when it does not match, the error names the closest text (with
its line number) so the next attempt, or the training signal, has something
concrete to go on. Writes are atomic (temp file in the same directory, fsync,
rename) so an interrupted agent never leaves half a file.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from pathlib import Path

from continualcode.tools.base import BaseTool, Param, ToolArgError, ToolResult, int_arg
from continualcode.tools.config import ToolConfig
from continualcode.tools.workspace import Workspace

_NUMBERED_LINE = re.compile(r"^ *\d+\| ?")


def number_lines(lines: list[str], first: int) -> str:
    """The numbered form read_file shows: right-aligned number, '| ', the line."""
    return "\n".join(f"{first + i:>4}| {line}" for i, line in enumerate(lines))


def read_text(path: Path) -> str:
    """A text file's contents; raises UnicodeDecodeError for binary files (NUL bytes)."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise UnicodeDecodeError("utf-8", data[:1], 0, 1, "binary file")
    return data.decode("utf-8")


def write_atomic(path: Path, text: str) -> None:
    """Write text so readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")


class ReadFileTool(BaseTool):
    name = "read_file"
    description = "Read a file; shows its lines numbered. Read a file before you edit it."
    params = (
        Param("path", "file path relative to the repository root"),
        Param("start_line", "first line to show (default 1)", required=False),
        Param("end_line", "last line to show (default: as many as fit)", required=False),
    )
    example = {"path": "app.py"}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        ws.resolve(args["path"].strip())
        int_arg(args, "start_line")
        int_arg(args, "end_line")

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        path = ws.resolve(args["path"].strip())
        if path.is_dir():
            return ToolResult(False, f"{ws.relative(path)} is a directory; use list_files to see what is in it", error_kind="os_error")
        lines = read_text(path).splitlines()
        if not lines:
            return ToolResult(True, f"{ws.relative(path)} is empty")
        start = int_arg(args, "start_line", 1)
        end = int_arg(args, "end_line", len(lines))
        if start > len(lines):
            raise ToolArgError(f"start_line {start} is past the end: {ws.relative(path)} has {len(lines)} lines")
        end = min(end, len(lines), start + self.config.read_max_lines - 1)
        shown: list[str] = []
        size = 0
        for line in lines[start - 1:end]:
            size += len(line) + 8
            if shown and size > self.config.read_max_bytes:
                break
            shown.append(line)
        end = start + len(shown) - 1
        text = number_lines(shown, start)
        if start > 1 or end < len(lines):
            more = f"; use start_line={end + 1} to read on" if end < len(lines) else ""
            text += f"\n(lines {start}-{end} of {len(lines)}{more})"
        return ToolResult(True, text)


class WriteFileTool(BaseTool):
    name = "write_file"
    description = "Create a new file, or replace a whole file, with the given content."
    needs_approval = True
    params = (
        Param("path", "file path relative to the repository root"),
        Param("content", "the complete new file content"),
    )
    example = {"path": "lib/greet.py", "content": 'def greet(name):\n    return f"Hello, {name}!"'}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        path = ws.resolve(args["path"].strip(), write=True)
        if path.is_dir():
            raise ToolArgError(f"{ws.relative(path)} is a directory; give a file path")

    @staticmethod
    def _content(args: dict[str, str]) -> str:
        content = args["content"]
        return content + "\n" if content and not content.endswith("\n") else content

    def preview(self, args: dict[str, str], ws: Workspace) -> str:
        path = ws.resolve(args["path"].strip(), write=True)
        old = read_text(path) if path.is_file() else ""
        header = "" if path.exists() else f"new file {ws.relative(path)}\n"
        return header + _diff(old, self._content(args), ws.relative(path))

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        path = ws.resolve(args["path"].strip(), write=True)
        content = self._content(args)
        existed = path.exists()
        old_lines = len(read_text(path).splitlines()) if existed else 0
        write_atomic(path, content)
        lines = len(content.splitlines())
        rel = ws.relative(path)
        what = f"overwrote {rel} ({lines} lines, was {old_lines})" if existed else f"created {rel} ({lines} lines)"
        return ToolResult(True, what, changed_paths=[rel])


class EditTool(BaseTool):
    name = "edit"
    description = "Change part of a file: the exact text in search (found once) becomes replace."
    needs_approval = True
    params = (
        Param("path", "file path relative to the repository root"),
        Param("search", "the exact current text, copied from the file"),
        Param("replace", "the new text"),
    )
    example = {"path": "app.py", "search": "def total(prices):\n    return max(prices)", "replace": "def total(prices):\n    return sum(prices)"}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        if args["search"] == "":
            raise ToolArgError("search is empty; copy the exact text to replace from the file (use write_file to create a new file)")
        self._plan(args, ws)  # a call that cannot match is refused before the approval prompt

    def _plan(self, args: dict[str, str], ws: Workspace) -> tuple[Path, str, str, str, tuple[int, int]]:
        """(path, old text, new text, note, changed line range in the new text);
        raises a ToolArgError explaining a failed match."""
        path = ws.resolve(args["path"].strip(), write=True)
        rel = ws.relative(path)
        if not path.exists():
            raise ToolArgError(f"{rel} does not exist; use write_file to create a new file", "not_found")
        if path.is_dir():
            raise ToolArgError(f"{rel} is a directory; edit needs a file")
        text = read_text(path)
        search, replace = args["search"], args["replace"]
        if "\r\n" in text and "\r" not in search:  # a CRLF file, a model that writes \n
            search, replace = search.replace("\n", "\r\n"), replace.replace("\n", "\r\n")
        note = ""
        starts = _occurrences(text, search)
        if not starts:
            unnumbered = _strip_line_numbers(search)
            if unnumbered is not None and len(_occurrences(text, unnumbered)) == 1:
                search, replace = unnumbered, _strip_line_numbers(replace) or replace
                starts = _occurrences(text, search)
                note = " (the line numbers copied from read_file were dropped from search)"
        if not starts:
            raise ToolArgError(_no_match_message(text, search, rel), "no_match")
        if len(starts) > 1:
            lines = ", ".join(str(text.count("\n", 0, s) + 1) for s in starts[:10])
            raise ToolArgError(
                f"search matches {len(starts)} places in {rel} (lines {lines}); "
                "include more surrounding lines in search so it matches exactly once",
                "multiple_matches",
            )
        at = starts[0]
        first = text.count("\n", 0, at) + 1
        return path, text, text[:at] + replace + text[at + len(search):], note, (first, first + replace.count("\n"))

    def preview(self, args: dict[str, str], ws: Workspace) -> str:
        path, old, new, _, _ = self._plan(args, ws)
        return _diff(old, new, ws.relative(path))

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        path, _, new, note, (first, last) = self._plan(args, ws)
        write_atomic(path, new)
        rel = ws.relative(path)
        new_lines = new.splitlines()
        lo, hi = max(1, first - 2), min(len(new_lines), last + 2)
        if hi < lo:
            return ToolResult(True, f"edited {rel}{note}; the file is now empty", changed_paths=[rel])
        snippet = number_lines(new_lines[lo - 1:hi], lo)
        return ToolResult(True, f"edited {rel}{note}; lines {lo}-{hi} now read:\n{snippet}", changed_paths=[rel])


def _occurrences(text: str, search: str) -> list[int]:
    """Start offsets of every occurrence, overlapping ones included ('aa' in 'aaa' is two)."""
    found, at = [], text.find(search)
    while at >= 0:
        found.append(at)
        at = text.find(search, at + 1)
    return found


def _strip_line_numbers(text: str) -> str | None:
    """`text` without read_file's '  12| ' prefixes, if every line has one; else None."""
    lines = text.split("\n")
    if not lines or not all(_NUMBERED_LINE.match(line) for line in lines):
        return None
    return "\n".join(_NUMBERED_LINE.sub("", line, count=1) for line in lines)


def _no_match_message(text: str, search: str, rel: str) -> str:
    """Name the closest block of the file (difflib), with its line number, to guide the retry."""
    lines = text.splitlines()
    want = search.strip("\n").splitlines() or [search]
    size = len(want)
    target = "\n".join(want)
    best_ratio, best_at = 0.0, -1
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    for at in range(max(1, len(lines) - size + 1)):
        window = "\n".join(lines[at:at + size])
        matcher.set_seq1(window)
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best_ratio, best_at = ratio, at
    message = f"search does not match anything in {rel}."
    if best_at < 0 or best_ratio < 0.3:
        return message + " Nothing in the file is close; read_file the file and copy the text to change exactly."
    closest = lines[best_at:best_at + size]
    hint = ""
    if [line.strip() for line in closest] == [line.strip() for line in want]:
        hint = " It differs only in indentation or trailing spaces."
    return (
        f"{message} The closest text is at line {best_at + 1} ({best_ratio:.0%} similar).{hint}\n"
        f"{number_lines(closest, best_at + 1)}\n"
        "Copy search exactly from the file (without the line numbers) and try again."
    )
