"""bash and run_tests: commands run in the repository, in their own process group.

Each command gets a new session (`start_new_session=True`), so on timeout the
whole group — the shell and anything it spawned — is killed, not just the
shell (a test suite that forks a server would otherwise outlive the agent).
Output is read as it comes and kept head-and-tail within a byte budget, with a
note saying how much was cut: the end of a failing test run is what matters,
and a runaway command cannot fill memory. The environment drops variables
whose names look like credentials, so a prompt-injected command cannot read
them, unless the user allow-lists them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from continualcode.tools.base import BaseTool, Param, ToolArgError, ToolResult
from continualcode.tools.config import ToolConfig
from continualcode.tools.workspace import Workspace


def filtered_env(config: ToolConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for commands: without variables whose names contain a secret word."""
    environ = dict(os.environ if environ is None else environ)
    words = [w.upper() for w in config.secret_name_words]
    allowed = set(config.env_allow)
    return {
        name: value for name, value in environ.items()
        if name in allowed or not any(word in name.upper() for word in words)
    }


class _BoundedOutput:
    """Collects a stream keeping the first and last `limit/2` bytes and counting the rest."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if cut <= 0:
            return head + tail
        return f"{head}\n[... {cut} bytes of output cut ...]\n{tail}"


def run_command(command: str, ws: Workspace, config: ToolConfig, timeout: float) -> ToolResult:
    """Run `command` with bash in the repo root; kill its process group after `timeout` seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=ws.root,
        env=filtered_env(config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = _BoundedOutput(config.output_limit)

    def pump() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            output.feed(chunk)

    reader = threading.Thread(target=pump, name="bash-output", daemon=True)
    reader.start()
    try:
        timed_out = not _wait_unreaped(proc.pid, timeout)
    finally:
        # Kill the group even after a normal exit: a backgrounded grandchild holding
        # the pipe open would otherwise keep the reader (and the agent) waiting.
        _kill_group(proc)
    reader.join(timeout=5)
    duration = time.monotonic() - start
    text = output.text()
    if reader.is_alive():  # a process that left our group (setsid) still holds the pipe
        text += "\n[stopped reading: a process outside the command's group kept the output open]"
    else:
        proc.stdout.close()  # type: ignore[union-attr]
    if timed_out:
        note = f"[killed after {timeout:g} s: the command and every process it started were stopped]"
        return ToolResult(False, f"{text}\n{note}".lstrip("\n"), exit_code=proc.returncode,
                          duration=duration, error_kind="timeout")
    code = proc.returncode
    if code != 0:
        return ToolResult(False, f"{text}\n[exit code {code}]".lstrip("\n"), exit_code=code,
                          duration=duration, error_kind="exit_code")
    return ToolResult(True, text, exit_code=0, duration=duration)


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` s for the shell to exit, without reaping it; True if it exited.

    While the exited shell is not reaped its pid (= the group id) cannot be
    reused, so the killpg that follows cannot hit an unrelated process group.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process in the command's group, then reap the shell."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone
    proc.wait()


class BashTool(BaseTool):
    name = "bash"
    description = "Run a shell command (python, git, ls, pip...) and show its output."
    needs_approval = True
    params = (Param("command", "the shell command, e.g. python src/app.py"),)
    example = {"command": "git status"}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def _validate(self, args: dict[str, str], ws: Workspace) -> None:
        if not args["command"].strip():
            raise ToolArgError("command is empty; give the shell command to run")

    def preview(self, args: dict[str, str], ws: Workspace) -> str:
        return f"$ {args['command'].strip()}"

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        return run_command(args["command"].strip(), ws, self.config, self.config.bash_timeout)


_PYTEST_SUMMARY = re.compile(r"\b\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b|no tests ran")


def detect_test_command(root: Path) -> str | None:
    """`python -m pytest -q` when the repo looks like a pytest project, else None.

    Signs: pytest.ini, [tool.pytest...] in pyproject.toml, [tool:pytest] in
    setup.cfg, [pytest] in tox.ini, a tests/ directory, or test_*.py / *_test.py
    files in the top two levels. The interpreter is the repo's .venv when there
    is one (its dependencies are what the tests import), else the one running us.
    """
    if not _looks_like_pytest(root):
        return None
    venv_python = root / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return f"{shlex.quote(python)} -m pytest -q"


def _looks_like_pytest(root: Path) -> bool:
    if (root / "pytest.ini").is_file() or (root / "tests").is_dir():
        return True
    for name, marker in (("pyproject.toml", "[tool.pytest"), ("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        path = root / name
        if path.is_file() and marker in path.read_text(encoding="utf-8", errors="replace"):
            return True
    for pattern in ("test_*.py", "*_test.py", "*/test_*.py", "*/*_test.py"):
        if any(p for p in root.glob(pattern) if ".venv" not in p.parts):
            return True
    return False


def summarize_tests(output: str, exit_code: int | None) -> str:
    """One line for the result header: pytest's own summary when present, else the exit code."""
    for line in reversed(output.splitlines()):
        if _PYTEST_SUMMARY.search(line):
            return line.strip(" =")
    return f"exit code {exit_code}"


class RunTestsTool(BaseTool):
    name = "run_tests"
    description = "Run the test suite and show which tests pass or fail."
    needs_approval = True
    params = ()
    example: dict[str, str] = {}

    def __init__(self, config: ToolConfig) -> None:
        self.config = config

    def command(self, ws: Workspace) -> str | None:
        return self.config.test_command or detect_test_command(ws.root)

    def preview(self, args: dict[str, str], ws: Workspace) -> str:
        return f"$ {self.command(ws) or '(no test command)'}"

    def _run(self, args: dict[str, str], ws: Workspace) -> ToolResult:
        command = self.command(ws)
        if command is None:
            return ToolResult(
                False,
                "no test command is configured and this does not look like a pytest project; "
                "set test_command in the continualcode config, or run the tests with bash",
                error_kind="no_test_command",
            )
        result = run_command(command, ws, self.config, self.config.test_timeout)
        if result.error_kind == "timeout":
            verdict = f"tests TIMED OUT after {self.config.test_timeout:g} s"
        else:
            summary = summarize_tests(result.output, result.exit_code)
            verdict = f"tests {'PASSED' if result.ok else 'FAILED'}: {summary}"
        result.output = f"{verdict}\n$ {command}\n{result.output}".rstrip("\n")
        return result
