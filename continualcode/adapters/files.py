"""What one stored adapter version is on disk and how to check it.

Beside the registry (`continualcode.adapters.registry`) so the integrity rules read on their
own: meta.json records every file's size and sha256; a listing checks sizes and safetensors
headers (cheap, catches truncation and missing files); loading or going live also checks the
hashes (catches bit rot and overwritten files). Writes go through `continualcode.atomic`, so a
killed process leaves either the old file or the new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

META = "meta.json"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
TEACHER_FILE = "teacher.safetensors"
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE)


VERSION_DIR = re.compile(r"v(\d{4,})")
_VERSION_SPEC = re.compile(r"[vV]?(\d+)")


class AdapterError(RuntimeError):
    """A registry operation cannot proceed; the message says what to do next."""


class CorruptAdapterError(AdapterError):
    """A stored version failed an integrity check and must not be served."""


def version_name(spec: str | int) -> str:
    """Canonical name for a version number: ``3``, ``"3"``, ``"v3"``, ``"v0003"`` -> ``"v0003"``."""
    text = str(spec).strip()
    match = _VERSION_SPEC.fullmatch(text)
    if not match:
        raise AdapterError(
            f"{text!r} is not an adapter version; use a name like v3, 3 or v0003, "
            "or 'live' / 'base' (`continualcode adapters list` shows the versions)"
        )
    number = int(match.group(1))
    if number < 1:
        raise AdapterError(f"{text!r}: versions start at v0001; use 'base' for the base model")
    return f"v{number:04d}"



@dataclass(frozen=True)
class AdapterVersion:
    """One stored version as listed: its meta.json, whether it is live, and why it is corrupt."""

    version: str  # "v0003"
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    corrupt: str | None = None
    live: bool = False

    @property
    def number(self) -> int:
        return int(self.version[1:])

    @property
    def parent(self) -> str | None:
        return self.meta.get("parent")

    @property
    def created(self) -> str | None:
        return self.meta.get("created")

    @property
    def commit(self) -> str | None:
        return self.meta.get("commit")

    @property
    def examples(self) -> list:
        return list(self.meta.get("examples") or [])

    @property
    def n_examples(self) -> int:
        return len(self.examples)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.meta.get("metrics") or {})

    @property
    def base_model(self) -> str | None:
        return self.meta.get("base_model")

    @property
    def base_checksum(self) -> str | None:
        return self.meta.get("base_checksum")

    @property
    def promotion(self) -> dict[str, Any]:
        return dict(self.meta.get("promotion") or {})

    @property
    def decision(self) -> str | None:
        return self.promotion.get("decision")

    @property
    def reason(self) -> str | None:
        return self.promotion.get("reason")

    @property
    def has_teacher(self) -> bool:
        return TEACHER_FILE in (self.meta.get("files") or {})

    def to_json(self) -> dict[str, Any]:
        """The row `adapters list --json` prints."""
        return {
            "version": self.version, "parent": self.parent, "created": self.created,
            "commit": self.commit, "n_examples": self.n_examples, "examples": self.examples,
            "decision": self.decision, "reason": self.reason,
            "scores": self.promotion.get("scores") or {}, "metrics": self.metrics,
            "base_model": self.base_model, "live": self.live, "corrupt": self.corrupt,
            "path": str(self.path),
        }


def check_version(path: Path, *, verify: bool) -> tuple[dict[str, Any], str | None]:
    """(meta, None) for a sound version, (meta or {}, reason) for a corrupt one.

    Only regular files directly inside the version directory are read: a
    meta.json naming `../../etc/passwd`, a symlink or a FIFO (which would hang
    the read) makes the version corrupt. A repository can commit
    `.continualcode/`, so these files may come from whoever wrote the repo.
    """
    if path.is_symlink():
        return {}, "is a symlink; a version is a directory the registry wrote"
    if not path.is_dir():
        return {}, "not a directory"
    try:
        if not stat.S_ISREG((path / META).lstat().st_mode):
            return {}, "meta.json is not a regular file"
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        return {}, "meta.json is missing"
    except (OSError, ValueError) as e:
        return {}, f"meta.json is unreadable ({e})"
    if not isinstance(meta, dict):
        return {}, "meta.json is not a JSON object"
    if meta.get("version") != path.name:
        return meta, f"meta.json says version {meta.get('version')!r}, the directory is {path.name}"
    files = meta.get("files")
    if not isinstance(files, dict) or any(f not in files for f in ADAPTER_FILES):
        return meta, "meta.json does not list the adapter files"
    for filename, record in files.items():
        if not is_plain_file_name(filename):
            return meta, f"meta.json lists {filename!r}, which is not a file name inside {path.name}/"
        file = path / filename
        try:
            info = file.lstat()
            expected = int(record["size"])
        except FileNotFoundError:
            return meta, f"{filename} is missing"
        except (KeyError, TypeError, ValueError):
            return meta, f"meta.json has no valid size for {filename}"
        if not stat.S_ISREG(info.st_mode):
            return meta, f"{filename} is not a regular file (a symlink, directory or FIFO)"
        size = info.st_size
        if size != expected:
            return meta, f"{filename} has {size} bytes, meta.json recorded {expected}"
        if filename.endswith(".safetensors"):
            problem = safetensors_problem(file, size)
            if problem:
                return meta, f"{filename}: {problem}"
        if verify and sha256_file(file) != record.get("sha256"):
            return meta, f"{filename} does not match its sha256 in meta.json"
    try:
        json.loads((path / CONFIG_FILE).read_text())
    except ValueError as e:
        return meta, f"{CONFIG_FILE} is not valid JSON ({e})"
    return meta, None


def is_plain_file_name(name: object) -> bool:
    """A meta.json `files` key names a file directly inside the version directory:
    no separators, not `.` or `..`, not absolute, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in ("/", "\\", "\0")))


def safetensors_problem(file: Path, size: int) -> str | None:
    """Check the header and that the data section is exactly as long as it says."""
    try:
        with open(file, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                return "header length exceeds the file"
            header = json.loads(f.read(header_len))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"),
                  default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as e:
        return f"unreadable header ({e})"
    if 8 + header_len + end != size:
        return "data section does not match the header (truncated?)"
    return None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, default=float) + "\n").encode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_tmp(entry: Path) -> None:
    """Remove a leftover temporary entry unless a live publisher still holds its lock."""
    if not entry.is_dir() or entry.is_symlink():
        entry.unlink(missing_ok=True)
        return
    fd = os.open(entry, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        shutil.rmtree(entry, ignore_errors=True)
    finally:
        os.close(fd)
