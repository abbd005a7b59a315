"""bash and run_tests: commands run in the repository through `continualcode.process.run_command`.

The process runner starts each command under a supervisor that stops every
process it started when it ends or times out (setsid and double-forked ones
included), and keeps its output head-and-tail within `output_limit` bytes. The
environment drops variables whose name or value looks like a credential
(`process.is_secret`), so a prompt-injected command cannot read them, unless
the user allow-lists them (`env_allow`).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from continualcode import process
from continualcode.process import CommandResult, scrub_env
from continualcode.tools.base import BaseTool, Param, ToolArgError, ToolResult
from continualcode.tools.config import ToolConfig
from continualcode.tools.workspace import Workspace


def filtered_env(config: ToolConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for commands: without secret-looking variables, except `config.env_allow`."""
    environ = dict(os.environ if environ is None else environ)
    return scrub_env(environ, config.env_allow, config.secret_name_words)


def run_in_repo(command: str, ws: Workspace, config: ToolConfig, timeout: float) -> ToolResult:
    """Run `command` with bash in the repo root (filtered environment, output cap, timeout)."""
    done = process.run_command(command, ws.root, env=filtered_env(config), timeout=timeout,
                               output_limit=config.output_limit)
    return tool_result(done)




def tool_result(done: CommandResult) -> ToolResult:
    """The bash and run_tests result: the output with its notes; a timeout or a failure as an error kind."""
    text = done.report()
    if done.timed_out:
        return ToolResult(False, text, exit_code=done.exit_code, duration=done.duration, error_kind="timeout")
    if not done.ok:
        return ToolResult(False, text, exit_code=done.exit_code, duration=done.duration, error_kind="exit_code")
    return ToolResult(True, text, exit_code=0, duration=done.duration)


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
        return run_in_repo(args["command"].strip(), ws, self.config, self.config.bash_timeout)


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
        result = run_in_repo(command, ws, self.config, self.config.test_timeout)
        if result.error_kind == "timeout":
            verdict = f"tests TIMED OUT after {self.config.test_timeout:g} s"
        else:
            summary = summarize_tests(result.output, result.exit_code)
            verdict = f"tests {'PASSED' if result.ok else 'FAILED'}: {summary}"
        result.output = f"{verdict}\n$ {command}\n{result.output}".rstrip("\n")
        return result
