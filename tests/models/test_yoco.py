"""YOCO: the decoder-decoder equals its equations (self-decoder blocks, one K̂, V̂ from LN(X), every
cross-decoder layer attending causally to that one cache, written as a per-query loop), generation
through prefill and steps equals the forward pass, the state holds one KV cache for all cross-decoder
layers (so it grows per token by one layer's KV, not n_layers'), and bad combinations are clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import prefill_then_step
from trevo.errors import IncompatibleError
from trevo.generate import state_bytes_at
from trevo.train import build

YOCO = ("model.arch=yoco", "model.n_layers=4", "model.d_model=16")
SWA = (*YOCO, "model.mixer.name=sliding_window_attention", "model.mixer.window=4")


def _model(tiny_cfg, *more, base=SWA):
    _, model = build(tiny_cfg(*base, *more))
    return model.double().eval()


def test_equals_self_decoder_then_cross_attention_to_one_shared_cache(tiny_cfg):
    m = _model(tiny_cfg)
    tokens = torch.randint(0, 256, (2, 9))
    x = m.embed(tokens)
    for block in m.self_decoder:
        x = x + block.mixer(block.norm1(x))
        x = x + block.channel(block.norm2(x))
    kv = m.kv_proj(m.kv_norm(x)).view(2, 9, 2, 4, 4)  # [B, T, (k, v), heads, head_dim]
    y = x
    for block in m.cross_decoder:
        q = block.q_proj(block.norm1(y)).view(2, 9, 4, 4)
        o = torch.zeros_like(q)
        for b in range(2):
            for h in range(4):
                for i in range(9):
                    scores = torch.stack([q[b, i, h] @ kv[b, j, 0, h] for j in range(i + 1)])
                    w = torch.softmax(scores / math.sqrt(4), 0)
                    o[b, i, h] = w @ kv[b, :i + 1, 1, h]
        y = y + block.out_proj(o.flatten(2))
        y = y + block.channel(block.norm2(y))
    torch.testing.assert_close(m(tokens), m.head(m.norm(y)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("base", [SWA, (*YOCO, "model.mixer.name=softmax_attention", "model.position.name=rope",
                                          "model.options.n_kv_heads=2", "model.options.self_layers=1",
                                          "model.options.chunk_size=3")])
def test_prefill_and_steps_equal_the_forward_pass(tiny_cfg, base):
    m = _model(tiny_cfg, base=base)
    tokens = torch.randint(0, 256, (2, 11))
    full = m(tokens)
    torch.testing.assert_close(prefill_then_step(m, tokens, 4), full, rtol=1e-9, atol=1e-10)
    first, state = m.prefill(tokens[:, :6])
    second, _ = m.prefill(tokens[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, rtol=1e-9, atol=1e-10)


def test_never_sees_the_future(tiny_cfg):
    m = _model(tiny_cfg)
    tokens = torch.randint(0, 256, (1, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 256
    torch.testing.assert_close(m(tokens)[:, :6], m(changed)[:, :6], rtol=0, atol=0)


def test_one_shared_cache_for_every_cross_decoder_layer(tiny_cfg):
    m = _model(tiny_cfg, "model.n_layers=6", "model.options.self_layers=2")
    _, state = m.prefill(torch.zeros(1, 20, dtype=torch.long))
    assert state["layers"]["shared_kv"]["k"].shape == (1, 4, 20, 4) and len(m.cross_decoder) == 4
    per_token = state_bytes_at(m.float(), 64) - state_bytes_at(m, 32)
    assert per_token == 32 * 2 * 16 * 4  # one layer's K and V (d_model 16, float32): the windows are full
    _, attention = build(tiny_cfg("model.n_layers=6", "model.d_model=16"))
    assert state_bytes_at(attention, 64) - state_bytes_at(attention, 32) == 6 * per_token


def test_bad_combinations_are_clear_errors(tiny_cfg):
    with pytest.raises(IncompatibleError, match="self_layers"):
        build(tiny_cfg(*SWA, "model.options.self_layers=4"))
    with pytest.raises(IncompatibleError, match="takes no option 'latents'"):
        build(tiny_cfg(*SWA, "model.options.latents=3"))
    with pytest.raises(IncompatibleError, match="needs a causal mixer"):
        build(tiny_cfg(*SWA, "model.mixer.name=fnet"))
    with pytest.raises(IncompatibleError, match="rope only"):
        build(tiny_cfg(*SWA, "model.position.name=alibi"))
    with pytest.raises(IncompatibleError, match="model.residual='postnorm' is not supported"):
        build(tiny_cfg(*SWA, "model.residual.name=postnorm"))
