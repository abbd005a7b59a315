"""The coding tools, run for real on a temp repository (real files, real processes)."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from continualcode.tools import TOOLS, Tool, ToolConfig, default_tools, filtered_env
from continualcode.tools.shell import detect_test_command, summarize_tests
from continualcode.tools.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "calc.py").write_text(
        "def add(a, b):\n    return a - b\n\n\ndef mean(values):\n    return sum(values) / len(values)\n"
    )
    (root / "README.md").write_text("# calc\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".continualcode").mkdir()
    (root / ".continualcode" / "store.db").write_text("db")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "site.py").write_text("def mean(): pass\n")
    return Workspace(root)


def call(name: str, ws: Workspace, config: ToolConfig | None = None, **args: str):
    tools = TOOLS if config is None else default_tools(config)
    return tools[name].run(args, ws)


# --- registry -----------------------------------------------------------------

def test_registry_names_and_approval_flags():
    assert list(TOOLS) == ["read_file", "write_file", "edit", "list_files", "grep", "bash", "run_tests"]
    needs = {name for name, tool in TOOLS.items() if tool.needs_approval}
    assert needs == {"write_file", "edit", "bash", "run_tests"}
    for tool in TOOLS.values():
        assert isinstance(tool, Tool)
        assert tool.description and "\n" not in tool.description
        assert set(tool.example) <= {p.name for p in tool.params}
        assert {p.name for p in tool.params if p.required} <= set(tool.example)


def test_default_tools_reads_fields_from_any_settings_object():
    class Settings:
        test_command = "make test"
        bash_timeout = 5.0
        env_allow = ["GITHUB_TOKEN"]
        unrelated = "ignored"

    tools = default_tools(Settings())
    assert tools["bash"].config.bash_timeout == 5.0
    assert tools["bash"].config.env_allow == ("GITHUB_TOKEN",)
    assert tools["run_tests"].config.test_command == "make test"


def test_unknown_and_missing_arguments_are_refused_by_check(ws):
    result = TOOLS["read_file"].check({"path": "README.md", "colour": "red"}, ws)
    assert result is not None and result.error_kind == "bad_args" and "colour" in result.output
    result = TOOLS["edit"].check({"path": "src/calc.py", "search": "x"}, ws)
    assert result is not None and "replace" in result.output


# --- read_file ----------------------------------------------------------------

def test_read_file_numbers_lines(ws):
    result = call("read_file", ws, path="src/calc.py")
    assert result.ok and result.error_kind is None
    assert result.output.splitlines()[:2] == ["   1| def add(a, b):", "   2|     return a - b"]
    assert result.duration >= 0


def test_read_file_line_range_and_cap(ws, tmp_path):
    (ws.root / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    result = call("read_file", ws, path="big.txt", start_line="10", end_line="12")
    assert result.output.splitlines() == ["  10| line 10", "  11| line 11", "  12| line 12", "(lines 10-12 of 1000; use start_line=13 to read on)"]
    capped = call("read_file", ws, ToolConfig(read_max_lines=50), path="big.txt")
    assert capped.output.splitlines()[-1] == "(lines 1-50 of 1000; use start_line=51 to read on)"
    assert len(capped.output.splitlines()) == 51


def test_read_file_errors(ws):
    (ws.root / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert call("read_file", ws, path="missing.py").error_kind == "not_found"
    assert call("read_file", ws, path="src").error_kind == "os_error"
    assert call("read_file", ws, path="blob.bin").error_kind == "not_text"
    assert call("read_file", ws, path="../etc/passwd").error_kind == "refused_path"
    assert call("read_file", ws, path=".git/config").error_kind == "refused_path"
    bad = call("read_file", ws, path="src/calc.py", start_line="two")
    assert bad.error_kind == "bad_args" and "whole number" in bad.output


# --- write_file ---------------------------------------------------------------

def test_write_file_creates_with_parents_and_final_newline(ws):
    result = call("write_file", ws, path="pkg/sub/new.py", content="x = 1")
    assert result.ok and result.changed_paths == ["pkg/sub/new.py"]
    assert (ws.root / "pkg" / "sub" / "new.py").read_text() == "x = 1\n"
    assert "created" in result.output


def test_write_file_overwrites_atomically_and_keeps_mode(ws):
    script = ws.root / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o755)
    result = call("write_file", ws, path="run.sh", content="echo new\n")
    assert result.ok and "overwrote" in result.output
    assert script.read_text() == "echo new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert sorted(p.name for p in ws.root.iterdir() if p.name.startswith(".tmp")) == []  # atomic.TMP_PREFIX


@pytest.mark.parametrize("path", [".git/config", ".continualcode/store.db", "../escape.py", "/tmp/x.py"])
def test_write_file_refuses_before_approval_and_writes_nothing(ws, path):
    refusal = TOOLS["write_file"].check({"path": path, "content": "pwned"}, ws)
    assert refusal is not None and refusal.error_kind == "refused_path"
    assert call("write_file", ws, path=path, content="pwned").error_kind == "refused_path"
    assert (ws.root / ".git" / "config").read_text() == "[core]\n"
    assert (ws.root / ".continualcode" / "store.db").read_text() == "db"
    assert not (ws.root.parent / "escape.py").exists()


def test_write_file_preview_is_a_diff(ws):
    preview = TOOLS["write_file"].preview({"path": "README.md", "content": "# calculator"}, ws)
    assert "-# calc" in preview and "+# calculator" in preview


# --- edit ---------------------------------------------------------------------

def test_edit_replaces_the_single_match(ws):
    result = call("edit", ws, path="src/calc.py", search="    return a - b", replace="    return a + b")
    assert result.ok and result.changed_paths == ["src/calc.py"]
    assert (ws.root / "src" / "calc.py").read_text().startswith("def add(a, b):\n    return a + b\n")
    assert "   2|     return a + b" in result.output


def test_edit_with_no_match_names_the_closest_text_and_its_line(ws):
    result = call("edit", ws, path="src/calc.py", search="def mean(vals):\n    return sum(vals) / len(vals)", replace="x")
    assert not result.ok and result.error_kind == "no_match"
    assert "closest text is at line 5" in result.output
    assert "   5| def mean(values):" in result.output
    assert (ws.root / "src" / "calc.py").read_text().count("values") == 3  # untouched


def test_edit_no_match_says_when_only_indentation_differs(ws):
    result = call("edit", ws, path="src/calc.py", search="return a - b", replace="return a + b")
    assert result.ok  # a substring is a match: indentation inside the line is not required
    result = call("edit", ws, path="src/calc.py", search="def add(a, b):\n  return a + b", replace="x")
    assert result.error_kind == "no_match" and "indentation" in result.output


def test_edit_with_several_matches_lists_their_lines(ws):
    (ws.root / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")
    result = call("edit", ws, path="dup.py", search="x = 1", replace="x = 3")
    assert result.error_kind == "multiple_matches" and "lines 1, 3" in result.output
    assert (ws.root / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\n"


def test_edit_counts_overlapping_matches(ws):
    (ws.root / "a.txt").write_text("aaa\n")
    assert call("edit", ws, path="a.txt", search="aa", replace="b").error_kind == "multiple_matches"


def test_edit_failures_are_caught_before_the_approval_prompt(ws):
    tool = TOOLS["edit"]
    assert tool.check({"path": "src/calc.py", "search": "nope", "replace": "x"}, ws).error_kind == "no_match"
    assert tool.check({"path": "ghost.py", "search": "a", "replace": "b"}, ws).error_kind == "not_found"
    assert tool.check({"path": "src/calc.py", "search": "", "replace": "b"}, ws).error_kind == "bad_args"
    assert tool.check({"path": "src/calc.py", "search": "a - b", "replace": "a + b"}, ws) is None
    assert "+    return a + b" in tool.preview({"path": "src/calc.py", "search": "a - b", "replace": "a + b"}, ws)


def test_edit_accepts_search_copied_with_read_file_line_numbers(ws):
    result = call("edit", ws, path="src/calc.py", search="   1| def add(a, b):\n   2|     return a - b",
                  replace="   1| def add(a, b):\n   2|     return a + b")
    assert result.ok and "line numbers" in result.output
    assert "    return a + b\n" in (ws.root / "src" / "calc.py").read_text()


def test_edit_keeps_crlf_line_endings(ws):
    (ws.root / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    assert call("edit", ws, path="win.txt", search="one\ntwo", replace="1\n2").ok
    assert (ws.root / "win.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


# --- list_files / grep --------------------------------------------------------

def test_list_files_skips_git_store_and_venv(ws):
    listed = call("list_files", ws).output.splitlines()
    assert listed == ["README.md", "src/calc.py"]
    assert call("list_files", ws, path="src").output == "src/calc.py"
    assert call("list_files", ws, pattern="*.md").output == "README.md"
    assert call("list_files", ws, path="nope").error_kind == "not_found"
    assert call("list_files", ws, path="../").error_kind == "refused_path"


def test_list_files_caps_the_listing(ws):
    for i in range(30):
        (ws.root / "src" / f"m{i:02}.py").write_text("")
    result = call("list_files", ws, ToolConfig(list_max_entries=10), path="src")
    assert len(result.output.splitlines()) == 11 and "21 more files not shown" in result.output


def test_grep_finds_matches_outside_skipped_dirs(ws):
    result = call("grep", ws, pattern=r"def \w+\(")
    assert result.output.splitlines() == ["src/calc.py:1: def add(a, b):", "src/calc.py:5: def mean(values):"]
    assert call("grep", ws, pattern="mean", glob="*.md").output.startswith("no matches")
    assert call("grep", ws, pattern="core").output.startswith("no matches")  # .git is skipped


def test_grep_bad_regex_and_caps(ws):
    bad = call("grep", ws, pattern="def (")
    assert bad.error_kind == "bad_args" and "regular expression" in bad.output
    (ws.root / "many.txt").write_text("hit\n" * 50)
    capped = call("grep", ws, ToolConfig(grep_max_matches=5), pattern="hit")
    assert len(capped.output.splitlines()) == 6 and "stopped after 5 matches" in capped.output


# --- bash ---------------------------------------------------------------------

def test_bash_runs_in_the_repo_root(ws):
    result = call("bash", ws, command="pwd && ls src")
    assert result.ok and result.exit_code == 0
    assert result.output.splitlines() == [str(ws.root), "calc.py"]


def test_bash_nonzero_exit_is_an_error_with_the_code(ws):
    result = call("bash", ws, command="echo oops >&2; exit 3")
    assert not result.ok and result.exit_code == 3 and result.error_kind == "exit_code"
    assert "oops" in result.output and "[exit code 3]" in result.output


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_bash_timeout_kills_the_whole_process_group(ws):
    command = "sh -c 'sleep 60 & echo $! > grandchild.pid; wait' ; echo never"
    start = time.monotonic()
    result = call("bash", ws, ToolConfig(bash_timeout=1.0), command=command)
    assert time.monotonic() - start < 10
    assert not result.ok and result.error_kind == "timeout" and "killed after 1 s" in result.output
    grandchild = int((ws.root / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_bash_does_not_wait_for_leftover_background_processes_and_says_it_stopped_them(ws):
    start = time.monotonic()
    result = call("bash", ws, command="sleep 60 & echo $! > bg.pid; echo started")
    assert result.ok and result.output.splitlines()[0] == "started"
    assert "running in the background" in result.output and result.output.endswith("stopped]")
    assert time.monotonic() - start < 2
    assert not _alive(int((ws.root / "bg.pid").read_text()))


def test_bash_timeout_stops_a_setsid_child_too(ws):
    """Issue 13 item 10: a `setsid` child left the process group and outlived the timeout, while the
    result said every process was stopped."""
    command = "setsid sh -c 'echo $$ > escaped.pid; exec sleep 60' & sleep 60"
    start = time.monotonic()
    result = call("bash", ws, ToolConfig(bash_timeout=2.0), command=command)
    assert 2.0 <= time.monotonic() - start < 3.5
    assert result.error_kind == "timeout"
    assert "killed after 2 s: the command and every process it started were stopped" in result.output
    assert not _alive(int((ws.root / "escaped.pid").read_text()))


def test_bash_truncates_output_with_a_note(ws):
    result = call("bash", ws, ToolConfig(output_limit=1000),
                  command="python3 -c \"print('A' * 5000 + 'END')\"")
    assert result.ok
    assert result.output.startswith("A" * 500)
    assert result.output.rstrip().endswith("END")
    assert "[... 4004 bytes of output cut ...]" in result.output  # 5004 bytes printed, 1000 kept


def test_bash_environment_drops_secret_looking_names(ws, monkeypatch):
    for name in ("OPENAI_API_KEY", "GH_TOKEN", "my_secret", "DB_PASSWORD", "ALLOWED_TOKEN"):
        monkeypatch.setenv(name, "hunter2")
    monkeypatch.setenv("HARMLESS", "visible")
    result = call("bash", ws, ToolConfig(env_allow=("ALLOWED_TOKEN",)), command="env")
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    assert "HARMLESS" in names and "ALLOWED_TOKEN" in names
    assert not names & {"OPENAI_API_KEY", "GH_TOKEN", "my_secret", "DB_PASSWORD"}
    assert filtered_env(ToolConfig(), {"PATH": "/bin", "api_key": "x"}) == {"PATH": "/bin"}


SECRETS = {"DB_PASSWD": "pw-1", "MYSQL_PWD": "pw-2", "DATABASE_URL": "postgres://u:pw-3@h/db",
           "SSH_AUTH_SOCK": "/tmp/ssh-pw-4/agent", "GOOGLE_APPLICATION_CREDENTIALS": "/home/u/pw-5.json",
           "SENTRY_DSN": "https://pw-6@o1.ingest.sentry.io/1", "NPM_AUTH": "pw-7", "NPM_CONFIG__AUTH": "pw-8"}


def test_bash_environment_drops_every_kind_of_secret_and_the_parent_shows_none(ws, monkeypatch):
    """Issue 13 item 2: these passed the old name filter, and /proc/$PPID/environ showed the agent's."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PLAIN_URL", "https://example.com/x")
    result = call("bash", ws, command="env; tr '\\0' '\\n' < /proc/$PPID/environ")
    assert result.ok and "PLAIN_URL=https://example.com/x" in result.output
    assert "PWD=" in result.output  # the shell's own PWD is not a secret
    leaked = [name for name, value in SECRETS.items() if value in result.output or f"{name}=" in result.output]
    assert leaked == []
    allowed = call("bash", ws, ToolConfig(env_allow=("DATABASE_URL",)), command="echo $DATABASE_URL")
    assert allowed.output.strip() == SECRETS["DATABASE_URL"]


