"""list_files and grep: the read-only tools for finding things in the repository.

Both walk the tree themselves (no `find`/`rg` dependency), never follow
symlinked directories, and skip .git, the agent's store, virtualenvs and caches,
so the listing is about the user's code and stays small enough for a small
model's context.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from pathlib import Path

from continualcode.tools.base import BaseTool, Param, ToolArgError, ToolResult
from continualcode.tools.config import ToolConfig
from continualcode.tools.workspace import Workspace, is_git_name


def walk_files(start: Path, skip_dirs: tuple[str, ...]) -> Iterator[Path]:
    """Files under `start` in sorted order, skipping `skip_dirs` and not following dir symlinks."""
    if not start.is_dir():
        yield start
        return
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not is_git_name(d))
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
    def _compile(pattern: str) -> re.Pattern[str]:
        if not pattern:
            raise ToolArgError("pattern is empty; give the text or regular expression to search for")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise ToolArgError(
                f"pattern {pattern!r} is not a valid regular expression ({exc}); escape special characters like ( [ . * with a backslash"
            ) from None

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        start = ws.resolve(args.get("path", "").strip() or ".")
        if not start.exists():
            raise ToolArgError(f"{args['path'].strip()} does not exist", "not_found")
        regex = self._compile(args["pattern"])
        glob = args.get("glob", "").strip()
        limit = self.config.grep_max_matches
        hits: list[str] = []
        files = 0
        for path in walk_files(start, self.config.skip_dirs):
            rel = ws.relative(path)
            if glob and not matches_glob(rel, glob):
                continue
            lines = self._text_lines(path)
            if lines is None:
                continue
            files += 1
            for number, line in enumerate(lines, 1):
                if regex.search(line):
                    shown = line if len(line) <= 200 else line[:200] + "…"
                    hits.append(f"{rel}:{number}: {shown}")
                    if len(hits) > limit:
                        break
            if len(hits) > limit:
                break
        if not hits:
            return ToolResult(True, f"no matches for {regex.pattern!r} in {files} files under {ws.relative(start)}")
        if len(hits) > limit:
            return ToolResult(True, "\n".join(hits[:limit]) + f"\n(stopped after {limit} matches; narrow with path, glob or a more specific pattern)")
        return ToolResult(True, "\n".join(hits))

    def _text_lines(self, path: Path) -> list[str] | None:
        """The file's lines, or None for files grep skips (binary, huge, unreadable, links)."""
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > self.config.grep_max_file_bytes:
                return None
            data = path.read_bytes()
        except OSError:
            return None
        if b"\x00" in data[:8192]:
            return None
        return data.decode("utf-8", errors="replace").splitlines()
