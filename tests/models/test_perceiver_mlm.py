"""perceiver_mlm: each output position decodes from the latents alone; the cross-attend is the
formula of its docstring (a float64 reference); padding never reaches real positions."""

from __future__ import annotations

import math

import torch

from trevo.config import RunConfig
from trevo.models import build_model
from trevo.models.perceiver_mlm import CrossAttentionLayer
from trevo.tasks.base import TaskInfo

INFO = TaskInfo(vocab_size=40, head="mlm", seq_len=12, causal="forbidden", layout=(12,))


def model():
    cfg = RunConfig().replace({"model.arch": "perceiver_mlm", "model.d_model": 24, "model.n_layers": 1,
                               "model.mixer": {"name": "softmax_attention", "n_heads": 2, "bias": True},
                               "model.channel": {"name": "mlp", "expand": 1.0}, "model.norm": "layernorm",
                               "model.position": "learned", "model.max_len": 12,
                               "model.options": {"n_latents": 4, "embed_dim": 16, "cross_heads": 2, "n_blocks": 2,
                                                 "decoder_heads": 2, "decoder_qk_dim": 8}}).model
    torch.manual_seed(0)
    return build_model(cfg, INFO).double().eval()


def test_outputs_do_not_depend_on_the_input_length_beyond_the_latents():
    m = model()
    tokens = torch.randint(0, 40, (2, 12))
    full = m(tokens)
    assert full.shape == (2, 12, 40)
    # a position's logits are a function of (latents, its own query): recomputing the decoder alone agrees
    z = m.encoder(m.latents.expand(2, -1, -1), m.embed(tokens) + m.position(torch.arange(12)))
    for _ in range(2):
        for block in m.blocks:
            z = block(z, None, (4,))
    y = m.decoder(m.queries[3:4].expand(2, -1, -1), z)
    assert torch.allclose(full[:, 3:4], y @ m.embed.weight.t() + m.head_bias, atol=1e-12)


def test_cross_attention_layer_is_its_formula():
    from trevo.config import ComponentSpec

    torch.manual_seed(1)
    layer = CrossAttentionLayer(6, 10, qk_dim=8, v_dim=4, n_heads=2, expand=1.0, activation="gelu",
                                query_residual=True, norm=ComponentSpec("layernorm")).double()
    q_in, kv_in = torch.randn(1, 3, 6, dtype=torch.float64), torch.randn(1, 5, 10, dtype=torch.float64)
    q, kv = layer.q_norm(q_in), layer.kv_norm(kv_in)
    Q, K, V = layer.query(q), layer.key(kv), layer.value(kv)
    heads = []
    for h in range(2):
        s = Q[..., 4 * h:4 * h + 4] @ K[..., 4 * h:4 * h + 4].transpose(1, 2) / math.sqrt(4)
        heads.append(torch.softmax(s, -1) @ V[..., 2 * h:2 * h + 2])
    z = layer.out(torch.cat(heads, -1)) + q_in
    assert torch.allclose(layer(q_in, kv_in), z + layer.mlp(layer.mlp_norm(z)), atol=1e-12)


def test_padding_does_not_reach_real_positions():
    m = model()
    tokens = torch.randint(0, 40, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 8:] = False
    other = tokens.clone()
    other[0, 8:] = (other[0, 8:] + 1) % 40
    assert torch.allclose(m(tokens, mask), m(other, mask), atol=1e-12)
