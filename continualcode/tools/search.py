"""list_files and grep: the read-only tools for finding things in the repository.

Both walk the tree themselves (no `find`/`rg` dependency), never follow
symlinked directories, and skip .git, the agent's store, virtualenvs and caches,
so the listing is about the user's code and stays small enough for a small
model's context.

grep runs without approval, so it must not hang: the search runs in a worker
thread, matching with the `regex` package (Python's `re` syntax; it releases the
GIL while matching), and the call returns, with the matches found so far and a
message, when one line's match has taken `grep_match_timeout` seconds (a
pattern that backtracks catastrophically) or the whole search `grep_timeout`.
The stopped worker ends at its next line, or when `regex`'s own timeout (the
same number of seconds of its CPU time) ends the match it is in. Only regular
files are opened (non-blocking: a FIFO is skipped, not waited on).
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import regex

from continualcode.tools.base import BaseTool, Param, ToolArgError, ToolResult
from continualcode.tools.config import ToolConfig
from continualcode.tools.files import open_regular
from continualcode.tools.workspace import Workspace, is_git_name


def walk_files(start: Path, skip_dirs: tuple[str, ...]) -> Iterator[Path]:
    """Files under `start` in sorted order, skipping `skip_dirs` and virtualenvs, not following dir symlinks."""
    if not start.is_dir():
        yield start
        return
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not is_git_name(d)
                             and not os.path.isfile(os.path.join(dirpath, d, "pyvenv.cfg")))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def matches_glob(rel: str, pattern: str) -> bool:
    """`*.py` matches by file name anywhere; a pattern with '/' matches the relative path."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern)
    pattern = pattern.removeprefix("./")
    return fnmatch.fnmatchcase(rel, pattern) or (
        pattern.startswith("**/") and fnmatch.fnmatchcase(rel, pattern[3:])
    )


class ListFilesTool(BaseTool):
    name = "list_files"
    description = "List the files in the repository, or in one directory."
    params = (
        Param("path", "directory relative to the repository root (default .)", required=False),
        Param("pattern", "glob such as *.py or tests/test_*.py", required=False),
    )
    example = {"path": "tests"}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        ws.resolve(args.get("path", "").strip() or ".")

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        start = ws.resolve(args.get("path", "").strip() or ".")
        if not start.exists():
            raise ToolArgError(f"{args['path'].strip()} does not exist; list_files with no path shows the whole repository", "not_found")
        pattern = args.get("pattern", "").strip()
        found: list[str] = []
        total = 0
        for path in walk_files(start, self.config.skip_dirs):
            rel = ws.relative(path)
            if pattern and not matches_glob(rel, pattern):
                continue
            total += 1
            if len(found) < self.config.list_max_entries:
                found.append(rel)
        where = ws.relative(start)
        if not found:
            what = f" matching {pattern}" if pattern else ""
            return ToolResult(True, f"no files{what} under {where}")
        text = "\n".join(found)
        if total > len(found):
            text += f"\n({total - len(found)} more files not shown; narrow with path or pattern)"
        return ToolResult(True, text)


