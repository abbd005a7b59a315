"""The one way to run a command: bash, run_tests, the pre-commit checks, solve's check, HumanEval.

Every command runs under a small supervisor: `supervise`, below, in a separate
interpreter (``python -I -S``; this module imports only the standard library). The
supervisor makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``),
so every process the command starts stays its descendant even after
``setsid`` or a double fork (orphans are re-parented to the nearest subreaper,
not to init), and starts ``bash -c COMMAND`` in a new session. When the shell
exits, or the timeout passes, it SIGKILLs every remaining descendant, found
through /proc, and repeats until it has no child left, so "every process it
started was stopped" is known, not hoped. It then reports on a status pipe
what happened: the shell's exit status, whether it timed out, what was left
running. A background process left by a command that succeeded is stopped and
named, and the command still succeeds.

The supervisor dies with the agent (PR_SET_PDEATHSIG, then the same clean-up),
and is in a session of its own, so the terminal's Ctrl-C reaches the agent,
which asks the supervisor to stop the command (SIGTERM).

Output is read as it comes and kept head-and-tail within a byte budget, with a
note saying how much was cut. The environment is the caller's (``env=``); the
tools and checks pass ``scrub_env(os.environ)``, which drops every variable
whose name or value looks like a credential (the rule lives here, in the bottom
layer, so the tools, the hooks and the CLI's start-up scrub share it).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from continualcode.credentials import looks_like_credential

# -- what a command's environment must not carry ---------------------------------------------------

SECRET_NAME_WORDS = ("KEY", "TOKEN", "SECRET", "PASS", "PWD", "AUTH", "CRED", "DSN", "PRIVATE",
                     "SESSION", "COOKIE")
"""A variable whose name contains one of these (any case) is a credential: DB_PASSWD, MYSQL_PWD,
SSH_AUTH_SOCK, GOOGLE_APPLICATION_CREDENTIALS, SENTRY_DSN, NPM_AUTH..., *_API_KEY, GH_TOKEN."""

HARMLESS_NAMES = frozenset({"PWD", "OLDPWD", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE"})
"""Names that contain a secret word but are not secrets (the shell's directories, git's author)."""

def is_secret(name: str, value: str, words: tuple[str, ...] = SECRET_NAME_WORDS) -> bool:
    """True when a variable's name contains a secret word, or its value has a credential's shape."""
    upper = name.upper()
    if upper not in HARMLESS_NAMES and any(word.upper() in upper for word in words):
        return True
    return looks_like_credential(value)


def scrub_env(environ: dict[str, str], allow: tuple[str, ...] | list[str] = (),
              words: tuple[str, ...] = SECRET_NAME_WORDS) -> dict[str, str]:
    """``environ`` without secret-looking variables, except the names listed in ``allow``."""
    allowed = set(allow)
    return {name: value for name, value in environ.items() if name in allowed or not is_secret(name, value, words)}


# -- running a command (the agent's side) ---------------------------------------------------------

STOP_LIMIT_S = 5.0
"""Seconds the supervisor keeps killing and reaping before it gives up on a process (one stuck in
the kernel, state D) and reports it as not stopped."""
START_GRACE_S = 10.0
"""Seconds the agent allows the supervisor beyond the command's timeout (start-up, clean-up) before
it stops waiting and kills it: the supervisor itself hung, which should not happen."""


@dataclass
class CommandResult:
    ok: bool
    """Exit code 0 and no timeout."""
    output: str
    """What the command printed (stdout and stderr), head and tail within the budget."""
    exit_code: int | None
    """The shell's exit status; -N when it was killed by signal N; None when it was not seen."""
    duration: float
    timed_out: bool
    leftovers: str = ""
    """A note on what the supervisor stopped after the shell was done (empty when nothing was left)."""

    def report(self) -> str:
        """The output followed by the notes a reader needs: timeout, leftovers, exit code."""
        notes = [self.leftovers] if self.leftovers else []
        if not self.timed_out and self.exit_code != 0:
            code = self.exit_code
            notes.append("[exit status unknown]" if code is None else f"[exit code {code}]" if code >= 0
                         else f"[killed by signal {signal.Signals(-code).name}]")
        return "\n".join([self.output.rstrip("\n"), *notes]).lstrip("\n") if notes else self.output


