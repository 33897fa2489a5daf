"""Generation: greedy decoding gives the same bytes by re-running the context and by prefill + steps,
for every causal mixer; the state held is constant for RNNs and grows for attention."""

from __future__ import annotations

import pytest
import torch

from trevo.generate import generate, state_bytes_at
from trevo.models.layers import reuses_attention
from trevo.registry import get, names
from trevo.train import build

# A Skip-Attention stack needs an attention layer first: not a one-mixer model (tests/mixers/test_skip_attention.py).
CAUSAL = [n for n in names("mixer") if get("mixer", n).causal and not reuses_attention(n)]


@pytest.mark.parametrize("mixer", CAUSAL)
def test_greedy_generation_is_the_same_in_both_modes(tiny_cfg, mixer):
    _, model = build(tiny_cfg(f"model.mixer.name={mixer}", "train.dtype=float64",
                              "model.position.name=sinusoidal"))
    torch.nn.init.normal_(model.embed.weight, std=1.0)  # sharper logits than at init: fewer near-ties
    a, _ = generate(model, b"def f(x):", 12, mode="parallel")
    b, state = generate(model, b"def f(x):", 12, mode="recurrent")
    assert a == b and len(a) == 12 and state > 0


def test_recurrent_state_is_constant_for_rnns_and_grows_for_attention(tiny_cfg):
    sizes = {}
    for mixer in ("softmax_attention", "linear_attention", "rwkv4"):
        _, model = build(tiny_cfg(f"model.mixer.name={mixer}"))
        sizes[mixer] = (state_bytes_at(model, 64), state_bytes_at(model, 512))
    assert sizes["rwkv4"][0] == sizes["rwkv4"][1]
    assert sizes["linear_attention"][0] == sizes["linear_attention"][1]
    assert sizes["softmax_attention"][1] == 8 * sizes["softmax_attention"][0]
