"""The adapter registry on real files: publish, live pointer, integrity, diff, and kill -9.

Models are a tiny randomly initialised Llama (hidden 32, 2 layers, vocab 64) with a real PEFT
LoRA (r=4): no download, and the same code paths as the served model.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

import continualcode
from continualcode.adapters.diff import (
    diff_versions,
    lora_scaling,
    product_norm,
    weight_change_norm,
)
from continualcode.adapters.registry import (
    AdapterError,
    AdapterRegistry,
    CorruptAdapterError,
    version_name,
)

CONFIG = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=64)
PUBLISH = dict(base_model="tiny-llama", base_checksum="sha256:tiny", metrics={"loss": 0.5})


def tiny_base() -> LlamaForCausalLM:
    torch.manual_seed(0)  # every call gives the same base weights
    return LlamaForCausalLM(CONFIG).eval()


def tiny_peft(lora_seed: int = 1):
    base = tiny_base()
    torch.manual_seed(lora_seed)  # init_lora_weights=False: B is random too, so ΔW != 0
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)
    return get_peft_model(base, config).eval()


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """One saved tiny adapter, copied into registries by publish_from_dir."""
    path = tmp_path_factory.mktemp("adapter")
    tiny_peft().save_pretrained(str(path))
    return path


def publish(registry: AdapterRegistry, src: Path, parent=None, examples=(), **kw):
    return registry.publish_from_dir(src, parent=parent, examples=list(examples), **PUBLISH, **kw)


def tmp_entries(root: Path) -> list[Path]:
    return list(root.glob(".tmp-*")) + list(root.glob("v*/.tmp-*"))


# -- names, publish, live, rollback ------------------------------------------------------


def test_version_names():
    for spec in ("v3", "3", "v0003", "V3", 3, " v03 "):
        assert version_name(spec) == "v0003"
    assert version_name("v12345") == "v12345"
    for bad in ("x3", "v", "", "v-1", "3a", "latest"):
        with pytest.raises(AdapterError, match="like v3, 3 or v0003"):
            version_name(bad)
    with pytest.raises(AdapterError, match="use 'base'"):
        version_name("v0")


def test_publish_list_get_live_rollback(tmp_path):
    registry = AdapterRegistry.for_repo(tmp_path)
    assert registry.root == tmp_path / ".continualcode" / "adapters"
    assert registry.list() == [] and registry.live() is None
    model = tiny_peft()

    v1 = registry.publish(model, parent=None, examples=[11, 12], **PUBLISH)
    v2 = registry.publish(model, parent="live", examples=[13], **PUBLISH)  # live = base
    v3 = registry.publish(model, parent=v1.version, examples=["e14"], **PUBLISH)
    assert [v1.version, v2.version, v3.version] == ["v0001", "v0002", "v0003"]
    assert (v1.parent, v2.parent, v3.parent) == (None, None, "v0001")
    assert sorted(p.name for p in v1.path.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "meta.json"]
    assert v1.base_model == "tiny-llama" and v1.base_checksum == "sha256:tiny"
    assert v1.examples == [11, 12] and v1.n_examples == 2 and v1.metrics == {"loss": 0.5}
    assert v1.decision == "pending" and v1.commit is None  # tmp_path is not a git repo
    assert datetime.fromisoformat(v1.created).utcoffset().total_seconds() == 0

    assert [v.version for v in registry.list()] == ["v0001", "v0002", "v0003"]
    assert registry.path("v1") == v1.path == registry.root / "v0001"
    assert not any(v.live for v in registry.list())
    assert registry.get("2").version == registry.get("v0002").version == "v0002"
    with pytest.raises(AdapterError, match="no adapter version v0009"):
        registry.get("v9")
    with pytest.raises(AdapterError, match="base model"):
        registry.get("live")
    with pytest.raises(AdapterError, match="parent v0009 does not exist"):
        registry.publish(model, parent="v9", examples=[], **PUBLISH)

    assert registry.set_live("v2", reason="promoted").live
    assert registry.live().version == "v0002" and registry.get("live").version == "v0002"
    assert [v.version for v in registry.list() if v.live] == ["v0002"]
    v4 = registry.publish(model, parent="live", examples=[], **PUBLISH)
    assert v4.parent == "v0002"

    back = registry.rollback("1")
    assert back.version == "v0001" and registry.live().version == "v0001"
    assert (registry.root / "LIVE").read_text().strip() == "v0001"
    assert registry.rollback("base") is None and registry.live() is None
    assert (registry.root / "LIVE").read_text().strip() == ""
    events = registry.history()
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        (None, "v0002", "promoted"), ("v0002", "v0001", "rollback"), ("v0001", None, "rollback")]

    reopened = AdapterRegistry.for_repo(tmp_path)
    assert reopened.problems == [] and [v.version for v in reopened.list()] == [
        "v0001", "v0002", "v0003", "v0004"]
    assert tmp_entries(registry.root) == []


def test_publish_refuses_a_model_without_default_adapter(tmp_path):
    with pytest.raises(AdapterError, match="adapter named 'default'"):
        AdapterRegistry(tmp_path).publish(tiny_base(), parent=None, examples=[], **PUBLISH)


def test_commit_is_git_head(tmp_path, adapter_dir):
    import git

    repo = git.Repo.init(tmp_path)
    (tmp_path / "a.txt").write_text("a\n")
    repo.index.add(["a.txt"])
    head = repo.index.commit("first", author=git.Actor("t", "t@t"), committer=git.Actor("t", "t@t"))
    registry = AdapterRegistry.for_repo(tmp_path)
    assert publish(registry, adapter_dir).commit == head.hexsha


def test_published_version_loads_in_stock_peft_with_identical_logits(tmp_path):
    model = tiny_peft()
    version = AdapterRegistry(tmp_path).publish(model, parent=None, examples=[], **PUBLISH)
    loaded = PeftModel.from_pretrained(tiny_base(), str(version.path)).eval()
    tokens = torch.randint(0, CONFIG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = model(tokens).logits, loaded(tokens).logits
        plain = tiny_base()(tokens).logits
    assert torch.equal(got, expected)
    assert not torch.allclose(plain, expected)  # the adapter really changes the output

    stored = AdapterRegistry(tmp_path).load_tensors(version.version)
    state = get_peft_model_state_dict(model)
    assert stored.keys() == state.keys()
    assert all(torch.equal(stored[k], state[k]) for k in state)


def test_teacher_tensors_and_promotion(tmp_path, adapter_dir):
    registry = AdapterRegistry(tmp_path)
    teacher = {"layer.0.lora_A": torch.arange(6.0).reshape(2, 3)}
    version = publish(registry, adapter_dir, teacher_tensors=teacher)
    assert version.has_teacher
    assert torch.equal(registry.load_teacher(version.version)["layer.0.lora_A"], teacher["layer.0.lora_A"])
    assert registry.load_teacher(publish(registry, adapter_dir).version) is None

    updated = registry.set_promotion("v1", "rejected", "worse on probes", {"probe_pass": 0.25})
    assert (updated.decision, updated.reason) == ("rejected", "worse on probes")
    assert json.loads((version.path / "meta.json").read_text())["promotion"]["scores"] == {
        "probe_pass": 0.25}
    assert registry.get("v1").corrupt is None and tmp_entries(tmp_path) == []
    with pytest.raises(AdapterError, match="promoted, rejected, pending"):
        registry.set_promotion("v1", "maybe")


# -- integrity ---------------------------------------------------------------------------


def test_corrupt_versions_are_listed_refused_and_never_live(tmp_path, adapter_dir):
    registry = AdapterRegistry(tmp_path)
    for _ in range(7):
        publish(registry, adapter_dir)
    registry.set_promotion("v6", "rejected", "gate")
    registry.set_live("v1")

    weights = "adapter_model.safetensors"
    data = (tmp_path / "v0002" / weights).read_bytes()
    (tmp_path / "v0002" / weights).write_bytes(data[:-10])                   # truncated
    (tmp_path / "v0003" / "adapter_config.json").unlink()                    # missing file
    (tmp_path / "v0004" / "meta.json").write_text("{not json")               # bad meta
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    (tmp_path / "v0005" / weights).write_bytes(bytes(flipped))                # bit rot, same size
    (tmp_path / "v0001" / weights).unlink()                                  # the live one

    cheap = {v.version: v.corrupt for v in registry.list()}
    assert "has 4598 bytes" in cheap["v0002"] or "truncated" in cheap["v0002"]
    assert cheap["v0003"] == "adapter_config.json is missing"
    assert cheap["v0004"].startswith("meta.json is unreadable")
    assert cheap["v0005"] is None and cheap["v0006"] is None and cheap["v0007"] is None
    assert "sha256" in {v.version: v.corrupt for v in registry.list(verify=True)}["v0005"]

    for bad in ("v2", "v3", "v4", "v5", "v1"):
        with pytest.raises(CorruptAdapterError, match="is corrupt"):
            registry.set_live(bad)
        with pytest.raises(CorruptAdapterError, match="adapters list"):
            registry.load_tensors(bad)
        with pytest.raises(CorruptAdapterError):
            registry.path(bad)  # what engines load from
    with pytest.raises(CorruptAdapterError):
        diff_versions(registry, "v7", "v2")

    # LIVE names corrupt v0001: newest valid version not rejected by the gate is v0007.
    reopened = AdapterRegistry(tmp_path)
    assert len(reopened.problems) == 1 and "LIVE names v0001, which is corrupt" in reopened.problems[0]
    assert reopened.live().version == "v0007" and [v.version for v in reopened.list() if v.live] == ["v0007"]
    # ...and with v0007 rejected too: v0006 rejected, v0005 fails its hash, the rest are corrupt.
    reopened.set_promotion("v7", "rejected", "gate")
    assert reopened.live() is None
    (tmp_path / "LIVE").write_text("v0099\n")
    assert "does not exist" in AdapterRegistry(tmp_path).problems[0]
    (tmp_path / "LIVE").write_text("garbage\n")
    assert "not a version name" in AdapterRegistry(tmp_path).problems[0]


def test_open_removes_leftovers_but_not_a_publish_in_progress(tmp_path, adapter_dir):
    registry = AdapterRegistry(tmp_path)
    publish(registry, adapter_dir)
    (tmp_path / ".tmp-stale").mkdir()
    (tmp_path / ".tmp-stale" / "adapter_model.safetensors").write_bytes(b"partial")
    (tmp_path / ".tmp-LIVE-x").write_text("v0001")
    (tmp_path / "v0001" / ".tmp-meta.json-y").write_text("{")
    busy = tmp_path / ".tmp-busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a running publisher holds
    try:
        AdapterRegistry(tmp_path)
        assert tmp_entries(tmp_path) == [busy]
    finally:
        os.close(fd)
    AdapterRegistry(tmp_path)
    assert tmp_entries(tmp_path) == []


# -- diff --------------------------------------------------------------------------------


def test_diff_hand_computed(tmp_path):
    """ΔW_a = 2·[[1],[0]]·[[1,2]] = [[2,4],[0,0]], ΔW_b = 2·[[0],[3]]·[[1,0]] = [[0,0],[6,0]]."""
    config = {"peft_type": "LORA", "r": 1, "lora_alpha": 2, "target_modules": ["lin"]}
    key = "base_model.model.lin.lora_{}.weight"
    sides = {"a": ([[1.0, 2.0]], [[1.0], [0.0]]), "b": ([[1.0, 0.0]], [[0.0], [3.0]])}
    registry = AdapterRegistry(tmp_path / "reg")
    for side, (a, b) in sides.items():
        src = tmp_path / side
        src.mkdir()
        (src / "adapter_config.json").write_text(json.dumps(config))
        save_file({key.format("A"): torch.tensor(a), key.format("B"): torch.tensor(b)},
                  str(src / "adapter_model.safetensors"))
        publish(registry, src)

    diff = diff_versions(registry, "v1", "v2")
    (module,) = diff.modules
    assert diff.module_norms == {"base_model.model.lin": module.change}
    assert module.change == pytest.approx(math.sqrt(4 + 16 + 36))  # [[-2,-4],[6,0]]
    assert (module.norm_a, module.norm_b) == (pytest.approx(math.sqrt(20)), pytest.approx(6.0))
    assert {t.tensor: t.change for t in diff.tensors} == {
        key.format("A"): pytest.approx(2.0), key.format("B"): pytest.approx(math.sqrt(10))}
    assert diff_versions(registry, "base", "v2").modules[0].change == pytest.approx(6.0)
    assert diff.to_json()["total_change"] == pytest.approx(math.sqrt(56))

    assert lora_scaling({"lora_alpha": 8, "use_rslora": True}, "m", rank=4) == 4.0
    assert lora_scaling({"lora_alpha": 8, "alpha_pattern": {"q_proj": 16}},
                        "base_model.model.layers.0.q_proj", rank=4) == 4.0


def test_weight_change_norm_matches_the_formed_product():
    """Float64 reference: form B·A and take the norm, on random and on near-equal factors."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)

    for out, k, inner in ((40, 3, 50), (40, 8, 7), (5, 6, 9), (300, 16, 200)):
        left, right = rand(out, k), rand(k, inner)
        assert product_norm(left, right) == pytest.approx(float((left @ right).norm()), rel=1e-12)
    b, a = rand(300, 8), rand(8, 200)
    for size in (1.0, 1e-3, 1e-9):  # one SDPO step at a small lr changes ΔW very little
        b2, a2 = b + rand(300, 8, scale=size), a + rand(8, 200, scale=size)
        exact = float((b2 @ a2 - b @ a).norm())
        assert weight_change_norm((b, a), (b2, a2)) == pytest.approx(exact, rel=1e-6)
    # Different ranks, and factors whose products cancel (the QR path).
    b4, a4 = rand(300, 4), rand(4, 200)
    assert weight_change_norm((b, a), (b4, a4)) == pytest.approx(float((b4 @ a4 - b @ a).norm()), rel=1e-9)
    step = rand(300, 8, scale=1e-9)
    exact = float((step @ a).norm())
    assert product_norm(torch.cat([b + step, -b], 1), torch.cat([a, a], 0)) == pytest.approx(exact, rel=1e-5)
    assert weight_change_norm((b, a), (b.clone(), a.clone())) == 0.0


