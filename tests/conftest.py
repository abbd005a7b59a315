"""Shared fixtures: real git repos in tmp_path and the real bundled SmolLM2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SMALL_MODEL = "smollm2-135m"


@pytest.fixture(autouse=True)
def user_config_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty user config directory (and trusted-config record)."""
    home = tmp_path_factory.mktemp("xdg-config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def trust_repo_config(repo: Path) -> None:
    """What `continualcode trust --yes` does: let the test repo's config name its test command."""
    from continualcode.config import set_trusted
    from continualcode.paths import repo_config_path

    set_trusted(repo_config_path(repo))


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one committed file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.name", "t"], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.email", "t@example.com"], cwd=repo, check=True)
    (repo / "app.py").write_text("def add(a, b):\n    return a - b\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


@pytest.fixture(scope="session")
def small_model():
    """The real bundled SmolLM2-135M, resolved to its cached HF directory."""
    from continualcode.models import resolve

    return resolve(SMALL_MODEL)


@pytest.fixture(scope="session")
def small_engine(small_model):
    """One fp32 embedded engine on SmolLM2 shared by the session (loading takes ~1 s)."""
    from continualcode.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(small_model, dtype="fp32")
