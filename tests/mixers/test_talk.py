"""TaLK: the summed-area-table form equals a loop that averages the window element by element, with
the fractional end elements weighted by how much of them the window covers; an integer window is the
plain mean; the offsets never exceed the window."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.ops.talk import talk_prefix, talk_quadratic
from trevo.testing import build_mixer


def _window_mean_loop(xs, query, left, right):
    B, T, H = left.shape
    out = torch.zeros(B, T, H, xs.shape[-1], dtype=xs.dtype)
    for b in range(B):
        for t in range(T):
            i = int(query[t])
            for h in range(H):
                lo, hi = i - left[b, t, h].item(), i + right[b, t, h].item()
                total = sum(xs[b, j, h] for j in range(math.ceil(lo), math.floor(hi) + 1))
                total = total + (math.ceil(lo) - lo) * xs[b, math.ceil(lo) - 1, h]
                if hi < xs.shape[1] - 1:
                    total = total + (hi - math.floor(hi)) * xs[b, math.floor(hi) + 1, h]
                out[b, t, h] = total / (left[b, t, h] + right[b, t, h] + 1)
    return out


@pytest.mark.parametrize("op", [talk_prefix, talk_quadratic])
def test_talk_equals_the_element_by_element_window_mean(op):
    torch.manual_seed(0)
    xs = torch.randn(2, 20, 2, 3, dtype=torch.float64)
    query = torch.arange(5, 15)
    left = torch.rand(2, 10, 2, dtype=torch.float64) * 4
    right = torch.rand(2, 10, 2, dtype=torch.float64) * 4
    torch.testing.assert_close(op(xs, query, left, right), _window_mean_loop(xs, query, left, right),
                               rtol=1e-12, atol=1e-12)


def test_integer_offsets_give_the_plain_window_mean():
    xs = torch.arange(10, dtype=torch.float64).reshape(1, 10, 1, 1)
    left = torch.tensor([[[2.0]], [[0.0]]]).reshape(1, 2, 1).double()
    y = talk_prefix(xs, torch.tensor([5, 9]), left)
    torch.testing.assert_close(y.flatten(), torch.tensor([(3 + 4 + 5) / 3, 9.0], dtype=torch.float64))


def test_the_causal_layer_is_the_window_mean_of_its_projected_inputs():
    mixer = build_mixer("talk", True)
    with torch.no_grad():
        mixer.offset_proj.weight.zero_()
        mixer.offset_proj.bias.fill_(60.0)  # σ(60) = 1: every position reaches the whole window (5 back)
    x = torch.randn(1, 12, mixer.d_model, dtype=torch.float64)
    u = torch.nn.functional.glu(mixer.in_proj(x), dim=-1)
    padded = torch.cat([torch.zeros(1, 5, mixer.d_model, dtype=torch.float64), u], 1)
    means = torch.stack([padded[:, t:t + 6].sum(1) / 6 for t in range(12)], 1)
    torch.testing.assert_close(mixer(x), mixer.out_proj(means), rtol=1e-10, atol=1e-12)


def test_talk_refuses_an_empty_window():
    with pytest.raises(IncompatibleError, match="window"):
        build_mixer("talk", True, window=0.0)
