"""Claim owners against real processes: running, zombie, reaped, reused pid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from continualcode.store.process_owner import owner_alive, process_owner


def test_this_process_is_alive():
    assert owner_alive(process_owner(os.getpid()))


def test_missing_or_garbled_owner_is_dead():
    assert not owner_alive(None)
    assert not owner_alive("")
    assert not owner_alive("no-pid-here")


def test_another_hosts_process_counts_as_alive():
    assert owner_alive("some-other-host:1:1")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_child_is_dead_as_zombie_and_once_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = process_owner(child.pid)
    assert owner_alive(owner)
    child.kill()
    deadline = time.monotonic() + 10
    while owner_alive(owner):  # a zombie until reaped: still counts as dead
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.wait()
    assert not owner_alive(owner)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_reused_pid_is_not_the_old_owner():
    host, pid, start = process_owner(os.getpid()).split(":")
    assert start, "Linux records the start time"
    assert not owner_alive(f"{socket.gethostname()}:{pid}:{int(start) + 1}")
