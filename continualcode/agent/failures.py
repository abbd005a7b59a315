"""Reading a failing check: what failed, where, and which files a fix should look at.

A small model cannot read 200 lines of pytest output and then go looking for
the code; so the repair flow (continualcode.agent.repair) gives it exactly
what a good engineer would look at first: the assertion and error lines, the
traceback frames inside the repository, and the full text of the files those
frames and the failing tests import.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<path>[^\s:]+\.py):(?P<line>\d+):", re.MULTILINE)           # pytest --tb=short/long
_PY_FRAME = re.compile(r'File "(?P<path>[^"]+\.py)", line (?P<line>\d+)')             # python traceback
_SUMMARY = re.compile(r"^(FAILED|ERROR) (?P<test>\S+)", re.MULTILINE)
_COUNTS = re.compile(r"(\d+) (passed|failed|errors?)")
KEEP_CHARS = 2500
"""Characters of check output kept for the model: the informative lines, then the tail."""
TEST_FILE = re.compile(r"(^|/)(test_[^/]*\.py|[^/]*_test\.py|conftest\.py)$|(^|/)tests?/")


def is_test_file(path: str, check: str = "") -> bool:
    """A file the tests are made of, or that the check command names (a fix must not change it)."""
    path = path.replace("\\", "/")
    return bool(TEST_FILE.search(path)) or (bool(check) and path in check.split())


@dataclass
class Failure:
    """What a failing check said, boiled down."""

    output: str                                   # the trimmed output the model sees
    frames: list[tuple[str, int]] = field(default_factory=list)  # (repo-relative path, line), in order
    failed_tests: list[str] = field(default_factory=list)
    passed: int = 0
    failed: int = 0

    @property
    def score(self) -> float:
        """How close a candidate came: the share of tests passing (more is better)."""
        total = self.passed + self.failed
        return self.passed / total if total else 0.0


def read_failure(output: str, root: Path) -> Failure:
    """Parse a check's output (pytest's or a plain Python traceback's) relative to the repo `root`."""
    root = Path(root).resolve()
    frames: list[tuple[str, int]] = []
    for match in list(_FRAME.finditer(output)) + list(_PY_FRAME.finditer(output)):
        rel = _relative(match.group("path"), root)
        if rel is not None and (rel, int(match.group("line"))) not in frames:
            frames.append((rel, int(match.group("line"))))
    counts = {kind.rstrip("s"): int(n) for n, kind in _COUNTS.findall(output)}
    return Failure(output=trim_output(output, root), frames=frames,
                   failed_tests=[m.group("test") for m in _SUMMARY.finditer(output)],
                   passed=counts.get("passed", 0), failed=counts.get("failed", 0) + counts.get("error", 0))


def trim_output(output: str, root: Path | None = None) -> str:
    """The lines that say what failed (E lines, frames, summaries, exceptions), then the tail."""
    if root is not None:
        output = output.replace(f"{Path(root).resolve()}/", "")
    lines = output.splitlines()
    keep = [line for line in lines if line.startswith(("E ", ">", "FAILED", "ERROR"))
            or _FRAME.match(line) or "Error" in line or "assert" in line]
    text = "\n".join(dict.fromkeys(keep)) if keep else output
    tail = "\n".join(lines[-3:])
    if tail and tail not in text:
        text = f"{text}\n{tail}"
    return text if len(text) <= KEEP_CHARS else text[:KEEP_CHARS // 2] + "\n[...]\n" + text[-KEEP_CHARS // 2:]


def implicated_files(failure: Failure, root: Path, *, limit: int = 4, check: str = "") -> list[str]:
    """Repo files a fix should see: frames' files, then what the failing test files import.

    Code files come before test files (the bug is usually in the code; the
    tests are shown read-only so the model knows what is expected).
    """
    root = Path(root).resolve()
    found: list[str] = []
    for path, _ in failure.frames:
        if path not in found and (root / path).is_file():
            found.append(path)
    for test in failure.failed_tests:
        name = test.split("::", 1)[0]
        if name.endswith(".py") and (root / name).is_file() and name not in found:
            found.append(name)
    frontier = list(found)
    for _ in range(2):  # what the failing tests import, and what that imports: where a bug may hide
        frontier = [i for path in frontier for i in local_imports(root, path) if i not in found]
        found.extend(dict.fromkeys(frontier))
    if not found:  # nothing parseable (a crash at collection, another runner): all small code files
        found = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if ".git" not in p.parts and ".continualcode" not in p.parts and p.stat().st_size < 20_000)
    code = [p for p in found if not is_test_file(p, check)]
    tests = [p for p in found if is_test_file(p, check)]
    return (code + tests)[:limit]


def local_imports(root: Path, rel: str) -> list[str]:
    """Repo modules a Python file imports (`from cart import X`, `import pricing.tax`), as paths."""
    try:
        tree = ast.parse((root / rel).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    base = (root / rel).parent
    out = []
    for name in names:
        parts = name.split(".")
        for directory in (root, base):
            for candidate in (directory.joinpath(*parts).with_suffix(".py"), directory.joinpath(*parts, "__init__.py")):
                if candidate.is_file():
                    relative = str(candidate.resolve().relative_to(root))
                    if relative not in out:
                        out.append(relative)
    return out


def _relative(path: str, root: Path) -> str | None:
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        return None
    if ".venv" in rel.parts or "site-packages" in rel.parts:
        return None
    return str(rel)


def suspect_functions(failure: Failure, root: Path, files: list[str], check: str = "") -> list[tuple[str, str]]:
    """(path, name) of the code functions the failing tests call, then the ones those call: where to look.

    A small model shown three functions rewrites whichever it likes; naming the
    ones on the failing path (read from the failing test functions' calls and
    the traceback frames) points it at the bug.
    """
    root = Path(root)
    defined: dict[str, list[tuple[str, ast.AST]]] = {}
    for path in files:
        if is_test_file(path, check):
            continue
        try:
            tree = ast.parse((root / path).read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.setdefault(node.name, []).append((path, node))
    ordered: list[tuple[str, str]] = []

    def add(name: str) -> None:
        for path, _ in defined.get(name, []):
            if (path, name) not in ordered:
                ordered.append((path, name))

    for path, line in failure.frames:  # frames inside code: the function that line is in
        for name, places in defined.items():
            if any(p == path and n.lineno <= line <= n.end_lineno for p, n in places):
                add(name)
    for test in failure.failed_tests:
        test_path, _, test_name = test.partition("::")
        test_name = test_name.split("[", 1)[0].split("::")[-1]
        try:
            tree = ast.parse((root / test_path).read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == test_name:
                for call in ast.walk(node):
                    if isinstance(call, ast.Call):
                        target = call.func
                        add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
                        for argument in call.args:  # check(candidate): the function under test is passed
                            if isinstance(argument, ast.Name):
                                add(argument.id)
    for path, name in list(ordered):  # one level down: what the suspects call
        for _, node in defined.get(name, []):
            for call in ast.walk(node):
                if isinstance(call, ast.Call):
                    target = call.func
                    add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return ordered