# --- run_tests ----------------------------------------------------------------

@pytest.mark.parametrize("files, detected", [
    ({"pytest.ini": "[pytest]\n"}, True),
    ({"pyproject.toml": "[tool.pytest.ini_options]\n"}, True),
    ({"setup.cfg": "[tool:pytest]\n"}, True),
    ({"tests/__init__.py": ""}, True),
    ({"test_thing.py": ""}, True),
    ({"pkg/thing_test.py": ""}, True),
    ({"pyproject.toml": "[project]\nname='x'\n", "main.py": ""}, False),
])
def test_pytest_detection(tmp_path, files, detected):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    command = detect_test_command(tmp_path)
    assert (command is not None) == detected
    if detected:
        assert command.endswith("-m pytest -q")


def _pytest_repo(ws: Workspace, body: str) -> None:
    (ws.root / "tests").mkdir()
    (ws.root / "tests" / "test_calc.py").write_text(
        "import sys\nsys.path.insert(0, 'src')\nfrom calc import add\n\n" + body
    )


def test_run_tests_reports_failure_then_success(ws):
    _pytest_repo(ws, "def test_add():\n    assert add(2, 3) == 5\n")
    failed = call("run_tests", ws)
    assert not failed.ok and failed.exit_code == 1 and failed.error_kind == "exit_code"
    assert failed.output.startswith("tests FAILED: 1 failed")
    call("edit", ws, path="src/calc.py", search="a - b", replace="a + b")
    passed = call("run_tests", ws)
    assert passed.ok and passed.exit_code == 0
    assert passed.output.startswith("tests PASSED: 1 passed")


