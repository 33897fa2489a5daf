"""PoolFormer's pooling mixer equals AvgPool(x) − x computed by loops (1-D, 2-D, with padding, causal),
matches PyTorch's count_include_pad=False pooling, is exactly causal and generates with a constant state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.base import state_nbytes
from trevo.errors import IncompatibleError
from trevo.ops.pooling import naive_pool_mix
from trevo.registry import create


def _mixer(causal: bool, pool_size: int = 3):
    return create("mixer", "poolformer", d_model=6, causal=causal, pool_size=pool_size)


@pytest.mark.parametrize("pool_size", [1, 3, 5])
def test_bidirectional_1d_equals_the_loop_and_torch_pooling(pool_size):
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    y = _mixer(False, pool_size)(x)
    torch.testing.assert_close(y, naive_pool_mix(x, pool_size))
    ref = F.avg_pool1d(x.transpose(1, 2), pool_size, 1, pool_size // 2, count_include_pad=False).transpose(1, 2)
    torch.testing.assert_close(y, ref - x)


def test_2d_layout_equals_the_loop_and_torch_pooling():
    x = torch.randn(2, 20, 6, dtype=torch.float64)
    y = _mixer(False)(x, layout=(4, 5))
    torch.testing.assert_close(y, naive_pool_mix(x, 3, layout=(4, 5)))
    img = x.unflatten(1, (4, 5)).permute(0, 3, 1, 2)
    ref = F.avg_pool2d(img, 3, 1, 1, count_include_pad=False).permute(0, 2, 3, 1).flatten(1, 2)
    torch.testing.assert_close(y, ref - x)


@pytest.mark.parametrize("layout", [None, (3, 4)])
def test_padded_tokens_are_left_out_of_every_average(layout):
    x = torch.randn(2, 12, 6, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 8:] = False
    y = _mixer(False)(x, padding_mask=mask, layout=layout)
    torch.testing.assert_close(y[:, :8], naive_pool_mix(x, 3, layout=layout, padding_mask=mask)[:, :8])


@pytest.mark.parametrize("pool_size", [1, 2, 4])
def test_causal_equals_the_loop_and_is_exactly_causal(pool_size):
    mixer = _mixer(True, pool_size)
    x = torch.randn(2, 13, 6, dtype=torch.float64)
    y = mixer(x)
    torch.testing.assert_close(y, naive_pool_mix(x, pool_size, causal=True))
    for t in range(12):
        x2 = x.clone()
        x2[:, t + 1:] += 10 * torch.randn_like(x2[:, t + 1:])
        assert torch.equal(mixer(x2)[:, :t + 1], y[:, :t + 1])


def test_generation_state_has_constant_size():
    mixer = _mixer(True, 4)
    x = torch.randn(1, 9, 6, dtype=torch.float64)
    state = mixer.init_state(1, "cpu", torch.float64)
    sizes, ys = set(), []
    for t in range(9):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
        sizes.add(state_nbytes(state))
    assert len(sizes) == 1
    torch.testing.assert_close(torch.stack(ys, 1), mixer(x))


def test_even_window_is_refused_bidirectionally():
    with pytest.raises(IncompatibleError, match="odd"):
        _mixer(False, 4)
