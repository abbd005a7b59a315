"""The one process runner: real bash, real processes, and /proc to check that none survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from continualcode.process import SECRET_NAME_WORDS, is_secret, run_command, scrub_env

ENV = scrub_env(dict(os.environ))


def run(command: str, cwd: Path, timeout: float = 10.0, limit: int = 16_000):
    return run_command(command, cwd, env=ENV, timeout=timeout, output_limit=limit)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def pid_from(path: Path, wait: float = 5.0) -> int:
    deadline = time.monotonic() + wait
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(path.read_text())


ESCAPE = "setsid sh -c 'echo $$ > {pid}; exec sleep 60'"
"""A process that leaves the command's session and process group (what a killpg misses)."""


def test_output_exit_code_and_signal(tmp_path):
    done = run("pwd; echo oops >&2; exit 3", tmp_path)
    assert not done.ok and done.exit_code == 3 and not done.timed_out
    assert done.output.splitlines() == [str(tmp_path), "oops"]
    assert done.report().endswith("[exit code 3]")
    killed = run("kill -9 $$", tmp_path)
    assert killed.exit_code == -9 and killed.report().endswith("[killed by signal SIGKILL]")


def test_output_keeps_head_and_tail_within_the_budget(tmp_path):
    done = run("python3 -c \"print('A' * 5000 + 'END')\"", tmp_path, limit=1000)
    assert done.ok and done.output.startswith("A" * 500) and done.output.rstrip().endswith("END")
    assert "[... 4004 bytes of output cut ...]" in done.output


def test_a_setsid_child_is_stopped_at_the_timeout(tmp_path):
    """Issue 13 item 10: `setsid sleep 60 &` used to survive the timeout while the note said it was stopped."""
    start = time.monotonic()
    done = run(ESCAPE.format(pid="escaped") + " & sleep 60", tmp_path, timeout=2.0)
    took = time.monotonic() - start
    assert done.timed_out and not done.ok and 2.0 <= took < 3.5
    assert "killed after 2 s: the command and every process it started were stopped" in done.report()
    assert not alive(pid_from(tmp_path / "escaped"))


def test_a_background_process_left_by_a_passing_command_is_stopped_and_named(tmp_path):
    """Issue 13 item 6: `sleep 8 & exit 0` is a pass, returned at once, and the sleep is gone."""
    start = time.monotonic()
    done = run("sleep 8 & echo $! > bg; exit 0", tmp_path)
    assert done.ok and done.exit_code == 0 and time.monotonic() - start < 2.0
    # named as /proc showed it: "sleep", or "bash" when caught between fork and exec
    assert done.leftovers.startswith("[the command left 1 process running in the background (")
    assert done.leftovers.endswith("); stopped]")
    assert done.report() == done.leftovers
    assert not alive(pid_from(tmp_path / "bg"))


def test_a_double_forked_setsid_process_is_stopped(tmp_path):
    start = time.monotonic()
    done = run(f"( {ESCAPE.format(pid='double')} & ) ; while [ ! -s double ]; do sleep 0.01; done; exit 0", tmp_path)
    assert done.ok and time.monotonic() - start < 2.0
    assert "sleep" in done.leftovers and "stopped" in done.leftovers
    assert not alive(pid_from(tmp_path / "double"))


