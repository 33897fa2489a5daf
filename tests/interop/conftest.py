"""Tiny random Hugging Face models, made in the test session itself (never downloaded), one per
model_type that trevo imports, saved with ``save_pretrained`` (safetensors)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
VOCAB = 64


def hf_config(model_type: str):
    import transformers as T

    common = {"vocab_size": VOCAB, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if model_type == "rwkv":
        return T.RwkvConfig(hidden_size=32, num_hidden_layers=2, context_length=64, intermediate_size=72, **common)
    if model_type == "rwkv_rescaled":  # three blocks, halved after each: the inference rescaling is exercised
        return T.RwkvConfig(hidden_size=32, num_hidden_layers=3, context_length=64, rescale_every=1, **common)
    if model_type == "mamba":
        return T.MambaConfig(hidden_size=32, num_hidden_layers=2, state_size=8, expand=2, **common)
    if model_type == "mamba2":
        return T.Mamba2Config(hidden_size=32, num_hidden_layers=2, state_size=8, num_heads=8, head_dim=8, n_groups=1,
                              chunk_size=8, tie_word_embeddings=False, **common)
    if model_type == "llama":
        return T.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=64,
                             rope_parameters={"rope_type": "default", "rope_theta": 500.0}, **common)
    if model_type == "gpt2":
        return T.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **common)
    if model_type == "perceiver":  # the masked LM: two shared repeats of two latent blocks
        return T.PerceiverConfig(vocab_size=VOCAB, d_model=32, d_latents=48, num_latents=8, num_blocks=2,
                                 num_self_attends_per_block=2, num_self_attention_heads=4, num_cross_attention_heads=2,
                                 max_position_embeddings=24)
    raise ValueError(model_type)


def make_hf_model(model_type: str, path, seed: int = 0):
    """A random model of ``model_type`` saved in ``path``; every parameter is perturbed off its
    initial value (norm weights off 1, biases off 0), so that a mis-mapped tensor shows in the logits."""
    import transformers as T

    torch.manual_seed(seed)
    auto = T.AutoModelForMaskedLM if model_type == "perceiver" else T.AutoModelForCausalLM
    model = auto.from_config(hf_config(model_type)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory):
    """``hf_model(model_type)`` → (the HF model, its saved folder), made once per session."""
    pytest.importorskip("transformers", reason="the Hugging Face tests need the optional extra: "
                                               "pip install 'trevo[hf]'")
    made = {}

    def get(model_type: str):
        if model_type not in made:
            path = tmp_path_factory.mktemp(f"hf_{model_type}")
            made[model_type] = (make_hf_model(model_type, path), path)
        return made[model_type]

    return get
