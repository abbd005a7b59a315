"""Files and patterns a hostile repository can hold: the tools that run without approval must answer
at once (issue 13 item 7), and writes must not follow a symlink swapped in after the check (item 13)."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from continualcode.atomic import TMP_PREFIX
from continualcode.tools import TOOLS, ToolConfig, default_tools
from continualcode.tools.files import write_atomic
from continualcode.tools.workspace import PathRefused, Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("x = 1\n")
    return Workspace(root)


def timed(name: str, ws: Workspace, config: ToolConfig | None = None, **args: str):
    tools = TOOLS if config is None else default_tools(config)
    start = time.monotonic()
    result = tools[name].run(args, ws)
    return result, time.monotonic() - start


# --- FIFOs, sockets: refused at once, never opened for a blocking read -------------------------------

@pytest.mark.parametrize("tool, args", [
    ("read_file", {}),
    ("write_file", {"content": "x"}),
    ("edit", {"search": "a", "replace": "b"}),
])
def test_a_fifo_is_refused_at_once(ws, tool, args):
    os.mkfifo(ws.root / "pipe")
    result, took = timed(tool, ws, path="pipe", **args)
    assert took < 1.0 and not result.ok and result.error_kind == "os_error"
    assert "pipe: is a FIFO (named pipe), not a regular file" in result.output
    assert stat.S_ISFIFO((ws.root / "pipe").stat().st_mode)  # write_file did not replace it either


def test_write_file_preview_and_check_do_not_block_on_a_fifo(ws):
    os.mkfifo(ws.root / "pipe")
    start = time.monotonic()
    refusal = TOOLS["write_file"].check({"path": "pipe", "content": "x"}, ws)
    assert refusal is not None and "FIFO" in refusal.output and time.monotonic() - start < 1.0


def test_a_socket_is_refused_and_grep_skips_fifos(ws):
    server = socket.socket(socket.AF_UNIX)
    os.chdir(ws.root)  # a socket path must be short
    try:
        server.bind("sock")
        result, took = timed("read_file", ws, path="sock")
        assert took < 1.0 and "is a socket, not a regular file" in result.output
        os.mkfifo(ws.root / "src" / "pipe")
        found, took = timed("grep", ws, pattern="x = 1")
        assert took < 1.0 and found.ok and found.output == "src/app.py:1: x = 1"
    finally:
        server.close()


# --- grep: a catastrophic pattern is stopped --------------------------------------------------------

@pytest.mark.parametrize("pattern", [r"(x+x+)+y", r"(a|aa)+$", r"(\w+\s?)+$"])
def test_grep_stops_a_catastrophic_pattern_within_a_second(ws, pattern):
    (ws.root / "long.txt").write_text("x" * 5000 + "\n" + "a" * 5000 + "!\n" + "word " * 2000 + "!\n")
    result, took = timed("grep", ws, pattern=pattern)
    assert took < 1.3, took
    assert not result.ok and result.error_kind == "timeout"
    assert "took over 1 s on one line, at long.txt:" in result.output and "simplify the pattern" in result.output


def test_grep_budgets_are_settings_and_ordinary_patterns_are_unaffected(ws):
    (ws.root / "long.txt").write_text("x" * 5000 + "\n")
    result, took = timed("grep", ws, ToolConfig(grep_match_timeout=0.2), pattern=r"(x+x+)+y")
    assert took < 0.7 and "took over 0.2 s on one line" in result.output
    result, _ = timed("grep", ws, pattern=r"x{3}$")
    assert result.ok and result.output.startswith("long.txt:1: xxx")
    for i in range(200):
        (ws.root / f"f{i}.txt").write_text("y\n" * 2000)
    late, took = timed("grep", ws, ToolConfig(grep_timeout=0.05), pattern="z")
    assert took < 0.5 and late.ok and late.output.endswith("narrow with path or glob)")
    assert "(stopped after 0.05 s, having searched" in late.output


def test_grep_and_list_files_skip_any_virtualenv(ws):
    venv = ws.root / "env-vllm" / "lib"
    venv.mkdir(parents=True)
    (ws.root / "env-vllm" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "x.py").write_text("x = 1\n")
    assert TOOLS["grep"].run({"pattern": "x = 1"}, ws).output == "src/app.py:1: x = 1"
    assert TOOLS["list_files"].run({}, ws).output == "src/app.py"


# --- read_file: a huge single line is cut, not returned whole ---------------------------------------

def test_a_50_mb_single_line_is_cut_with_a_note(ws):
    (ws.root / "big.json").write_bytes(b"[" + b"1," * (25 * 1024 * 1024) + b"1]")
    result, took = timed("read_file", ws, path="big.json")
    assert took < 1.0, took
    assert result.ok and len(result.output) < 3_000
    lines = result.output.splitlines()
    assert lines[0].startswith("   1| [1,1,1,")
    assert lines[0].endswith(f"[... line cut at 2000 of {50 * 1024 * 1024 + 3} bytes]")
    assert "to see more of line 1, use bash, e.g. sed -n 1p big.json | cut -b 2001-4000" in lines[-1]


def test_read_file_caps_every_line_and_the_call_in_bytes(ws):
    (ws.root / "wide.txt").write_text("".join(f"{i}:" + "y" * 5000 + "\n" for i in range(1, 101)))
    result = TOOLS["read_file"].run({"path": "wide.txt"}, ws)
    assert result.ok and len(result.output.encode()) < 32_000 + 2_000
    assert result.output.splitlines()[-2].startswith("(lines 1-15 of 100; use start_line=16 to read on)")
    nxt = TOOLS["read_file"].run({"path": "wide.txt", "start_line": "16", "end_line": "16"}, ws)
    assert nxt.output.startswith("  16| 16:yyy") and "(lines 16-16 of 100; use start_line=17 to read on)" in nxt.output


def test_read_file_keeps_its_line_numbering_and_notes(ws):
    (ws.root / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree")
    (ws.root / "empty.txt").write_text("")
    assert TOOLS["read_file"].run({"path": "crlf.txt"}, ws).output == "   1| one\n   2| two\n   3| three"
    assert TOOLS["read_file"].run({"path": "empty.txt"}, ws).output == "empty.txt is empty"
    past = TOOLS["read_file"].run({"path": "crlf.txt", "start_line": "9"}, ws)
    assert past.error_kind == "bad_args" and "crlf.txt has 3 lines" in past.output
    (ws.root / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    assert TOOLS["read_file"].run({"path": "bad.txt"}, ws).error_kind == "not_text"


# --- write_atomic: a symlink swapped in after the check is never followed ----------------------------

def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_followed(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    checked = ws.resolve("src/app.py", write=True)
    (ws.root / "src").rename(ws.root / "src.moved")  # the race: between the check and the write
    (ws.root / "src").symlink_to(outside)
    with pytest.raises(PathRefused, match="no longer a directory"):
        write_atomic(ws.root, checked, "pwned\n")
    assert list(outside.iterdir()) == []


def test_a_target_swapped_for_a_symlink_is_refused(ws, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("keep\n")
    checked = ws.resolve("src/app.py", write=True)
    (ws.root / "src" / "app.py").unlink()
    (ws.root / "src" / "app.py").symlink_to(secret)
    with pytest.raises(PathRefused, match="became a symlink"):
        write_atomic(ws.root, checked, "pwned\n")
    assert secret.read_text() == "keep\n" and (ws.root / "src" / "app.py").is_symlink()


def test_the_edit_tool_refuses_a_swap_made_between_its_check_and_its_write(ws, tmp_path, monkeypatch):
    from continualcode.tools import files

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "app.py").write_text("x = 1\n")
    real_write = files.write_atomic

    def swap_then_write(root, path, data):  # the race: every check has passed, the write is next
        (ws.root / "src").rename(ws.root / "src.moved")
        (ws.root / "src").symlink_to(outside)
        return real_write(root, path, data)

    monkeypatch.setattr(files, "write_atomic", swap_then_write)
    result = TOOLS["edit"].run({"path": "src/app.py", "search": "x = 1", "replace": "x = 2"}, ws)
    assert not result.ok and result.error_kind == "refused_path" and "nothing was written" in result.output
    assert (outside / "app.py").read_text() == "x = 1\n"


def test_write_atomic_creates_parents_keeps_modes_and_leaves_no_temporary_file(ws):
    target = ws.resolve("new/deep/file.sh", write=True)
    write_atomic(ws.root, target, "echo 1\n")
    assert target.read_text() == "echo 1\n" and stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    target.chmod(0o750)
    write_atomic(ws.root, target, b"echo 2\n")
    assert target.read_text() == "echo 2\n" and stat.S_IMODE(target.stat().st_mode) == 0o750
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(TMP_PREFIX)] == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
