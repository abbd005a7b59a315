"""Who claimed a training example, and whether that process still runs.

A trainer marks the rows it takes with its owner string; a new process opening
the store re-queues rows whose owner has died (kill -9, crash, power loss)
without stealing rows that a live trainer in another REPL is working on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def process_owner(pid: int) -> str:
    """`host:pid:start` names a process uniquely: the start time (Linux /proc) tells a
    reused pid (common in containers, where each run starts at the same pid) apart."""
    state = _proc_state(pid)
    return f"{socket.gethostname()}:{pid}:{state[1] if state else ''}"


def _proc_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from /proc, or None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return fields[0], fields[19]


def owner_alive(owner: str | None) -> bool:
    """Whether the process that claimed a row may still be working on it."""
    try:
        host, pid_text, start = (owner or "").rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False  # no owner recorded: nobody can be working on it
    if host != socket.gethostname():
        return True  # another machine's process: only `older_than` can decide
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to another user
    state = _proc_state(pid)
    if state is None:
        return True  # no /proc here: the pid exists, assume it is the claimer
    return state[0] != "Z" and (not start or state[1] == start)  # zombie or reused pid: dead