def test_diff_matches_peft_delta_weight(tmp_path):
    registry = AdapterRegistry(tmp_path)
    model_a, model_b = tiny_peft(lora_seed=1), tiny_peft(lora_seed=2)
    registry.publish(model_a, parent=None, examples=[1], **PUBLISH)
    registry.publish(model_b, parent=None, examples=[2], **PUBLISH)
    diff = diff_versions(registry, "v1", "v2")
    modules_a = dict(model_a.named_modules())
    modules_b = dict(model_b.named_modules())
    assert len(diff.modules) == 4  # q_proj, v_proj in 2 layers
    for change in diff.modules:
        wa = modules_a[change.module].get_delta_weight("default").detach().double()
        wb = modules_b[change.module].get_delta_weight("default").detach().double()
        assert change.change == pytest.approx(float((wb - wa).norm()), rel=1e-6)
        assert change.norm_a == pytest.approx(float(wa.norm()), rel=1e-6)
        assert change.norm_b == pytest.approx(float(wb.norm()), rel=1e-6)
    assert len(diff.tensors) == 8 and all(t.change > 0 for t in diff.tensors)


def test_diff_lineage_and_examples_since_common_ancestor(tmp_path, adapter_dir):
    registry = AdapterRegistry(tmp_path)
    publish(registry, adapter_dir, None, [1, 2])
    publish(registry, adapter_dir, "v1", [3])
    publish(registry, adapter_dir, "v2", [4, 3])
    publish(registry, adapter_dir, "v2", [5, 6])
    assert registry.lineage("v3") == ["v0003", "v0002", "v0001"]
    assert registry.lineage("base") == []
    diff = diff_versions(registry, "v3", "v4")
    assert diff.common_ancestor == "v0002"
    assert (diff.only_a, diff.only_b) == ([4, 3], [5, 6])
    from_base = diff_versions(registry, "base", "v3")
    assert from_base.common_ancestor is None and from_base.only_b == [1, 2, 3, 4]
    assert from_base.a == "base" and all(m.change == m.norm_b for m in from_base.modules)


