"""Path containment, on a real directory tree with real symlinks (including hostile ones)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from continualcode.tools.workspace import PathRefused, Workspace, is_git_name


def make_tree(base: Path) -> tuple[Workspace, Path]:
    """A repo with every kind of link that could leak out, and a directory outside it."""
    root = base / "repo"
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret")
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".continualcode").mkdir()
    (root / "~home").mkdir()
    links = {
        "out_abs": outside,                      # absolute link out
        "out_rel": Path("../outside"),           # relative link out
        "src/pkg/up": Path("../../../outside"),  # deep relative link out
        "dangling_out": base / "nowhere" / "x",  # dangling, target outside
        "dangling_in": Path("src/new.py"),       # dangling, target inside
        "in_dir": Path("src"),                   # link to a directory inside
        "in_file": Path("src/app.py"),           # link to a file inside
        "chain1": Path("chain2"),                # chain that ends outside
        "chain2": outside / "dir",
        "loop_a": Path("loop_b"),                # a loop
        "loop_b": Path("loop_a"),
        "to_git": Path(".git"),                  # a link into .git
        "to_git_config": Path(".git/config"),
        "to_root": Path("."),                    # the root itself
        "to_parent": Path(".."),
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return Workspace(root), outside


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Workspace, Path]:
    return make_tree(tmp_path)


def inside(ws: Workspace, path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == ws.root or ws.root in real.parents


def test_plain_relative_paths_resolve_inside(tree):
    ws, _ = tree
    assert ws.resolve("src/app.py") == ws.root / "src" / "app.py"
    assert ws.resolve("./src//app.py") == ws.root / "src" / "app.py"
    assert ws.resolve("src/pkg/../app.py") == ws.root / "src" / "app.py"   # '..' that stays inside
    assert ws.resolve(".") == ws.root
    assert ws.resolve("src/not_yet.py") == ws.root / "src" / "not_yet.py"  # new files are fine


def test_tilde_is_not_expanded(tree):
    ws, _ = tree
    assert ws.resolve("~home/notes.txt") == ws.root / "~home" / "notes.txt"
    assert ws.resolve("~") == ws.root / "~"


@pytest.mark.parametrize("path", ["/etc/passwd", "/", "//etc", "/tmp/../etc"])
def test_absolute_paths_are_refused(tree, path):
    ws, _ = tree
    with pytest.raises(PathRefused, match="absolute"):
        ws.resolve(path)


def test_absolute_path_inside_root_is_refused_with_the_relative_hint(tree):
    ws, _ = tree
    with pytest.raises(PathRefused) as caught:
        ws.resolve(str(ws.root / "src" / "app.py"))
    assert "src/app.py" in str(caught.value)


@pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "src/../../outside", "src/pkg/../../.."])
def test_dotdot_escapes_are_refused(tree, path):
    ws, _ = tree
    with pytest.raises(PathRefused, match="outside the repository"):
        ws.resolve(path)


@pytest.mark.parametrize("path", [
    "out_abs", "out_abs/secret.txt", "out_rel/secret.txt", "src/pkg/up/secret.txt",
    "dangling_out", "chain1", "chain1/new.txt", "to_parent", "in_dir/pkg/up/x", "to_root/out_abs/x",
])
def test_symlinks_leaving_the_root_are_refused(tree, path):
    ws, _ = tree
    with pytest.raises(PathRefused, match="outside the repository"):
        ws.resolve(path)


def test_symlinks_that_stay_inside_resolve_to_their_target(tree):
    ws, _ = tree
    assert ws.resolve("in_dir/app.py") == ws.root / "src" / "app.py"
    assert ws.resolve("in_file") == ws.root / "src" / "app.py"
    assert ws.resolve("dangling_in", write=True) == ws.root / "src" / "new.py"


def test_symlink_loop_does_not_escape(tree):
    ws, _ = tree
    try:
        resolved = ws.resolve("loop_a")
    except PathRefused:
        return
    assert inside(ws, resolved.parent)


@pytest.mark.parametrize("path", [
    ".git", ".git/config", ".GIT/config", ".Git", "src/../.git/config", ".git/../src/app.py",
    "sub/.git/HEAD", ".git.", ".git ", ".g\u200cit/config", "GIT~1/config", "to_git", "to_git/objects",
    "to_git_config",
])
def test_git_internals_are_refused(tree, path):
    ws, _ = tree
    with pytest.raises(PathRefused, match=r"\.git"):
        ws.resolve(path)


def test_store_is_readable_but_not_writable(tree):
    ws, _ = tree
    assert ws.resolve(".continualcode/store.db") == ws.root / ".continualcode" / "store.db"
    for path in (".continualcode/store.db", ".continualcode", "src/../.continualcode/x"):
        with pytest.raises(PathRefused, match="store"):
            ws.resolve(path, write=True)
    with pytest.raises(PathRefused, match="root"):
        ws.resolve(".", write=True)


@pytest.mark.parametrize("path", ["", "   ", "src/\x00app.py", "\x00"])
def test_empty_and_nul_paths_are_refused(tree, path):
    ws, _ = tree
    with pytest.raises(PathRefused):
        ws.resolve(path)


def test_refusal_is_a_value_error_with_a_message_that_says_what_to_do(tree):
    ws, _ = tree
    with pytest.raises(ValueError) as caught:
        ws.resolve("/etc/passwd")
    assert isinstance(caught.value, PathRefused)
    assert caught.value.path == "/etc/passwd"
    assert "relative to the repository root" in str(caught.value)


def test_is_git_name():
    assert is_git_name(".git") and is_git_name(".GIT") and is_git_name(".git. ") and is_git_name("git~1")
    assert not is_git_name(".gitignore") and not is_git_name("git") and not is_git_name(".github")


def test_relative_display(tree):
    ws, _ = tree
    assert ws.relative(ws.resolve("src/app.py")) == "src/app.py"
    assert ws.relative(ws.root) == "."


# --- fuzzing: a few hundred generated hostile paths, none may escape -------------------

PIECES = [
    "..", ".", "", "src", "pkg", "app.py", "new.py", "~", "~home", ".git", ".GIT", ".gIt.", "GIT~1",
    ".continualcode", "out_abs", "out_rel", "up", "dangling_out", "dangling_in", "in_dir", "in_file",
    "chain1", "chain2", "loop_a", "to_git", "to_root", "to_parent", "secret.txt", "outside", "...",
    "%2e%2e", "..\\..", "\u2024\u2024", " ", "a" * 40, "é", "\\", "\x00",
]


def hostile_paths(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        parts = [rng.choice(PIECES) for _ in range(rng.randint(1, 7))]
        path = "/".join(parts)
        if rng.random() < 0.15:
            path = "/" + path
        if rng.random() < 0.1:
            path = path.replace("/", "//")
        paths.append(path)
    return paths


@pytest.mark.parametrize("write", [False, True])
def test_fuzzed_paths_never_escape(tmp_path, write):
    ws, outside = make_tree(tmp_path)
    accepted = refused = 0
    for path in hostile_paths(400, seed=1234 + write):
        try:
            resolved = ws.resolve(path, write=write)
        except PathRefused:
            refused += 1
            continue
        accepted += 1
        # What the OS would open through the returned path stays inside, off .git,
        # and (for writes) off the store.
        real = Path(os.path.realpath(resolved))
        assert inside(ws, real), (path, real)
        assert outside not in real.parents and real != outside, (path, real)
        rel_parts = real.relative_to(ws.root).parts
        assert not any(is_git_name(part) for part in rel_parts), (path, real)
        if write:
            assert rel_parts[:1] != (".continualcode",), (path, real)
    # The generator must exercise both outcomes, or the test proves nothing.
    assert accepted > 20 and refused > 100, (accepted, refused)


def test_fuzzed_writes_through_accepted_paths_land_inside(tmp_path):
    """Actually write through every accepted path; then nothing outside has changed."""
    ws, outside = make_tree(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in outside.rglob("*"))
    for path in hostile_paths(300, seed=99):
        try:
            resolved = ws.resolve(path, write=True)
        except PathRefused:
            continue
        try:
            resolved.parent.mkdir(parents=True, exist_ok=True)
            resolved.write_text("written by the fuzzer")
        except OSError:
            pass  # a directory, a loop, a name too long: the OS refused, which is fine
    after = sorted(p.relative_to(tmp_path) for p in outside.rglob("*"))
    assert after == before
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (tmp_path / "nowhere").exists()
    assert (ws.root / ".git" / "config").read_text() == "[core]\n"