def test_run_tests_uses_the_configured_command(ws):
    result = call("run_tests", ws, ToolConfig(test_command=f"{sys.executable} -c 'print(42)'"))
    assert result.ok and "42" in result.output and result.output.startswith("tests PASSED: exit code 0")


def test_run_tests_without_a_command_says_how_to_configure_one(ws):
    result = call("run_tests", ws)
    assert not result.ok and result.error_kind == "no_test_command" and "test_command" in result.output


def test_summary_line_is_pytests_own():
    assert summarize_tests("...\nFAILED t.py::x\n==== 1 failed, 2 passed in 0.1s ====\n", 1) == "1 failed, 2 passed in 0.1s"
    assert summarize_tests("boom", 2) == "exit code 2"


def test_tools_never_write_outside_the_root(ws, tmp_path):
    os.symlink(tmp_path, ws.root / "escape")
    (tmp_path / "victim.py").write_text("a - b\n")
    for name, args in [
        ("write_file", {"path": "escape/x.py", "content": "x"}),
        ("edit", {"path": "escape/victim.py", "search": "a - b", "replace": "a + b"}),
        ("read_file", {"path": "escape/victim.py"}),
        ("grep", {"pattern": "a", "path": "escape"}),
        ("list_files", {"path": "escape"}),
    ]:
        assert TOOLS[name].run(args, ws).error_kind == "refused_path"
    assert not (tmp_path / "x.py").exists()
    assert (tmp_path / "victim.py").read_text() == "a - b\n"
