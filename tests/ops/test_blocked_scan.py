"""Martin & Cundy's parallel linear recurrence (trevo.ops.blocked_scan) equals a float64 loop of
h_t = a_t h_{t−1} + b_t, values and gradients, for block sizes that do and do not divide T, real and
complex decays, and a carried initial state."""

from __future__ import annotations

import pytest
import torch

from trevo.errors import TrevoError
from trevo.ops.blocked_scan import blocked_scan


def _loop(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("complex_decay", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 23, 64])
def test_blocked_scan_equals_the_sequential_recurrence(complex_decay, chunk_size):
    torch.manual_seed(0)
    B, T, N = 2, 23, 3
    log_a = -torch.rand(B, T, N, dtype=torch.float64) * 2
    b = torch.randn(B, T, N, dtype=torch.float64)
    h0 = torch.randn(B, N, dtype=torch.float64)
    if complex_decay:
        log_a = torch.complex(log_a, torch.randn(B, T, N, dtype=torch.float64))
        b, h0 = b.to(torch.complex128), h0.to(torch.complex128)
    log_a.requires_grad_(True)
    b.requires_grad_(True)
    h, last = blocked_scan(log_a, b, h0, chunk_size=chunk_size)
    expected = _loop(torch.exp(log_a), b, h0)
    torch.testing.assert_close(h, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, expected[:, -1], rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(h)
    g1 = torch.autograd.grad((h * weights).real.sum(), (log_a, b))
    g2 = torch.autograd.grad((expected * weights).real.sum(), (log_a, b))
    for x, y in zip(g1, g2, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_a_time_invariant_decay_broadcasts_and_empty_input_keeps_the_state():
    log_a = torch.log(torch.tensor([0.5, 0.9], dtype=torch.float64))
    b = torch.ones(1, 5, 2, dtype=torch.float64)
    h, _ = blocked_scan(log_a, b, chunk_size=2)
    torch.testing.assert_close(h, _loop(torch.exp(log_a).expand(1, 5, 2), b, torch.zeros(1, 2, dtype=torch.float64)))
    h0 = torch.ones(1, 2, dtype=torch.float64)
    _, last = blocked_scan(log_a, b[:, :0], h0)
    assert torch.equal(last, h0)


def test_a_block_size_below_one_is_a_clear_error():
    with pytest.raises(TrevoError, match="chunk_size"):
        blocked_scan(torch.zeros(1), torch.zeros(1, 3, 1), chunk_size=0)
