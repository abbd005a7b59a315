"""read_file, write_file and edit: the tools that look at and change one file.

Edits are exact search/replace that must match once: a small model's edit is
checkable, and when it does not match, the error names the closest text (with
its line number) so the next attempt, or the training signal, has something
concrete to go on. Writes are atomic (`continualcode.atomic`: temp file in the
same directory, fsync, rename) so an interrupted agent never leaves half a file,
and they walk down from the repository root without following a symlink, so a
link swapped in after the path check cannot redirect them.

These tools run without approval (read_file) or before it (previews), so they
must not hang or flood: only regular files are opened (a FIFO, socket or device
is refused at once, and opening is non-blocking to close the race), and
read_file caps each line and each call in bytes.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import shlex
import stat
from pathlib import Path

from continualcode.atomic import atomic_write_at
from continualcode.tools.base import BaseTool, Param, ToolArgError, ToolResult, int_arg
from continualcode.tools.config import ToolConfig
from continualcode.tools.workspace import PathRefused, Workspace

_NUMBERED_LINE = re.compile(r"^ *\d+\| ?")
_COUNT_LIMIT = 256 * 1024 * 1024
"""Bytes read_file reads past what it shows to count a file's lines (~0.1 s); past that it says so."""


def number_lines(lines: list[str], first: int) -> str:
    """The numbered form read_file shows: right-aligned number, '| ', the line."""
    return "\n".join(f"{first + i:>4}| {line}" for i, line in enumerate(lines))


class NotRegularFile(OSError):
    """A FIFO, socket, device or directory where a regular file is needed (reading one could block)."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _refuse_irregular(mode: int, path: Path) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise NotRegularFile(0, f"is {kind}, not a regular file; these tools read and write regular files only",
                             str(path))


def open_regular(path: Path) -> int:
    """A read-only descriptor of the regular file ``path``; anything else is refused without blocking."""
    _refuse_irregular(os.stat(path).st_mode, path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _refuse_irregular(os.fstat(fd).st_mode, path)  # swapped in between the stat and the open
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_text(path: Path) -> str:
    """A text file's contents; raises UnicodeDecodeError for binary files (NUL bytes)."""
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read()
    if b"\x00" in data[:8192]:
        raise UnicodeDecodeError("utf-8", data[:1], 0, 1, "binary file")
    return data.decode("utf-8")


def read_excerpt(path: Path, start: int, last: int,
                 config: ToolConfig) -> tuple[list[str], dict[int, int], int | None]:
    """Lines ``start``..``last`` of a text file, within read_file's byte budgets, read as a stream.

    Returns (the lines shown, {line number: its length in bytes} for lines cut to
    `read_max_line_bytes`, the file's line count or None when it is too big to count).
    """
    with os.fdopen(open_regular(path), "rb") as f:
        if b"\x00" in f.read(8192):
            raise UnicodeDecodeError("utf-8", b"\x00", 0, 1, "binary file")
        f.seek(0)
        shown: list[str] = []
        cut: dict[int, int] = {}
        size, number, offset = 0, 0, 0
        for head, length, newline in _lines(f, config.read_max_line_bytes):
            number += 1
            offset += length + newline
            if number < start:
                continue
            size += min(length, config.read_max_line_bytes) + 8
            if shown and size > config.read_max_bytes:
                number -= 1
                offset -= length + newline
                break
            if length > len(head):
                cut[number] = length
                shown.append(codecs.getincrementaldecoder("utf-8")().decode(head, final=False))
            else:
                shown.append(head.removesuffix(b"\r").decode("utf-8"))
            if number >= last:
                break
        return shown, cut, _count_lines(f, offset, number)


def _lines(f, cap: int):
    """(the first ``cap`` bytes, the length, whether a newline ended it) for each line of ``f``."""
    head, length = bytearray(), 0
    while chunk := f.read(1 << 20):
        at = 0
        while True:
            end = chunk.find(b"\n", at)
            piece = chunk[at:] if end < 0 else chunk[at:end]
            if len(head) < cap:
                head += piece[: cap - len(head)]
            length += len(piece)
            if end < 0:
                break
            yield bytes(head), length, True
            head, length, at = bytearray(), 0, end + 1
    if length:
        yield bytes(head), length, False


