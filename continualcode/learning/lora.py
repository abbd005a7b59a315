"""Attaching a trainable LoRA adapter to a model, and reading its parameters.

The adapter's shape per base model is a preset (``continualcode.adapters.presets``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Mapping

from continualcode.adapters.presets import PRESETS_PATH, LoraPreset

if TYPE_CHECKING:
    import torch


def attach_lora(model, preset: LoraPreset, adapter_name: str = "default"):
    """Wrap ``model`` in a ``peft.PeftModel`` whose only trainable parameters are the new LoRA.

    PEFT initializes B = 0, so the adapted model starts exactly at the base model.
    """
    from peft import LoraConfig, get_peft_model

    targets = preset.target_modules
    if not isinstance(targets, str):
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        absent = [t for t in targets if t not in names]
        if absent:
            raise ValueError(
                f"LoRA preset {preset.name!r} targets {absent}, which this model "
                f"({type(model).__name__}) does not have; add a preset for it in {PRESETS_PATH} "
                'or use target_modules = "all-linear".'
            )
        targets = list(targets)
    config = LoraConfig(r=preset.rank, lora_alpha=preset.alpha, lora_dropout=preset.dropout,
                        target_modules=targets, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config, adapter_name=adapter_name)


def lora_parameters(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.nn.Parameter]:
    """The adapter's LoRA parameters, keyed as PEFT's saved state dict keys them.

    Keys drop the adapter name (``...q_proj.lora_A.weight``), the layout of
    ``adapter_model.safetensors``, so saved EMA tensors are themselves a valid
    PEFT adapter.
    """
    marker = f".{adapter_name}."
    found = {}
    for name, param in model.named_parameters():
        if "lora_" in name and marker in name:
            found[name.replace(f".{adapter_name}", "", 1)] = param
    if not found:
        raise ValueError(
            f"no LoRA parameters for adapter {adapter_name!r} in this model; "
            "attach one first with continualcode.learning.lora.attach_lora(model, preset_for(name))."
        )
    return found


def lora_state(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """A detached copy of the adapter's LoRA tensors (what `swapped` and `load_lora_state` take back)."""
    return {k: p.detach().clone() for k, p in lora_parameters(model, adapter_name).items()}


def load_lora_state(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], adapter_name: str = "default") -> None:
    """Copy `tensors` (keyed as `lora_parameters` keys them; every key) into the adapter in place."""
    import torch

    params = lora_parameters(model, adapter_name)
    if set(tensors) != set(params):
        missing, extra = sorted(set(params) - set(tensors))[:3], sorted(set(tensors) - set(params))[:3]
        raise ValueError(f"LoRA tensors do not fit this adapter (missing {missing}, unexpected {extra}); "
                         "they were saved for another rank, target set or model")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(tensors[key])


@contextmanager
def swapped(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], adapter_name: str = "default") -> Iterator[None]:
    """Run the model with other LoRA tensors in place of its own, restoring its own afterwards.

    Used for the EMA teacher's forward and for scoring another adapter version
    (the promotion gate) on the same loaded base model. Not for use while
    autograd holds tensors of the adapter: the copy would invalidate them.
    """
    saved = lora_state(model, adapter_name)
    load_lora_state(model, tensors, adapter_name)
    try:
        yield
    finally:
        load_lora_state(model, saved, adapter_name)