# -- several processes, and kill -9 ------------------------------------------------------

CHILD = textwrap.dedent("""
    import random, sys
    from continualcode.adapters.registry import AdapterRegistry

    root, src, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    registry = AdapterRegistry(root)
    print("ready", flush=True)
    step = 0
    while count < 0 or step < count:
        live = registry.live()
        version = registry.publish_from_dir(
            src, parent=live.version if live else None, base_model="tiny-llama",
            base_checksum="x", examples=[f"{seed}-{step}"], metrics={"step": step})
        registry.set_promotion(version.version, rng.choice(["promoted", "rejected"]), "gate",
                               {"score": rng.random()})
        if rng.random() < 0.7:
            registry.set_live(version.version, "promoted")
        else:
            registry.rollback(rng.choice([v.version for v in registry.list()] + ["base"]))
        step += 1
""")


def start_child(tmp_path: Path, root: Path, src: Path, seed: int, count: int) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(Path(continualcode.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(src), str(seed), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    line = proc.stdout.readline()
    assert line == b"ready\n", proc.stderr.read().decode()
    return proc


def assert_consistent(root: Path, expected: dict[str, torch.Tensor]) -> list[str]:
    registry = AdapterRegistry(root)
    assert tmp_entries(root) == [] and registry.problems == []
    versions = registry.list(verify=True)
    names = [v.version for v in versions]
    assert names == [f"v{i:04d}" for i in range(1, len(names) + 1)]  # unique, no gaps
    for version in versions:
        assert version.corrupt is None, (version.version, version.corrupt)
        assert version.meta["version"] == version.version
        assert version.parent is None or version.parent in names
        tensors = registry.load_tensors(version.version)
        assert tensors.keys() == expected.keys()
        assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    pointer = (root / "LIVE").read_text().strip() if (root / "LIVE").exists() else ""
    assert pointer == "" or pointer in names
    live = registry.live()
    assert (live.version if live else "") == pointer
    events = registry.history()  # a torn last line is skipped, not an error
    if events:  # the event is logged before LIVE flips, so LIVE is one of its two ends
        assert pointer in (events[-1]["from"] or "", events[-1]["to"] or "")
    return names


def test_concurrent_publishers_get_unique_numbers(tmp_path, adapter_dir):
    root = tmp_path / "adapters"
    procs = [start_child(tmp_path, root, adapter_dir, seed, 6) for seed in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    names = assert_consistent(root, load_file(str(adapter_dir / "adapter_model.safetensors")))
    assert len(names) == 12
    learned = sorted(AdapterRegistry(root).get(n).examples[0] for n in names)
    assert learned == sorted(f"{seed}-{step}" for seed in (1, 2) for step in range(6))


def test_kill_9_at_random_points_leaves_a_consistent_registry(tmp_path, adapter_dir):
    root = tmp_path / "adapters"
    expected = load_file(str(adapter_dir / "adapter_model.safetensors"))
    rng = random.Random(20)
    mid_write = 0
    for kill in range(20):
        proc = start_child(tmp_path, root, adapter_dir, seed=kill, count=-1)
        time.sleep(rng.uniform(0.01, 0.4))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        proc.stdout.close()
        proc.stderr.close()
        mid_write += bool(tmp_entries(root))  # killed inside a publish or a LIVE/meta rewrite
        names = assert_consistent(root, expected)
    assert len(names) >= 20
    assert mid_write >= 1, "no kill landed inside a write; the test did not exercise recovery"
    live = AdapterRegistry(root).live() or AdapterRegistry(root).get(names[-1])
    PeftModel.from_pretrained(tiny_base(), str(live.path))  # stock PEFT still loads it
