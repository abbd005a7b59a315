"""The scratch copy of a working tree (continualcode.tools.scratch) and patches applied from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from continualcode.tools.scratch import PatchConflict, ScratchTree, apply_patch


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "notes.txt").write_text("uncommitted, untracked\n")  # the copy must carry it
    return git_repo


def test_scratch_copies_uncommitted_work_and_resets(repo):
    (repo / "app.py").write_text("def add(a, b):\n    return a - b  # edited\n")
    (repo / ".continualcode").mkdir()
    (repo / ".continualcode" / "store.db").write_text("not copied")
    scratch = ScratchTree.create(repo)
    try:
        assert (scratch.root / "app.py").read_text().endswith("# edited\n")
        assert (scratch.root / "notes.txt").is_file() and not (scratch.root / ".continualcode").exists()
        (scratch.root / "app.py").write_text("changed\n")
        (scratch.root / "new.py").write_text("x = 1\n")
        assert scratch.changed_files() == ["app.py", "new.py"]
        scratch.reset()
        assert scratch.diff() == "" and not (scratch.root / "new.py").exists()
    finally:
        scratch.close()
    assert not scratch.base.exists()  # the copy is removed


def test_a_diff_from_the_copy_applies_to_the_tree_and_a_conflict_writes_nothing(repo):
    with ScratchTree.create(repo) as scratch:
        (scratch.root / "app.py").write_text("def add(a, b):\n    return a + b\n")
        (scratch.root / "new.py").write_text("x = 1\n")
        diff = scratch.diff()
    assert sorted(apply_patch(repo, diff)) == ["app.py", "new.py"]
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"
    subprocess.run(["git", "checkout", "-q", "--", "app.py"], cwd=repo, check=True)
    (repo / "new.py").unlink()
    (repo / "app.py").write_text("def add(a, b):\n    return b - a\n")  # the user edited it meanwhile
    with pytest.raises(PatchConflict):
        apply_patch(repo, diff)
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return b - a\n" and not (repo / "new.py").exists()
