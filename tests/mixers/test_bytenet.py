"""ByteNet: the block equals a loop over its dilated taps (masked in the decoder, centred in the
encoder), the dilation doubles with depth and cycles after 16, and the receptive field is exactly
(k − 1)·r + 1 positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.bytenet import ByteNetBlock
from trevo.errors import IncompatibleError
from trevo.testing import build_mixer


@pytest.mark.parametrize("causal", [True, False])
def test_bytenet_equals_a_loop_over_dilated_taps(causal):
    mixer = build_mixer("bytenet", causal, dilation=3)
    T = 14
    x = torch.randn(2, T, mixer.d_model, dtype=torch.float64)
    u = mixer._into_conv(x)
    W, b = mixer.conv.weight, mixer.conv.bias  # [out, in, k]
    k, r = mixer.conv_size, 3
    conv = torch.zeros_like(u)
    for t in range(T):
        acc = b.expand(2, -1).clone()
        for j in range(k):
            s = t - (k - 1 - j) * r if causal else t + (j - (k - 1) // 2) * r
            if 0 <= s < T:
                acc = acc + u[:, s] @ W[:, :, j].T
        conv[:, t] = acc
    expected = mixer.widen(F.relu(mixer.norms[2](conv)))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_dilation_doubles_with_depth_and_sets_the_receptive_field():
    rates = [ByteNetBlock(16, layer_idx=i).dilation for i in range(7)]
    assert rates == [1, 2, 4, 8, 16, 1, 2]
    mixer = build_mixer("bytenet", True, dilation=4)
    x = torch.randn(1, 19, mixer.d_model, dtype=torch.float64)
    t, reach = 18, (mixer.conv_size - 1) * 4
    y = mixer(x)[0, t]
    edge, beyond = x.clone(), x.clone()
    edge[0, t - reach] += torch.randn(mixer.d_model, dtype=torch.float64)
    beyond[0, t - reach - 1] += torch.randn(mixer.d_model, dtype=torch.float64)
    assert not torch.allclose(mixer(edge)[0, t], y)
    assert torch.equal(mixer(beyond)[0, t], y)


def test_an_even_centred_convolution_is_refused():
    with pytest.raises(IncompatibleError, match="odd"):
        build_mixer("bytenet", False, conv_size=4)
