"""Based's and ReBased's feature maps realise their kernels: 1 + s/√d + s²/2d and s²/d of s = q·k."""

from __future__ import annotations

import torch

from trevo.ops.based import rebased_features, taylor_features


def test_feature_maps_realise_their_kernels():
    torch.manual_seed(0)
    q, k = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    s = (q * k).sum(-1)
    torch.testing.assert_close((taylor_features(q) * taylor_features(k)).sum(-1), 1 + s / 5 ** 0.5 + s ** 2 / 10)
    torch.testing.assert_close((rebased_features(q) * rebased_features(k)).sum(-1), s ** 2 / 5)
    assert taylor_features(q).shape[-1] == 1 + 5 + 15 and rebased_features(q).shape[-1] == 15


