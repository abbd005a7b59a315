"""Loading a causal LM for serving or training: the dtype rule and the transformers call."""

from __future__ import annotations

import torch

from continualcode.engines.base import EngineError
from continualcode.models import ResolvedModel


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(name: str, device: str) -> torch.dtype:
    """`auto`: bf16 on CUDA; on CPU bf16 when oneDNN reports native bf16 support, else fp32.

    Measured on this project's 2-core CPU (avx512_bf16; bench/generate.py, docs/engine.md):
    bf16 decodes 1.1-1.4x faster than fp32. It is noisier (SmolLM2's greedy text
    diverged from fp32 after 12 tokens), so tests that compare numbers use fp32.
    """
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if name in table:
        return table[name]
    if name != "auto":
        raise EngineError(f"unknown dtype {name!r}: use auto, fp32 or bf16")
    if device.startswith("cuda"):
        return torch.bfloat16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def load_causal_lm(resolved: ResolvedModel, dtype: torch.dtype | str = "auto", device: str | None = None):
    """Load (model, tokenizer) from a resolved HF directory (or hub id), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    if isinstance(dtype, str):
        dtype = pick_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype)
    model.to(device)
    model.eval()
    return model, tokenizer