def _count_lines(f, offset: int, before: int) -> int | None:
    """``before`` plus the lines from byte ``offset`` on; None when that is more than _COUNT_LIMIT bytes."""
    if os.fstat(f.fileno()).st_size - offset > _COUNT_LIMIT:
        return None
    f.seek(offset)
    count, last = before, b"\n"
    while chunk := f.read(1 << 20):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (last != b"\n")


def write_atomic(root: Path, path: Path, data: str | bytes) -> None:
    """Write ``path`` (resolved, inside ``root``) so readers see the old file or the new one.

    The directories from ``root`` down are opened one by one with O_NOFOLLOW
    (created when missing), so a symlink swapped into the path after
    `Workspace.resolve` checked it cannot lead the write elsewhere; the
    directory reached must be the one the path names now (device and inode);
    a target that became a symlink or a non-regular file is refused. An
    existing file keeps its mode; a new one gets 0666 less the umask, as an editor would make it.
    """
    rel = path.relative_to(root)
    data = data.encode("utf-8") if isinstance(data, str) else data
    try:
        expected = os.stat(path.parent)
    except FileNotFoundError:
        expected = None  # created below
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.parts[:-1]:
            try:
                os.mkdir(part, dir_fd=directory)
            except FileExistsError:
                pass
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            except OSError as exc:
                raise PathRefused(rel.as_posix(), f"{part!r} is no longer a directory (a symlink or file was put "
                                  f"there after the path was checked: {exc.strerror}); nothing was written") from exc
            os.close(directory)
            directory = inner
        found = os.fstat(directory)
        if expected is not None and (found.st_dev, found.st_ino) != (expected.st_dev, expected.st_ino):
            raise PathRefused(rel.as_posix(), "its directory changed after the path was checked; nothing was written")
        atomic_write_at(directory, rel.name, data, _target_mode(directory, rel))
    finally:
        os.close(directory)


def _target_mode(directory: int, rel: Path) -> int:
    try:
        target = os.stat(rel.name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return 0o666 & ~_umask()
    if stat.S_ISLNK(target.st_mode):
        raise PathRefused(rel.as_posix(), "it became a symlink after the path was checked; nothing was written")
    _refuse_irregular(target.st_mode, rel)
    return stat.S_IMODE(target.st_mode)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it)."""
    status = Path("/proc/self/status")
    found = re.search(r"^Umask:\s*([0-7]+)", status.read_text(), re.MULTILINE) if status.exists() else None
    return int(found.group(1), 8) if found else 0o022


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
        rel = ws.relative(path)
        if path.is_dir():
            return ToolResult(False, f"{rel} is a directory; use list_files to see what is in it",
                              error_kind="os_error")
        start = int_arg(args, "start_line", 1)
        end = int_arg(args, "end_line", 0) or start + self.config.read_max_lines - 1
        last = min(end, start + self.config.read_max_lines - 1)
        shown, cut, total = read_excerpt(path, start, last, self.config)
        if total == 0:
            return ToolResult(True, f"{rel} is empty")
        if not shown and total is not None and start > total:
            raise ToolArgError(f"start_line {start} is past the end: {rel} has {total} lines")
        end = start + len(shown) - 1
        cap = self.config.read_max_line_bytes
        text = number_lines([line + (f" [... line cut at {cap} of {cut[n]} bytes]" if n in cut else "")
                             for n, line in enumerate(shown, start)], start)
        if start > 1 or total is None or end < total:
            more = f"; use start_line={end + 1} to read on" if total is None or end < total else ""
            text += f"\n(lines {start}-{end} of {total if total is not None else 'more than ' + str(end)}{more})"
        if cut:
            first = min(cut)
            text += (f"\n(lines longer than {cap} bytes are cut; to see more of line {first}, use bash, "
                     f"e.g. sed -n {first}p {shlex.quote(rel)} | cut -b {cap + 1}-{2 * cap})")
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
        if path.exists():
            _refuse_irregular(path.stat().st_mode, path)

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
        write_atomic(ws.root, path, content)
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
        write_atomic(ws.root, path, new)
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
