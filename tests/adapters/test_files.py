"""A stored version's integrity check reads only regular files inside the version directory
(issue 13: a meta.json `files` key like `../../secret` was joined onto the directory unchecked).

Versions are written by hand here (meta.json, a JSON config, a minimal safetensors file), so
no torch is needed."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from continualcode.adapters.files import (
    CONFIG_FILE,
    META,
    WEIGHTS_FILE,
    check_version,
    is_plain_file_name,
    sha256_file,
)
from continualcode.adapters.registry import AdapterRegistry, CorruptAdapterError


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0\0\0\0"


def write_version(root: Path, name: str = "v0001", extra: dict[str, Path] | None = None) -> Path:
    """A sound version; `extra` adds meta.json `files` entries (key -> the file it should resolve to)."""
    path = root / name
    path.mkdir(parents=True)
    (path / CONFIG_FILE).write_text('{"r": 4}')
    (path / WEIGHTS_FILE).write_bytes(_safetensors())
    files = {f: {"size": (path / f).stat().st_size, "sha256": sha256_file(path / f)}
             for f in (CONFIG_FILE, WEIGHTS_FILE)}
    for key, target in (extra or {}).items():
        files[key] = {"size": target.stat().st_size, "sha256": sha256_file(target)}
    (path / META).write_text(json.dumps({"version": name, "files": files}))
    return path


def test_a_sound_hand_written_version_passes(tmp_path: Path):
    assert check_version(write_version(tmp_path), verify=True)[1] is None


@pytest.mark.parametrize("key", ["../../secret.txt", "../secret.txt", "SECRET_ABS", "sub/../../secret.txt",
                                 "..", ".", "a\\..\\secret.txt", ""])
def test_a_files_key_outside_the_directory_makes_the_version_corrupt(tmp_path: Path, key: str):
    secret = tmp_path / "secret.txt"
    secret.write_text("ssh-rsa AAAA private\n")
    key = str(secret) if key == "SECRET_ABS" else key
    root = tmp_path / "repo" / ".continualcode" / "adapters"
    # The key resolves to the secret (sizes and hashes match): only the name check stops it.
    write_version(root, extra={key: secret})
    _, problem = check_version(root / "v0001", verify=True)
    assert problem is not None and "not a file name inside v0001/" in problem and repr(key) in problem

    registry = AdapterRegistry(root)
    assert registry.list()[0].corrupt == problem
    with pytest.raises(CorruptAdapterError, match="not a file name"):
        registry.path("v1")  # what an engine would load


def test_symlinks_and_fifos_in_a_version_are_corrupt_not_followed(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    linked = write_version(tmp_path / "a", extra={"notes.txt": secret})
    (linked / "notes.txt").symlink_to(secret)
    assert "notes.txt is not a regular file" in check_version(linked, verify=True)[1]

    fifo = write_version(tmp_path / "b")
    os.unlink(fifo / CONFIG_FILE)
    os.mkfifo(fifo / CONFIG_FILE)  # reading it would block forever
    assert f"{CONFIG_FILE} is not a regular file" in check_version(fifo, verify=True)[1]

    meta_fifo = write_version(tmp_path / "c")
    os.unlink(meta_fifo / META)
    os.mkfifo(meta_fifo / META)
    assert check_version(meta_fifo, verify=True)[1] == "meta.json is not a regular file"

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "v0002").symlink_to(write_version(tmp_path / "e"), target_is_directory=True)
    assert "is a symlink" in check_version(tmp_path / "d" / "v0002", verify=True)[1]


@pytest.mark.parametrize(("name", "plain"), [
    ("adapter_model.safetensors", True), ("teacher.safetensors", True), ("..weird", True),
    ("../x", False), ("/etc/passwd", False), ("a/b", False), ("a\\b", False), ("..", False),
    (".", False), ("", False), ("a\0b", False), (3, False), (None, False),
])
def test_plain_file_names(name, plain: bool):
    assert is_plain_file_name(name) is plain