class BoundedOutput:
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

    def pump(self, stream) -> None:
        while chunk := stream.read1(65536):
            self.feed(chunk)

    def text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if cut <= 0:
            return head + tail
        return f"{head}\n[... {cut} bytes of output cut ...]\n{tail}"


def run_command(command: str, cwd: Path | str, *, env: dict[str, str], timeout: float,
                output_limit: int) -> CommandResult:
    """Run ``bash -c command`` in ``cwd`` under the supervisor; everything it started is gone on return."""
    start = time.monotonic()
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", SUPERVISOR, str(Path(__file__).parents[1]), str(status_w),
             str(os.getpid()), repr(float(timeout)), command],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(status_w,), start_new_session=True,
        )
    except BaseException:  # no such cwd, no interpreter
        os.close(status_r)
        raise
    finally:
        os.close(status_w)
    output = BoundedOutput(output_limit)
    reader = threading.Thread(target=output.pump, args=(proc.stdout,), name="command-output", daemon=True)
    reader.start()
    try:
        status = _wait_for_report(proc, status_r, timeout + START_GRACE_S)
    except BaseException:  # Ctrl-C in the agent: the supervisor stops the command, then we go on raising
        _stop_supervisor(proc)
        raise
    finally:
        os.close(status_r)
    reader.join(timeout=2.0)
    text = output.text()
    if reader.is_alive():  # only a process outside the supervisor's tree could hold the pipe now
        text += "\n[stopped reading: a process outside the command kept its output open]"
    else:
        proc.stdout.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status["status"]) if status.get("status") is not None else None
    timed_out = bool(status.get("timed_out"))
    return CommandResult(code == 0 and not timed_out, text, code, time.monotonic() - start, timed_out,
                         _leftover_note(status, timeout))