def test_ctrl_c_in_the_agent_stops_the_command_and_its_escapees(tmp_path):
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(ESCAPE.format(pid="escaped") + " & sleep 60", tmp_path, timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not alive(pid_from(tmp_path / "escaped"))


def test_the_command_dies_with_the_agent(tmp_path):
    agent = textwrap.dedent(f"""
        import os
        from continualcode.process import run_command
        run_command({ESCAPE.format(pid="escaped") + " & sleep 60"!r}, {str(tmp_path)!r}, env=dict(os.environ),
                    timeout=60, output_limit=1000)
    """)
    proc = subprocess.Popen([sys.executable, "-c", agent])
    escaped = pid_from(tmp_path / "escaped", wait=10)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while alive(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(escaped)


@pytest.mark.parametrize("name, value", [
    ("DB_PASSWD", "hunter2"), ("MYSQL_PWD", "hunter2"), ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "/home/u/sa.json"), ("SENTRY_DSN", "https://k@o1.ingest.sentry.io/1"),
    ("NPM_AUTH", "x"), ("OPENAI_API_KEY", "x"), ("GH_TOKEN", "x"), ("my_secret", "x"), ("PGPASSWORD", "x"),
    ("DATABASE_URL", "postgres://u:p@h/db"), ("UPSTREAM", "https://alice:s3cret@example.com/x"),
    ("SOME_VAR", "ghp_" + "a" * 36), ("SOME_VAR", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("SESSION_COOKIE", "x"),
])
def test_secret_names_and_values_are_recognised(name, value):
    assert is_secret(name, value)


@pytest.mark.parametrize("name, value", [
    ("PWD", "/work"), ("OLDPWD", "/"), ("PATH", "/usr/bin"), ("HOME", "/root"), ("GIT_AUTHOR_NAME", "t"),
    ("DATABASE_URL", "postgres://localhost/db"), ("LANG", "C.UTF-8"), ("EDITOR", "vim"),
])
def test_ordinary_variables_pass(name, value):
    assert not is_secret(name, value)


def test_scrub_env_keeps_what_the_user_allows():
    environ = {"PATH": "/bin", "DB_PASSWD": "x", "DATABASE_URL": "postgres://u:p@h/db", "GH_TOKEN": "t"}
    assert scrub_env(environ) == {"PATH": "/bin"}
    assert scrub_env(environ, allow=("DATABASE_URL",)) == {"PATH": "/bin", "DATABASE_URL": "postgres://u:p@h/db"}
    assert "PASS" in SECRET_NAME_WORDS and "AUTH" in SECRET_NAME_WORDS


def test_the_supervisor_the_command_can_see_has_only_the_given_environment(tmp_path, monkeypatch):
    """`cat /proc/$PPID/environ` shows the supervisor's environment: the filtered one."""
    monkeypatch.setenv("DB_PASSWD", "hunter2-in-the-agent")
    done = run_command("tr '\\0' '\\n' < /proc/$PPID/environ; echo; tr '\\0' ' ' < /proc/$PPID/cmdline", tmp_path,
                       env=scrub_env(dict(os.environ)), timeout=10, output_limit=100_000)
    assert done.ok and "from continualcode.process import supervise" in done.output  # $PPID is the supervisor
    assert "hunter2-in-the-agent" not in done.output and "PATH=" in done.output


def test_no_secret_reaches_a_bash_call_or_the_store_through_the_real_cli(git_repo, tmp_path):
    """Issue 13 item 2 end to end: `python -m continualcode -p` with secrets in its environment; the
    scripted bash call reads the supervisor's environ ($PPID) and the agent's (its parent)."""
    import json

    from continualcode.agent.tool_calls import ToolCall, render_tool_call

    command = ("tr '\\0' '\\n' < /proc/$PPID/environ; echo '-- agent:'; agent=$(cut -d' ' -f4 /proc/$PPID/stat); "
               "tr '\\0' ' ' < /proc/$agent/cmdline; echo; tr '\\0' '\\n' < /proc/$agent/environ")
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["On it.\n" + render_tool_call(ToolCall("bash", {"command": command})), "Done."]))
    secrets = {"DB_PASSWD": "s3cret-passwd-1", "MYSQL_PWD": "s3cret-pwd-2", "DATABASE_URL": "postgres://u:s3cret-3@h/db",
               "SENTRY_DSN": "https://s3cret-4@o1.ingest.sentry.io/1", "OPENAI_API_KEY": "s3cret-key-5"}
    env = {**os.environ, **secrets, "PLAIN_MARKER": "visible-6", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-m", "continualcode", "--repo", str(git_repo), "--engine", "scripted",
                           "--script", str(script), "-p", "show the environment", "--yes", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    report = json.loads(done.stdout)
    output = report["tool_calls"][0]["output"]
    supervisor, agent = output.split("-- agent:")
    assert "PLAIN_MARKER=visible-6" in supervisor and "PLAIN_MARKER=visible-6" in agent
    assert "-m continualcode --repo" in agent.strip().splitlines()[0]  # the supervisor's parent: the agent
    store = (git_repo / ".continualcode" / "store.db").read_bytes()
    for value in secrets.values():
        assert value not in done.stdout and value not in done.stderr
        assert value.encode() not in store
    assert b"visible-6" in store  # the call's output was stored: the absence above means something


def test_a_supervisor_that_never_reports_is_stopped_and_nothing_is_claimed(tmp_path, monkeypatch):
    from continualcode import process

    monkeypatch.setattr(process, "SUPERVISOR", "import time; time.sleep(60)")
    monkeypatch.setattr(process, "START_GRACE_S", 0.5)
    start = time.monotonic()
    done = run("true", tmp_path, timeout=0.5)
    assert time.monotonic() - start < 3.0
    assert not done.ok and done.exit_code is None
    assert done.report() == ("[the command's supervisor did not report; processes the command started may still "
                             "be running]\n[exit status unknown]")
