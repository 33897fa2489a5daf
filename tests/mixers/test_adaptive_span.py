"""Adaptive attention span: the soft-masked attention against a float64 loop of eq. 2-3, keys past the
span have no effect, and the span penalty reaches the training loss."""

from __future__ import annotations

import math

import torch

from trevo.components.multihead import split_heads
from trevo.config import RunConfig
from trevo.testing import build_mixer
from trevo.train import auxiliary_loss
from trevo.train import build as build_run


def test_soft_masked_attention_matches_a_loop_of_eq_2_and_3():
    m = build_mixer("adaptive_span", True, window=6, ramp=2.0)
    with torch.no_grad():
        m.span_logit.copy_(torch.tensor([-1.0, 0.0, 0.7, 3.0], dtype=torch.float64))
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    z = 6 * torch.sigmoid(m.span_logit)
    out = torch.zeros_like(v)
    for b in range(2):
        for h in range(4):
            for t in range(13):
                rs = [r for r in range(13) if 0 <= t - r < 6]
                mask = torch.stack([((2.0 + z[h] - (t - r)) / 2.0).clamp(0, 1) for r in rs])
                e = mask * torch.exp(torch.stack([q[b, h, t] @ k[b, h, r] / math.sqrt(4) for r in rs]))
                out[b, h, t] = sum(e[n] / e.sum() * v[b, h, r] for n, r in enumerate(rs))
    torch.testing.assert_close(m(x), m.out_proj(out.transpose(1, 2).flatten(2)), rtol=1e-10, atol=1e-12)


def test_keys_beyond_span_plus_ramp_do_not_matter():
    m = build_mixer("adaptive_span", True, window=10, ramp=2.0)
    with torch.no_grad():
        m.span_logit.fill_(math.log(0.2 / 0.8))  # z = 2 tokens: weights vanish from distance z + R = 4 on
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, :7] = torch.randn_like(x2[:, :7])  # the last query (t = 11) is at distance >= 5 from these
    torch.testing.assert_close(m(x)[:, -1], m(x2)[:, -1], rtol=0, atol=1e-14)
    assert not torch.allclose(m(x)[:, 8], m(x2)[:, 8])  # a query nearer to them does see them


def test_span_penalty_is_lambda_times_mean_span_and_the_trainer_adds_it():
    cfg = RunConfig().replace({"model.mixer": {"name": "adaptive_span", "window": 8, "span_penalty": 0.5},
                               "model.d_model": 16, "model.n_layers": 2, "task.seq_len": 16})
    _, model = build_run(cfg)
    mixers = [mod for mod in model.modules() if hasattr(mod, "spans")]
    assert len(mixers) == 2
    expect = sum(0.5 * mod.spans().mean() for mod in mixers)
    torch.testing.assert_close(auxiliary_loss(model), expect)
    auxiliary_loss(model).backward()
    for mod in mixers:  # the penalty pushes every span down
        assert (mod.span_logit.grad > 0).all()
