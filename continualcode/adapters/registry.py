"""Adapter versions on disk: every published SDPO step is an immutable, loadable directory.

The trainer, both serving engines and the ``adapters`` commands need one answer to
"which weights are serving, and where did they come from", and that answer has to
survive ``kill -9`` in the middle of a save. Layout under
``<repo>/.continualcode/adapters/``::

    v0001/  adapter_config.json, adapter_model.safetensors   stock PEFT save_pretrained layout:
                                                               PeftModel.from_pretrained and vLLM
                                                               load it unchanged
            meta.json                                          provenance (see `AdapterRegistry.publish`)
            teacher.safetensors                                optional EMA teacher tensors
    LIVE                                                       "v0003", or empty/absent = base model
    events.jsonl                                               one line per change of LIVE
    .lock                                                      flock: numbering, LIVE, meta rewrites

Crash rules (tested by SIGKILLing a real publisher 20 times):

- A version is built in ``.tmp-*``, every file and the directory fsynced, then renamed to
  ``vNNNN`` while holding ``.lock`` (so two publishers never take the same number; a rename
  onto an existing version fails and the next number is tried), then the parent is fsynced.
  A directory named ``vNNNN`` is therefore always complete.
- ``LIVE`` and ``meta.json`` rewrites go through a temporary file, fsync, rename, fsync dir.
- Opening a registry removes leftover ``.tmp-*`` entries. A publisher holds a flock on its
  own temporary directory, so an open beside a running publish leaves that one alone.
- meta.json records each file's size and sha256. Listing checks sizes and safetensors headers
  (cheap); `set_live` and `load_tensors` also check the hashes. A corrupt version is listed
  with its reason, is never made live, and loading it raises `CorruptAdapterError`.
- Fallback rule: if LIVE names a missing or corrupt version, or is not a version name, the
  live version is the newest valid version whose promotion was not "rejected" (else the base
  model). The problem is reported in `AdapterRegistry.problems`; LIVE itself is not rewritten,
  so readers never write and a repaired version becomes live again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from continualcode.adapters.files import (
    ADAPTER_FILES,
    CONFIG_FILE,
    META,
    TEACHER_FILE,
    VERSION_DIR,
    WEIGHTS_FILE,
    AdapterError,
    AdapterVersion,
    CorruptAdapterError,
    check_version,
    json_bytes,
    remove_stale_tmp,
    sha256_file,
    utc_now,
    version_name,
)
from continualcode.atomic import TMP_PREFIX, atomic_write, fsync_path, write_synced
from continualcode.paths import STORE_DIR, adapters_dir

if TYPE_CHECKING:
    from torch import Tensor


log = logging.getLogger(__name__)

LIVE = "LIVE"
EVENTS = "events.jsonl"
LOCK = ".lock"
DECISIONS = ("promoted", "rejected", "pending")
META_FORMAT = 1
PEFT_ADAPTER_NAME = "default"



class AdapterRegistry:
    """The versions under one ``adapters/`` directory; safe to open from several processes."""

    def __init__(self, root: Path | str, *, repo_root: Path | str | None = None) -> None:
        self.root = Path(root)
        if repo_root is None and self.root.parent.name == STORE_DIR:
            repo_root = self.root.parent.parent
        self.repo_root = Path(repo_root) if repo_root is not None else None
        self.root.mkdir(parents=True, exist_ok=True)
        self.problems: list[str] = []
        self._recover()

    @classmethod
    def for_repo(cls, repo_root: Path | str) -> AdapterRegistry:
        return cls(adapters_dir(repo_root), repo_root=repo_root)

    # -- reading ---------------------------------------------------------------------

    def resolve(self, spec: str | int | None) -> str | None:
        """Canonical version name for ``spec``; None means the base model."""
        if spec is None or str(spec).strip().lower() == "base":
            return None
        if str(spec).strip().lower() == "live":
            return self._live_name()[0]
        return version_name(spec)

    def list(self, *, verify: bool = False) -> list[AdapterVersion]:
        """All versions, oldest first, corrupt ones included (with their reason)."""
        names = sorted((p.name for p in self.root.iterdir() if VERSION_DIR.fullmatch(p.name)),
                       key=lambda n: int(n[1:]))
        versions = [self._inspect(n, verify=verify) for n in names]
        live = self._live_name(versions)[0]
        return [replace(v, live=True) if v.version == live else v for v in versions]

    def get(self, spec: str | int, *, verify: bool = False) -> AdapterVersion:
        """One version (possibly corrupt: check ``.corrupt``); 'base' has no stored version."""
        name = self.resolve(spec)
        if name is None:
            what = "the live version is the base model" if str(spec).strip().lower() == "live" \
                else "'base' is the base model itself"
            raise AdapterError(f"{what}; there is no stored adapter to show")
        if not (self.root / name).exists():
            raise AdapterError(f"no adapter version {name} in {self.root}; "
                               "`continualcode adapters list` shows the versions")
        version = self._inspect(name, verify=verify)
        return replace(version, live=version.version == self._live_name()[0])

    def live(self) -> AdapterVersion | None:
        """The version being served, after the fallback rule; None = base model."""
        name = self._live_name()[0]
        return None if name is None else self.get(name)

    def lineage(self, spec: str | int | None) -> list[str]:
        """``spec`` and its ancestors, newest first, ending at the first version (base is implied)."""
        chain: list[str] = []
        name = self.resolve(spec)
        while name is not None and name not in chain and (self.root / name).is_dir():
            chain.append(name)
            parent = self._inspect(name).parent
            try:
                name = version_name(parent) if parent else None
            except AdapterError:  # a hand-edited meta.json; the chain ends here
                name = None
        return chain

    def path(self, spec: str | int) -> Path:
        """The directory to hand to PeftModel.from_pretrained or vLLM, after a full check."""
        return self._require_valid(spec, verify=True).path

    def load_tensors(self, spec: str | int) -> dict[str, Tensor]:
        """The adapter's tensors (PEFT key names), after a full checksum check."""
        return self._load_safetensors(spec, WEIGHTS_FILE)

    def load_teacher(self, spec: str | int) -> dict[str, Tensor] | None:
        """The EMA teacher tensors saved beside the adapter, or None if there are none."""
        if not self.get(spec).has_teacher:
            return None
        return self._load_safetensors(spec, TEACHER_FILE)

    def adapter_config(self, spec: str | int) -> dict[str, Any]:
        version = self._require_valid(spec, verify=False)
        return json.loads((version.path / CONFIG_FILE).read_text())

    def history(self) -> list[dict[str, Any]]:
        """Changes of LIVE, oldest first (a line torn by a crash is skipped)."""
        try:
            lines = (self.root / EVENTS).read_text().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    # -- writing ---------------------------------------------------------------------

    def publish(self, peft_model: Any, *, parent: str | int | None, base_model: str,
                base_checksum: str | None, examples: list, metrics: dict[str, Any],
                teacher_tensors: dict[str, Tensor] | None = None,
                promotion: dict[str, Any] | None = None,
                repo_root: Path | str | None = None) -> AdapterVersion:
        """Store the PEFT model's trainable adapter ("default") as the next version.

        ``parent`` is the version training started from (None/'base' = base model);
        ``examples`` are the training-example ids this step learned from.
        """
        if PEFT_ADAPTER_NAME not in (getattr(peft_model, "peft_config", None) or {}):
            raise AdapterError(f"publish() needs a PEFT model with an adapter named "
                               f"{PEFT_ADAPTER_NAME!r} (the trainable student adapter)")

        def write(tmp: Path) -> None:
            peft_model.save_pretrained(str(tmp), selected_adapters=[PEFT_ADAPTER_NAME])

        return self._publish(write, parent=parent, base_model=base_model,
                             base_checksum=base_checksum, examples=examples, metrics=metrics,
                             teacher_tensors=teacher_tensors, promotion=promotion,
                             repo_root=repo_root)

    def publish_from_dir(self, src: Path | str, *, parent: str | int | None, base_model: str,
                         base_checksum: str | None, examples: list, metrics: dict[str, Any],
                         teacher_tensors: dict[str, Tensor] | None = None,
                         promotion: dict[str, Any] | None = None,
                         repo_root: Path | str | None = None) -> AdapterVersion:
        """Like `publish`, from a directory already in save_pretrained layout (tests, imports)."""
        src = Path(src)
        missing = [f for f in ADAPTER_FILES if not (src / f).is_file()]
        if missing:
            raise AdapterError(f"{src} is not a PEFT adapter directory: missing {', '.join(missing)}")

        def write(tmp: Path) -> None:
            for name in ADAPTER_FILES:
                shutil.copyfile(src / name, tmp / name)

        return self._publish(write, parent=parent, base_model=base_model,
                             base_checksum=base_checksum, examples=examples, metrics=metrics,
                             teacher_tensors=teacher_tensors, promotion=promotion,
                             repo_root=repo_root)

    def set_live(self, spec: str | int | None, reason: str = "") -> AdapterVersion | None:
        """Point LIVE at a version ('base' = the base model) and record the event."""
        name = self.resolve(spec)
        target = None if name is None else self._require_valid(name, verify=True)
        with self._locked():  # event first: after a kill, LIVE is the last event's "from" or "to"
            self._append_event({"at": utc_now(), "event": "live", "from": self._read_pointer(),
                                "to": name, "reason": reason})
            atomic_write(self.root / LIVE, (name or "").encode() + b"\n")
        return None if target is None else replace(target, live=True)

    def rollback(self, spec: str | int | None, reason: str = "rollback") -> AdapterVersion | None:
        """Make an earlier version (or 'base') live; training continues from whatever is live."""
        return self.set_live(spec, reason)

    def set_promotion(self, spec: str | int, decision: str, reason: str = "",
                      scores: dict[str, Any] | None = None) -> AdapterVersion:
        """Record the promotion gate's verdict in meta.json (rewritten atomically)."""
        if decision not in DECISIONS:
            raise AdapterError(f"promotion decision must be one of {', '.join(DECISIONS)}, "
                               f"not {decision!r}")
        with self._locked():
            version = self._require_valid(spec, verify=False)
            meta = dict(version.meta)
            meta["promotion"] = {"decision": decision, "reason": reason,
                                 "scores": dict(scores or {}), "decided": utc_now()}
            atomic_write(version.path / META, json_bytes(meta))
        return self.get(version.version)

    # -- internals -------------------------------------------------------------------

    def _publish(self, write: Callable[[Path], None], *, parent: str | int | None,
                 base_model: str, base_checksum: str | None, examples: list,
                 metrics: dict[str, Any], teacher_tensors: dict[str, Tensor] | None,
                 promotion: dict[str, Any] | None, repo_root: Path | str | None) -> AdapterVersion:
        parent_name = self.resolve(parent)
        if parent_name is not None and not (self.root / parent_name).is_dir():
            raise AdapterError(f"parent {parent_name} does not exist in {self.root}")
        promotion = dict(promotion or {"decision": "pending", "reason": "", "scores": {}})
        if promotion.get("decision") not in DECISIONS:
            raise AdapterError(f"promotion decision must be one of {', '.join(DECISIONS)}")
        commit = _git_head(Path(repo_root) if repo_root is not None else self.repo_root)

        with self._locked():  # mkdtemp + flock under the lock: _recover never sees it unlocked
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root))
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from a vLLM server run as another user
            tmp_fd = os.open(tmp, os.O_RDONLY)
            fcntl.flock(tmp_fd, fcntl.LOCK_EX)
        try:
            write(tmp)
            if teacher_tensors is not None:
                from safetensors.torch import save_file

                save_file({k: t.detach().to("cpu").contiguous() for k, t in teacher_tensors.items()},
                          str(tmp / TEACHER_FILE))
            missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
            if missing:
                raise AdapterError(f"save_pretrained wrote no {', '.join(missing)}; "
                                   "is the adapter named 'default'?")
            files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                     for p in sorted(tmp.iterdir()) if p.is_file()}
            for name in files:
                fsync_path(tmp / name)
            meta = {"format": META_FORMAT, "version": None, "parent": parent_name,
                    "base_model": base_model, "base_checksum": base_checksum,
                    "examples": list(examples), "metrics": dict(metrics), "commit": commit,
                    "created": utc_now(), "promotion": promotion, "files": files}
            with self._locked():
                number = self._next_number()
                while True:
                    meta["version"] = name = f"v{number:04d}"
                    write_synced(tmp / META, json_bytes(meta))
                    fsync_path(tmp)
                    try:
                        os.rename(tmp, self.root / name)
                        break
                    except OSError as e:  # a writer that ignored the lock took this number
                        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                            raise
                        number += 1
                fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(tmp_fd)
        return self.get(name)

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.root.iterdir()
                   if (m := VERSION_DIR.fullmatch(p.name))]
        return max(numbers, default=0) + 1

    def _inspect(self, name: str, *, verify: bool = False) -> AdapterVersion:
        path = self.root / name
        meta, problem = check_version(path, verify=verify)
        return AdapterVersion(version=name, path=path, meta=meta, corrupt=problem)

    def _require_valid(self, spec: str | int, *, verify: bool) -> AdapterVersion:
        version = self.get(spec, verify=verify)
        if version.corrupt:
            raise CorruptAdapterError(
                f"adapter {version.version} is corrupt ({version.corrupt}); it cannot be loaded or "
                f"made live. Roll back to another version (`continualcode adapters list`) "
                f"or delete {version.path}")
        return version

    def _load_safetensors(self, spec: str | int, filename: str) -> dict[str, Tensor]:
        from safetensors.torch import load_file

        version = self._require_valid(spec, verify=True)
        return load_file(str(version.path / filename))

    def _read_pointer(self) -> str | None:
        try:
            return (self.root / LIVE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _live_name(self, versions: list[AdapterVersion] | None = None) -> tuple[str | None, str | None]:
        """(live version or None = base, problem with LIVE or None), per the fallback rule."""
        raw = self._read_pointer()
        if raw is None:
            return None, None
        try:
            name = version_name(raw)
        except AdapterError:
            problem = f"LIVE contains {raw!r}, which is not a version name"
        else:
            if (self.root / name).is_dir():
                corrupt = self._inspect(name).corrupt
                if corrupt is None:
                    return name, None
                problem = f"LIVE names {name}, which is corrupt ({corrupt})"
            else:
                problem = f"LIVE names {name}, which does not exist"
        if versions is None:
            versions = [self._inspect(p.name) for p in self.root.iterdir()
                        if VERSION_DIR.fullmatch(p.name)]
        candidates = sorted((v for v in versions if v.corrupt is None and v.decision != "rejected"),
                            key=lambda v: v.number, reverse=True)
        fallback = next((v.version for v in candidates
                         if self._inspect(v.version, verify=True).corrupt is None), None)
        return fallback, (f"{problem}; serving {fallback or 'the base model'} instead (newest "
                          "valid version not rejected by the gate). Fix it with "
                          "`continualcode adapters rollback V`")

    def _recover(self) -> None:
        """Remove what killed writers left behind and report a LIVE that needs attention."""
        with self._locked():
            for entry in self.root.iterdir():
                if entry.name.startswith(TMP_PREFIX):
                    remove_stale_tmp(entry)
                elif VERSION_DIR.fullmatch(entry.name) and entry.is_dir():
                    for inner in entry.glob(TMP_PREFIX + "*"):
                        remove_stale_tmp(inner)
        problem = self._live_name()[1]
        if problem:
            self.problems.append(problem)
            log.warning("%s", problem)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _append_event(self, event: dict[str, Any]) -> None:
        """Append one line; start a new line if a killed writer left a torn one."""
        fd = os.open(self.root / EVENTS, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, (b"\n" if torn else b"") + json.dumps(event).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)


def _git_head(repo_root: Path | None) -> str | None:
    if repo_root is None:
        return None
    try:
        import git

        return git.Repo(repo_root, search_parent_directories=True).head.commit.hexsha
    except ImportError:
        return None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None
