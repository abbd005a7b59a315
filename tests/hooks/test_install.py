"""Where `hook install` writes, and where it refuses to (issue 13, item 9)."""

from __future__ import annotations

import subprocess

import pytest

from continualcode.hooks.install import HookError, install_hook, uninstall_hook


@pytest.fixture
def global_config(tmp_path, monkeypatch):
    """A user-level git config of the test's own (GIT_CONFIG_GLOBAL), initially empty."""
    path = tmp_path / "gitconfig"
    path.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(path))
    return path


def test_a_global_hooks_path_is_refused_unless_asked_for(git_repo, global_config, tmp_path):
    shared = tmp_path / "shared-hooks"
    shared.mkdir()
    subprocess.run(["git", "config", "--file", str(global_config), "core.hooksPath", str(shared)], check=True)
    with pytest.raises(HookError, match="outside this repository.*--shared-hooks-path"):
        install_hook(git_repo)
    assert not (shared / "pre-commit").exists()
    installed = install_hook(git_repo, shared=True)
    assert installed.path == shared / "pre-commit"
    uninstall_hook(git_repo)


def test_a_repository_local_hooks_path_is_used(git_repo, global_config, tmp_path):
    shared = tmp_path / "shared-hooks"
    shared.mkdir()
    subprocess.run(["git", "config", "--file", str(global_config), "core.hooksPath", str(shared)], check=True)
    subprocess.run(["git", "config", "--local", "core.hooksPath", ".githooks"], cwd=git_repo, check=True)
    installed = install_hook(git_repo)
    assert installed.path == (git_repo / ".githooks" / "pre-commit").resolve()
    assert not (shared / "pre-commit").exists()


def test_hooks_turned_off_with_dev_null_is_a_clear_error(git_repo, global_config):
    subprocess.run(["git", "config", "--local", "core.hooksPath", "/dev/null"], cwd=git_repo, check=True)
    with pytest.raises(HookError, match="not a directory"):
        install_hook(git_repo)


def test_the_cli_reports_it_with_exit_2(git_repo, global_config):
    import sys

    subprocess.run(["git", "config", "--local", "core.hooksPath", "/dev/null"], cwd=git_repo, check=True)
    done = subprocess.run([sys.executable, "-m", "continualcode", "--repo", str(git_repo), "hook", "install"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a directory" in done.stderr and "Traceback" not in done.stderr