class GrepTool(BaseTool):
    name = "grep"
    description = "Find where a name or text appears in the files (a regular expression)."
    params = (
        Param("pattern", "Python regular expression, e.g. def parse_"),
        Param("path", "file or directory to search (default .)", required=False),
        Param("glob", "only files matching this glob, e.g. *.py", required=False),
    )
    example = {"pattern": "class User"}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        ws.resolve(args.get("path", "").strip() or ".")
        self._compile(args["pattern"])

    @staticmethod
    def _compile(pattern: str) -> regex.Pattern:
        if not pattern:
            raise ToolArgError("pattern is empty; give the text or regular expression to search for")
        try:
            return regex.compile(pattern)
        except (regex.error, ValueError) as exc:
            raise ToolArgError(
                f"pattern {pattern!r} is not a valid regular expression ({exc}); escape special characters like ( [ . * with a backslash"
            ) from None

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        start = ws.resolve(args.get("path", "").strip() or ".")
        if not start.exists():
            raise ToolArgError(f"{args['path'].strip()} does not exist", "not_found")
        search = _Search(self, ws, start, self._compile(args["pattern"]), args.get("glob", "").strip())
        worker = threading.Thread(target=search.run, name="grep", daemon=True)
        began = time.monotonic()
        worker.start()
        while worker.is_alive():
            worker.join(0.02)
            if search.matching_time() > self.config.grep_match_timeout:
                search.slow = search.where
            elif time.monotonic() - began > self.config.grep_timeout:
                search.late = True
            else:
                continue
            search.stop = True
            break  # the worker ends on its own (see the module docstring)
        if search.error is not None:
            raise search.error
        limit, pattern = self.config.grep_max_matches, search.pattern.pattern
        hits = search.hits[: limit + 1]
        if search.slow:
            note = (f"(stopped: matching {pattern!r} took over {self.config.grep_match_timeout:g} s on one line, "
                    f"at {search.slow}; nested repetition like (a+)+ or (.*)* can take exponential time on long "
                    "lines; simplify the pattern, or narrow with path or glob)")
            return ToolResult(False, "\n".join([*hits[:limit], note]), error_kind="timeout")
        if search.late:
            note = (f"(stopped after {self.config.grep_timeout:g} s, having searched {search.files} files; "
                    "narrow with path or glob)")
            return ToolResult(True, "\n".join([*hits[:limit], note]))
        if not hits:
            return ToolResult(True, f"no matches for {pattern!r} in {search.files} files under {ws.relative(start)}")
        if len(hits) > limit:
            return ToolResult(True, "\n".join(hits[:limit]) + f"\n(stopped after {limit} matches; narrow with path, glob or a more specific pattern)")
        return ToolResult(True, "\n".join(hits))

    def _text_lines(self, path: Path) -> list[str] | None:
        """The file's lines, or None for files grep skips (binary, huge, unreadable, links, FIFOs)."""
        try:
            if path.is_symlink():
                return None
            with os.fdopen(open_regular(path), "rb") as f:
                if os.fstat(f.fileno()).st_size > self.config.grep_max_file_bytes:
                    return None
                data = f.read(self.config.grep_max_file_bytes + 1)
        except OSError:
            return None
        if b"\x00" in data[:8192]:
            return None
        return data.decode("utf-8", errors="replace").splitlines()


class _Search:
    """One grep's walk; it runs in a worker thread so the call can stop it at a wall-clock budget."""

    def __init__(self, tool: GrepTool, ws: Workspace, start: Path, pattern: regex.Pattern, glob: str) -> None:
        self.tool, self.ws, self.start, self.pattern, self.glob = tool, ws, start, pattern, glob
        self.hits: list[str] = []
        self.files = 0
        self.since: float | None = None     # when the match in progress began
        self.where = ""
        self.slow: str | None = None        # file:line where one match ran out of time
        self.late = False                   # the whole search ran out of time
        self.stop = False
        self.error: BaseException | None = None

    def matching_time(self) -> float:
        """Seconds the match in progress has taken so far (0 between matches)."""
        since = self.since
        return time.monotonic() - since if since is not None else 0.0

    def run(self) -> None:
        try:
            self._walk()
        except BaseException as exc:  # raised again in the calling thread
            self.error = exc

    def _walk(self) -> None:
        config = self.tool.config
        for path in walk_files(self.start, config.skip_dirs):
            rel = self.ws.relative(path)
            if self.glob and not matches_glob(rel, self.glob):
                continue
            lines = self.tool._text_lines(path)
            if lines is None:
                continue
            self.files += 1
            for number, line in enumerate(lines, 1):
                if self.stop:
                    return
                self.where = f"{rel}:{number}"
                self.since = time.monotonic()
                try:
                    found = self.pattern.search(line, timeout=config.grep_match_timeout, concurrent=True)
                except TimeoutError:
                    self.slow = self.where
                    return
                finally:
                    self.since = None
                if found:
                    self.hits.append(f"{rel}:{number}: {line if len(line) <= 200 else line[:200] + '…'}")
                    if len(self.hits) > config.grep_max_matches:
                        return
