"""ShortConv (trevo.components.short_conv): a depthwise causal convolution that equals the loop
y_t = Σ_j w_j x_{t−K+1+j} + b, whose state is the last K − 1 inputs, so that a sequence split into
pieces gives the outputs of one pass."""

from __future__ import annotations

import torch

from tests.helpers import short_conv_loop
from trevo.components.short_conv import ShortConv


def test_equals_the_loop_and_keeps_the_last_inputs_as_state():
    torch.manual_seed(0)
    conv = ShortConv(3, conv_size=4).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    y, state = conv(x)
    torch.testing.assert_close(y, short_conv_loop(conv, x))
    torch.testing.assert_close(state, x[:, -3:])
    assert conv.init_state(2, "cpu", torch.float64).shape == (2, 3, 3)


def test_split_state_equals_one_pass():
    torch.manual_seed(0)
    conv = ShortConv(5, conv_size=3, bias=False).double()
    x = torch.randn(2, 11, 5, dtype=torch.float64)
    full, last = conv(x)
    for cuts in ([1], [4], [2, 3, 10], list(range(1, 11))):  # pieces shorter than the kernel included
        ys, state = [], None
        for a, b in zip([0, *cuts], [*cuts, 11], strict=True):
            y, state = conv(x[:, a:b], state)
            ys.append(y)
        torch.testing.assert_close(torch.cat(ys, dim=1), full)
        torch.testing.assert_close(state, last)
