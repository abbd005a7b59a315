"""LoRA presets: lookup by model name, the shipped presets file, attaching an adapter to a real model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from continualcode.adapters.presets import PRESETS_PATH, LoraPreset, preset_for
from continualcode.learning.lora import attach_lora


def test_the_package_reads_the_checkouts_presets_file():
    """adapters/presets.toml is the documented home; the package's copy is that same file."""
    assert PRESETS_PATH.parent.name == "adapters" and PRESETS_PATH.is_file()
    assert PRESETS_PATH.samefile(Path(__file__).resolve().parents[2] / "adapters" / "presets.toml")


@pytest.mark.parametrize("name,expected", [
    ("smollm2-135m", "smollm2-135m"),
    ("/home/u/.cache/continualcode/hf/smollm2-135m/", "smollm2-135m"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
    ("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b"),
    ("Qwen/Qwen2.5-Coder-0.5B-Instruct", "qwen2.5-coder-0.5b"),
    ("meta-llama/Llama-3.2-1B", "default"),
])
def test_preset_for_matches_names_paths_and_hub_ids(name, expected):
    preset = preset_for(name)
    assert isinstance(preset, LoraPreset) and preset.name == expected
    assert preset.rank > 0 and preset.learning_rate > 0 and preset.steps_per_feedback >= 1


def test_shipped_presets_stay_within_what_serving_accepts():
    # vLLM's default --max-lora-rank is 16; every preset must load there unchanged.
    for name in ("smollm2-135m", "qwen2.5-coder-0.5b", "default"):
        preset = preset_for(name)
        assert preset.rank <= 16 and preset.dropout == 0.0
        # The learning bench (docs/learning.md) measured Qwen collapsing at 1e-3 × 4 (general 0.79 → 0.36).
        assert preset.learning_rate <= 5e-4


def test_missing_or_incomplete_presets_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="presets.toml"):
        preset_for("smollm2-135m", path=tmp_path / "presets.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[default]\nrank = 8\n")
    with pytest.raises(ValueError, match=r"\[default\] lacks alpha"):
        preset_for("anything", path=broken)
    shape = 'rank = 8\nalpha = 16\ndropout = 0.0\ntarget_modules = "all-linear"\nlearning_rate = 1e-4\nsteps_per_feedback = 2\n'
    tuned = tmp_path / "tuned.toml"
    tuned.write_text(f"[default]\n{shape}divergence_alpha = 0\nlearn_replay = true\n"
                     'divergence_support = "full"\nlearn_teacher_samples = 1\n')
    preset = preset_for("anything", path=tuned)
    assert (preset.divergence_alpha, preset.learn_replay) == (0.0, True)
    assert (preset.divergence_support, preset.learn_teacher_samples) == ("full", 1.0)
    (tmp_path / "plain.toml").write_text(f"[default]\n{shape}")  # optional: the reference's step and recipe
    plain = preset_for("x", path=tmp_path / "plain.toml")
    assert (plain.divergence_alpha, plain.learn_replay, plain.divergence_support, plain.learn_teacher_samples) == \
        (1.0, False, "student", 0.0)
    for bad, message in (("divergence_alpha = 1.5", "divergence_alpha must be a number"),
                         ('learn_replay = "yes"', "learn_replay must be true or false"),
                         ("divergence_support = 1", "divergence_support must be a string"),
                         ("learn_teacher_samples = 2", "learn_teacher_samples must be a number in")):
        (tmp_path / "bad.toml").write_text(f"[default]\n{shape}{bad}\n")
        with pytest.raises(ValueError, match=message):
            preset_for("x", path=tmp_path / "bad.toml")
    no_default = tmp_path / "nodefault.toml"
    no_default.write_text('[x]\nrank = 8\n')
    with pytest.raises(ValueError, match="no \\[default\\] preset"):
        preset_for("x", path=no_default)


@pytest.mark.parametrize("model_name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_preset_targets_exist_in_the_bundled_architectures(model_name):
    """Checked on the architecture alone (meta device, no weights), so no model download or load."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = {"smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                                   num_hidden_layers=2, num_attention_heads=9, num_key_value_heads=3),
              "qwen2.5-coder-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=2, num_attention_heads=14, num_key_value_heads=2)}
    kwargs = dict(config[model_name])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(kwargs.pop("model_type"), **kwargs))
    peft_model = attach_lora(model, preset_for(model_name))
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in peft_model.named_parameters() if "lora_A" in n}
    assert adapted == set(preset_for(model_name).target_modules)


def test_attach_lora_refuses_targets_the_model_lacks():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    preset = LoraPreset("x", 4, 8.0, 0.0, ("q_proj",), 1e-4, 1)
    with pytest.raises(ValueError, match="does not have"):
        attach_lora(net, preset)


@pytest.mark.slow
def test_attached_adapter_starts_at_the_base_model_and_only_lora_trains():
    from transformers import AutoModelForCausalLM

    from continualcode.models import resolve

    path = resolve("smollm2-135m").path
    base = AutoModelForCausalLM.from_pretrained(path)
    ids = torch.tensor([[1, 9690, 198, 2683, 359]])
    with torch.no_grad():
        expected = base(input_ids=ids).logits
    model = attach_lora(base, preset_for(path))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)


def test_the_default_models_preset_ships_the_measured_teacher_sample_recipe():
    qwen, smol = preset_for("qwen2.5-coder-0.5b"), preset_for("smollm2-135m")
    assert (qwen.divergence_alpha, qwen.divergence_support, qwen.learn_teacher_samples) == (0.0, "full", 1.0)
    assert (smol.divergence_alpha, smol.divergence_support, smol.learn_teacher_samples) == (1.0, "student", 0.0)
