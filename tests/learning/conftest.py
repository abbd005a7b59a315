"""A tiny randomly initialised Llama with SmolLM2's real tokenizer: fast tests of what data reaches the
SDPO step (the recipe's levers, the trainer's wiring). Its answers are noise; what it shows is plumbing."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_tokenizer(small_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(small_model.path)


@pytest.fixture
def tiny_learner(tiny_tokenizer):
    """A `Learner` on a 2-layer, 64-wide Llama (SmolLM2's vocabulary and chat template), LoRA attached."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from continualcode.adapters.presets import preset_for
    from continualcode.learning.learner import Learner
    from continualcode.learning.lora import attach_lora
    from continualcode.learning.types import SDPOConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config)
    preset = preset_for("smollm2-135m")
    model = attach_lora(model, preset)
    with torch.no_grad():  # a nonzero adapter, so student, EMA teacher and snapshot can differ visibly
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    return Learner(model, tiny_tokenizer, config=SDPOConfig(learning_rate=1e-3), model_name="tiny-llama")
