"""FourierFormer against the product-of-sinc estimator written out pair by pair and dimension by dimension."""

from __future__ import annotations

import math

import torch

from trevo.components.multihead import split_heads
from trevo.testing import build_mixer


def test_weights_are_the_generalised_fourier_integral_estimator():
    for causal in (True, False):
        m = build_mixer("fourierformer", causal, power=2)
        with torch.no_grad():
            m.log_radius.copy_(torch.tensor([0.0, 0.5, -0.3, 1.0], dtype=torch.float64))
        x = torch.randn(1, 7, 16, dtype=torch.float64)
        q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
        out = torch.zeros_like(v)
        for h in range(4):
            R = math.exp(m.log_radius[h].item())
            for i in range(7):
                keys = [j for j in range(7) if j <= i or not causal]
                w = torch.tensor([math.prod((math.sin(R * d) / d) ** 2 for d in (q[0, h, i] - k[0, h, j]).tolist())
                                  for j in keys], dtype=torch.float64)
                out[0, h, i] = sum(w[n] * v[0, h, j] for n, j in enumerate(keys)) / w.sum()
        torch.testing.assert_close(m(x), m.out_proj(out.transpose(1, 2).flatten(2)), rtol=1e-9, atol=1e-11)
