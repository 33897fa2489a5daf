"""QRNN: the layer equals a float64 loop of the paper's masked convolution and fo-pooling (eq. 1-4),
tap by tap and step by step."""

from __future__ import annotations

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.testing import build_mixer


@pytest.mark.parametrize("conv_size", [1, 2, 3])
def test_qrnn_equals_a_loop_of_masked_convolution_and_fo_pooling(conv_size):
    mixer = build_mixer("qrnn", True, conv_size=conv_size)
    d, T = mixer.d_model, 11
    x = torch.randn(2, T, d, dtype=torch.float64)
    W = mixer.conv.weight.unflatten(1, (conv_size, d))  # [3d, k, d]: tap 0 is the oldest input
    c = torch.zeros(2, d, dtype=torch.float64)
    ys = []
    for t in range(T):
        pre = mixer.conv.bias.clone().expand(2, -1)
        for tap in range(conv_size):
            s = t - (conv_size - 1) + tap
            if s >= 0:  # masked convolution: zero input before the sequence starts
                pre = pre + x[:, s] @ W[:, tap].T
        z, f, o = torch.tanh(pre[:, :d]), torch.sigmoid(pre[:, d:2 * d]), torch.sigmoid(pre[:, 2 * d:])
        c = f * c + (1 - f) * z
        ys.append(o * c)
    expected = torch.stack(ys, 1)
    for form in ("chunk", "scan", "recurrent"):
        mixer.form = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_qrnn_refuses_a_filter_of_no_taps():
    with pytest.raises(IncompatibleError, match="conv_size"):
        build_mixer("qrnn", True, conv_size=0)
