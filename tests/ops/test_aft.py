"""Causal AFT with a hand-written backward pass equals the naive quadratic form (the softmax over
keys of K + b for every query and channel), outputs and gradients; it is bitwise causal; and it keeps
O(T·D + T²) for its backward pass."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.aft import aft_causal, aft_causal_banded, aft_quadratic, banded_bias, near_band_bias


def _kv(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (3 * torch.randn(2, T, 4, generator=g, dtype=torch.float64)).requires_grad_()  # spread keys
    return k, torch.randn(2, T, 4, generator=g, dtype=torch.float64, requires_grad=True)


def _check(got, want, inputs):
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(want, inputs, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("T,chunk,groups,cached", [(1, 4, 1, 0), (19, 1, 1, 0), (19, 4, 2, 0), (40, 8, 1, 3),
                                                   (19, 8, 2, 5)])
def test_dense_bias_equals_the_quadratic_form(T, chunk, groups, cached):
    k, v = _kv(T + cached)
    bias = torch.randn(groups, T, T + cached, dtype=torch.float64, requires_grad=True)  # queries after a cache
    _check(aft_causal(k, v, bias, chunk_size=chunk), aft_quadratic(k, v, bias, causal=True), (k, v, bias))


@pytest.mark.parametrize("T,chunk,window,groups,per_position", [(1, 4, 3, 1, False), (19, 4, 4, 2, False),
                                                                (19, 8, 3, 1, True), (40, 4, 1, 1, True),
                                                                (40, 8, 8, 2, False)])
def test_banded_bias_equals_the_quadratic_form(T, chunk, window, groups, per_position):
    k, v = _kv(T, seed=1)
    band = torch.randn(groups, T if per_position else 1, window, dtype=torch.float64, requires_grad=True)
    pos = torch.arange(T)
    want = aft_quadratic(k, v, banded_bias(band, pos, pos, window, True), causal=True)
    _check(aft_causal_banded(k, v, near_band_bias(band, T, chunk, window), chunk_size=chunk), want, (k, v, band))


def test_both_forms_are_bitwise_causal():
    T = 50
    k, v = (x.detach() for x in _kv(T, seed=2))
    bias = torch.randn(1, T, T, dtype=torch.float64)
    band = torch.randn(2, 1, 4, dtype=torch.float64)
    near = near_band_bias(band, T, 8, 4)
    y, yb = aft_causal(k, v, bias, chunk_size=8), aft_causal_banded(k, v, near, chunk_size=8)
    for t in (0, 7, 8, 23, T - 2):
        k2, v2 = k.clone(), v.clone()
        k2[:, t + 1:] += 50  # a future key larger than every past one: a global stabiliser would move
        v2[:, t + 1:] = 0
        assert torch.equal(aft_causal(k2, v2, bias, chunk_size=8)[:, :t + 1], y[:, :t + 1]), t
        assert torch.equal(aft_causal_banded(k2, v2, near, chunk_size=8)[:, :t + 1], yb[:, :t + 1]), t


def test_backward_keeps_inputs_outputs_and_normalisers_only():
    T, D = 64, 4
    k, v = _kv(T)
    bias = torch.randn(1, T, T, dtype=torch.float64, requires_grad=True)
    out = aft_causal(k, v, bias, chunk_size=8)
    assert sum(t.numel() for t in out.grad_fn.saved_tensors) == 4 * 2 * T * D + T * T  # k, v, out, lse, bias