def _wait_for_report(proc: subprocess.Popen, status_r: int, limit: float) -> dict:
    """The supervisor's final report; it closes the status pipe when it is done."""
    deadline = time.monotonic() + limit
    data = b""
    poller = select.poll()  # not select(): the agent may hold more than 1024 descriptors
    poller.register(status_r, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _stop_supervisor(proc, data)
            return {**_last_report(data), "hung": True}
        if poller.poll(left * 1000):
            chunk = os.read(status_r, 65536)
            if not chunk:
                break
            data += chunk
    proc.wait()
    return _last_report(data)


def _last_report(data: bytes) -> dict:
    report: dict = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            report = json.loads(line)
        elif line.startswith("started "):
            report.setdefault("shell", int(line.split()[1]))
    return report


def _stop_supervisor(proc: subprocess.Popen, data: bytes = b"") -> None:
    """Ask the supervisor to stop everything (SIGTERM); if it does not, kill it and the shell's session."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_LIMIT_S + 1)
        return
    except subprocess.TimeoutExpired:
        pass
    proc.kill()
    proc.wait()
    shell = _last_report(data).get("shell")
    if shell:
        try:
            os.killpg(shell, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _leftover_note(status: dict, timeout: float) -> str:
    """What the supervisor did after the shell was done, said only as far as it is known."""
    if status.get("hung") or "status" not in status:
        return "[the command's supervisor did not report; processes the command started may still be running]"
    killed = f"killed after {timeout:g} s" if status.get("timed_out") else ""
    if status.get("survivors"):
        return (f"[{killed + '; ' if killed else ''}these processes it started could not be stopped: "
                f"{_names(status['survivors'])}]")
    if killed:
        stopped = "the command and every process it started were" if status.get("subreaper") else \
            "the command's process group was"
        return f"[{killed}: {stopped} stopped]"
    left = status.get("left", [])
    if left:
        return (f"[the command left {len(left)} process{'es' if len(left) > 1 else ''} running in the background "
                f"({_names(left)}); stopped]")
    return ""


def _names(names: list[str]) -> str:
    return ", ".join(dict.fromkeys(names))


# -- the supervisor (in its own interpreter) -------------------------------------------------------

SUPERVISOR = ("import sys; sys.path.insert(0, sys.argv[1]); from continualcode.process import supervise; "
              "supervise(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])")
"""Imported, not run as a script: the module's cached bytecode starts it ~40 ms sooner."""

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
_WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def supervise(status_fd: int, parent: int, timeout: float, command: str) -> None:
    """Run the command, wait for the shell or the deadline, stop every descendant, report."""
    os.set_inheritable(status_fd, False)
    subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    if os.getppid() != parent:  # the agent died before PDEATHSIG was set
        return
    shell = _start_shell(command)
    os.write(status_fd, f"started {shell}\n".encode())
    deadline = time.monotonic() + timeout
    status, timed_out = None, False
    while status is None:
        status, _ = _reap(shell)
        left = deadline - time.monotonic()
        timed_out = status is None and left <= 0
        if status is not None or timed_out:
            break
        woken = signal.sigtimedwait(_WATCHED, min(left, 60.0))
        if woken is not None and woken.si_signo != signal.SIGCHLD:
            break  # the agent asked us to stop (SIGTERM, its death, a hang-up)
    stopped, survivors, late = _stop_all(shell, subreaper)
    report = {"status": late if status is None else status, "timed_out": timed_out, "subreaper": subreaper,
              "left": [name for pid, name in stopped if pid != shell], "survivors": survivors}
    try:
        os.write(status_fd, (json.dumps(report) + "\n").encode())
    except BrokenPipeError:
        pass  # the agent is gone; its command is stopped all the same


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: no subreaper, the process group is all we can stop
        return False


def _start_shell(command: str) -> int:
    try:  # exactly the environment the agent passed (Python may add LC_CTYPE to os.environ at start-up)
        block = Path("/proc/self/environ").read_bytes()
        environ = dict(entry.split(b"=", 1) for entry in block.split(b"\0") if b"=" in entry)
    except OSError:
        environ = dict(os.environ)
    pid = os.fork()
    if pid == 0:  # the child: a new session, default signals, then bash
        try:
            os.setsid()
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            os.execvpe("bash", ["bash", "-c", command], environ)
        except BaseException as exc:
            os.write(2, f"continualcode: cannot start bash: {exc}\n".encode())
        finally:
            os._exit(127)
    return pid


def _reap(shell: int) -> tuple[int | None, bool]:
    """Reap every child that has exited (orphans included): (the shell's wait status if it was among
    them, whether any child is left)."""
    found = None
    try:
        while (reaped := os.waitpid(-1, os.WNOHANG))[0] != 0:
            found = reaped[1] if reaped[0] == shell else found
    except ChildProcessError:
        return found, False
    return found, True


def _stop_all(shell: int, subreaper: bool) -> tuple[list[tuple[int, str]], list[str], int | None]:
    """SIGKILL every descendant and reap until no child is left: (stopped, survivors, shell status)."""
    if not subreaper:
        try:
            os.killpg(shell, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    stopped: list[tuple[int, str]] = []
    status, deadline = None, time.monotonic() + STOP_LIMIT_S
    while True:
        reaped, children_left = _reap(shell)
        status = reaped if reaped is not None else status
        if not children_left:
            return stopped, [], status  # with a subreaper, no child left means no descendant left
        tree = _descendants(os.getpid())
        if time.monotonic() > deadline:
            return stopped, [name for _, name, _ in tree], status
        for pid, name, started in tree:
            if _kill(pid, started) and (pid, name) not in stopped:
                stopped.append((pid, name))
        signal.sigtimedwait({signal.SIGCHLD}, 0.05)


def _stat(pid: int | str) -> tuple[str, str, int, str] | None:
    """(command name, state, parent pid, start time) from /proc/PID/stat; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return stat[stat.index(b"(") + 1: stat.rindex(b")")].decode(errors="replace"), fields[0].decode(), \
        int(fields[1]), fields[19].decode()


def _descendants(root: int) -> list[tuple[int, str, str]]:
    """(pid, command name, start time) of every live descendant of ``root``."""
    children: dict[int, list[tuple[int, str, str]]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (stat := _stat(entry)) and stat[1] not in ("Z", "X"):  # zombies are dead
            children.setdefault(stat[2], []).append((int(entry), stat[0], stat[3]))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child[0])
    return found


def _kill(pid: int, started: str) -> bool:
    """SIGKILL ``pid`` if it is still the process that started at ``started`` (never a reused pid)."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (OSError, AttributeError):
        handle = None  # no pidfds (Linux < 5.3): check, then kill by pid
    try:
        if (_stat(pid) or ("", "", 0, ""))[3] != started:
            return False
        if handle is None:
            os.kill(pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        if handle is not None:
            os.close(handle)
