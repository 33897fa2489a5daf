"""IGLOO: patches lie in the past; each feature is the weighted sum of its patch's slices, by a loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.igloo import patch_indices
from trevo.registry import build


def test_patches_are_drawn_from_the_past_and_reproducibly():
    idx = patch_indices(50, 7, 3, seed=1)
    assert idx.shape == (50, 7, 3)
    assert all(int(idx[t].max()) <= t for t in range(50)) and int(idx.min()) == 0
    assert torch.equal(idx, patch_indices(50, 7, 3, seed=1))
    assert len(torch.unique(idx[40])) > 5  # non-local: spread over the past


def test_features_equal_the_patch_sums():
    torch.manual_seed(0)
    m = build("mixer", "igloo", {"n_patches": 4, "patch_size": 2, "conv_size": 2}, d_model=3, causal=True,
              max_len=9).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    padded = torch.cat([torch.zeros(2, 1, 3, dtype=torch.float64), x], 1)
    w = m.conv.weight
    feat = torch.stack([F.leaky_relu(padded[:, t] @ w[:, :, 0].T + padded[:, t + 1] @ w[:, :, 1].T + m.conv.bias, 0.1)
                        for t in range(9)], 1)  # [B, T, C]: the causal convolution
    want = torch.zeros(2, 9, 4, dtype=torch.float64)
    for t in range(9):
        for p in range(4):
            want[:, t, p] = m.patch_bias[p] + sum((m.patch_weight[p, s] * feat[:, int(m.patches[t, p, s])]).sum(-1)
                                                  for s in range(2))
    torch.testing.assert_close(m(x), m.out_proj(F.leaky_relu(want, 0.1)))
