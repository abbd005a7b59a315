"""`continualcode adapters ...` and `continualcode train` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
import torch

from continualcode.adapters.registry import AdapterRegistry
from continualcode.cli import main


@pytest.fixture
def two_versions(git_repo, small_model, tmp_path):
    """Two real SmolLM2 LoRA versions (v0002's parent is v0001) published into the repo."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(small_model.path),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    registry = AdapterRegistry.for_repo(git_repo)
    torch.manual_seed(0)
    parent = None
    for scale in (0.05, 0.5):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, scale)
        version = registry.publish(model, parent=parent, base_model="smollm2-135m", base_checksum=small_model.checksum,
                                   examples=[], metrics={"loss": scale}, repo_root=git_repo)
        registry.set_live(version.version)
        parent = version.version
    return git_repo


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_list_show_diff_rollback_json(two_versions, capsys):
    repo = str(two_versions)
    code, out = run(capsys, "adapters", "list", "--json", "--repo", repo)
    rows = json.loads(out)
    assert code == 0 and [r["version"] for r in rows] == ["v0001", "v0002"]
    assert [r["live"] for r in rows] == [False, True] and rows[1]["parent"] == "v0001"
    code, out = run(capsys, "adapters", "show", "v2", "--json", "--repo", repo)
    assert json.loads(out)["metrics"] == {"loss": 0.5}
    code, out = run(capsys, "adapters", "diff", "v1", "v2", "--json", "--probes", "0", "--repo", repo)
    diff = json.loads(out)
    assert diff["a"] == "v0001" and diff["b"] == "v0002" and diff["modules"]
    code, out = run(capsys, "adapters", "rollback", "v1", "--json", "--repo", repo)
    assert code == 0 and json.loads(out)["live"] == "v0001"
    assert AdapterRegistry.for_repo(two_versions).live().version == "v0001"
    code, out = run(capsys, "adapters", "list", "--repo", repo)
    assert "v0001" in out and "*" in out


def test_bad_version_and_bad_usage_exit_2(two_versions, capsys):
    assert main(["adapters", "show", "v9", "--repo", str(two_versions)]) == 2
    assert "no adapter version" in capsys.readouterr().err
    assert main(["adapters", "diff", "v1", "--repo", str(two_versions)]) == 2
    assert "usage: continualcode adapters diff A B" in capsys.readouterr().err
    assert main(["adapters", "show", "banana", "--repo", str(two_versions)]) == 2


@pytest.mark.slow
def test_diff_with_probes_answers_with_both_versions(two_versions, capsys):
    code, out = run(capsys, "adapters", "diff", "base", "v2", "--probes", "1", "--json",
                    "--model", "smollm2-135m", "--dtype", "fp32", "--repo", str(two_versions))
    [probe] = json.loads(out)["probes"]
    assert probe["base"] != probe["v2"]  # the heavily perturbed adapter answers differently


def test_train_with_nothing_pending(git_repo, capsys):
    code, out = run(capsys, "train", "--json", "--repo", str(git_repo), "--model", "smollm2-135m")
    assert code == 0 and json.loads(out) == {"batches": []}
