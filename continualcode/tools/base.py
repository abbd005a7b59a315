"""The shared shape of a tool: its result, parameters, protocol and common plumbing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from continualcode.tools.workspace import PathRefused, Workspace


@dataclass
class ToolResult:
    """What a tool call produced; stored with the call and rendered back to the model."""

    ok: bool
    output: str
    exit_code: int | None = None
    duration: float = 0.0
    error_kind: str | None = None      # one of ERROR_KINDS when ok is False
    changed_paths: list[str] = field(default_factory=list)  # repo-relative, '/'-separated


ERROR_KINDS = (
    "bad_args",          # missing/invalid argument values
    "refused_path",      # Workspace refused the path
    "not_found",         # the file or directory does not exist
    "not_text",          # binary or undecodable file
    "no_match",          # edit: search text not found
    "multiple_matches",  # edit: search text found more than once
    "os_error",          # permission denied, is a directory, a FIFO or device, ...
    "exit_code",         # bash / run_tests: non-zero exit
    "timeout",           # bash / run_tests: killed after the time limit; grep: the pattern ran out of time
    "no_test_command",   # run_tests: nothing configured and no pytest project detected
)


class ToolArgError(ValueError):
    """A call the model can fix; the message says what a valid call looks like."""

    def __init__(self, message: str, error_kind: str = "bad_args") -> None:
        super().__init__(message)
        self.error_kind = error_kind


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    required: bool = True


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str                  # one line, shown to the model
    needs_approval: bool
    params: tuple[Param, ...]
    example: dict[str, str]           # the arguments of one example call (system prompt)

    def check(self, args: dict[str, str], ws: Workspace) -> ToolResult | None: ...

    def preview(self, args: dict[str, str], ws: Workspace) -> str: ...

    def run(self, args: dict[str, str], ws: Workspace) -> ToolResult: ...


class BaseTool:
    """Shared plumbing: argument checks, path refusal, timing, explainable errors → results.

    Subclasses set the class attributes and implement `_validate` (raise
    ToolArgError / PathRefused for calls that must not reach the approval
    prompt) and `_run` (do the work, return a ToolResult).
    """

    name: str = ""
    description: str = ""
    needs_approval: bool = False
    params: tuple[Param, ...] = ()
    example: dict[str, str] = {}

    def check(self, args: dict[str, str], ws: Workspace) -> ToolResult | None:
        try:
            self._check_names(args)
            self._validate(args, ws)
        except (ToolArgError, PathRefused, OSError, UnicodeDecodeError) as exc:
            return _explain(exc, ws)
        return None

    def preview(self, args: dict[str, str], ws: Workspace) -> str:
        return "\n".join(f"{key}: {value}" for key, value in args.items())

    def run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        start = time.monotonic()
        result = self.check(args, ws)
        if result is None:
            try:
                result = self._run(args, ws)
            except (ToolArgError, PathRefused, OSError, UnicodeDecodeError) as exc:
                result = _explain(exc, ws)
        result.duration = time.monotonic() - start
        return result

    def _check_names(self, args: dict[str, str]) -> None:
        known = {p.name for p in self.params}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ToolArgError(f"{self.name} has no argument {unknown[0]!r}; its arguments are: {', '.join(sorted(known)) or 'none'}")
        for param in self.params:
            if param.required and param.name not in args:
                raise ToolArgError(f"{self.name} needs the argument {param.name!r} ({param.description})")

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        """Raise ToolArgError or PathRefused for calls that must not reach the approval prompt."""

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        raise NotImplementedError


def _explain(exc: Exception, ws: Workspace) -> ToolResult:
    """The error result for a failure the model can act on (the caller lets others surface)."""
    if isinstance(exc, ToolArgError):
        return ToolResult(False, str(exc), error_kind=exc.error_kind)
    if isinstance(exc, PathRefused):
        return ToolResult(False, str(exc), error_kind="refused_path")
    if isinstance(exc, UnicodeDecodeError):
        return ToolResult(False, "the file is not UTF-8 text; this tool only handles text files", error_kind="not_text")
    assert isinstance(exc, OSError)
    if isinstance(exc, FileNotFoundError):
        return ToolResult(False, f"{_os_message(exc, ws)}: no such file or directory", error_kind="not_found")
    return ToolResult(False, f"{_os_message(exc, ws)}: {exc.strerror or exc}", error_kind="os_error")


def _os_message(exc: OSError, ws: Workspace) -> str:
    if exc.filename is None:
        return "error"
    try:
        return ws.relative(Path(exc.filename))
    except ValueError:
        return str(exc.filename)


def int_arg(args: dict[str, str], name: str, default: int | None = None, minimum: int = 1) -> int | None:
    """Parse an optional integer argument, with an error message the model can act on."""
    raw = args.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ToolArgError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ToolArgError(f"{name} must be at least {minimum}, got {value}")
    return value
