"""The diagonal linear scan h_t = a_t ⊙ h_{t-1} + b_t (trevo.ops.scan): its three forms equal a float64
loop (values and gradients), stay finite for fast decays, and refuse an unknown form; the chunked
paths (time-invariant: one matrix of powers; time-varying: chunks side by side) at many lengths and
chunk sizes, and the reverse recurrence."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import TrevoError
from trevo.ops.scan import FORMS, chunked_recurrence, linear_scan


def _loop(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """An independent float64 loop over h_t = a_t h_{t-1} + b_t (a given directly, not in log space)."""
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("complex_decay", [False, True])
@pytest.mark.parametrize("time_invariant", [False, True])
def test_chunk_and_scan_forms_equal_the_sequential_recurrence(complex_decay, time_invariant):
    torch.manual_seed(0)
    B, T, N = 2, 23, 3
    shape = (1, 1, N) if time_invariant else (B, T, N)
    log_a = -torch.rand(shape, dtype=torch.float64) * 2
    if complex_decay:
        log_a = torch.complex(log_a, torch.randn(shape, dtype=torch.float64))
        b = torch.randn(B, T, N, dtype=torch.complex128)
        h0 = torch.randn(B, N, dtype=torch.complex128)
    else:
        b = torch.randn(B, T, N, dtype=torch.float64)
        h0 = torch.randn(B, N, dtype=torch.float64)
    log_a.requires_grad_(True)
    b.requires_grad_(True)
    reference = _loop(torch.exp(log_a).expand(B, T, N), b, h0)
    seq, seq_last = linear_scan(log_a, b, h0, form="recurrent")
    chunked, last = linear_scan(log_a, b, h0, form="chunk", chunk_size=5)
    doubled, doubled_last = linear_scan(log_a, b, h0, form="scan")
    torch.testing.assert_close(doubled, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(doubled_last, reference[:, -1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(seq, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, reference[:, -1])
    torch.testing.assert_close(seq_last, reference[:, -1])
    weights = torch.randn_like(reference)
    g_ref = torch.autograd.grad((reference * weights.conj()).real.sum(), (log_a, b))
    g_chunk = torch.autograd.grad((chunked * weights.conj()).real.sum(), (log_a, b))
    g_doubled = torch.autograd.grad((doubled * weights.conj()).real.sum(), (log_a, b))
    for g1, g2, g3 in zip(g_ref, g_chunk, g_doubled, strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(g1, g3, rtol=1e-9, atol=1e-11)


def test_chunked_scan_is_stable_for_fast_decays():
    # exp(cumsum) underflows to 0 over a long chunk; a division by the cumulative product would give nan.
    log_a = torch.full((1, 400, 2), -5.0, dtype=torch.float64)
    b = torch.ones(1, 400, 2, dtype=torch.float64)
    for h, _ in (linear_scan(log_a, b, form="chunk", chunk_size=400), linear_scan(log_a, b, form="scan")):
        assert torch.isfinite(h).all()
        torch.testing.assert_close(h[0, -1], torch.full((2,), 1 / (1 - math.exp(-5.0)), dtype=torch.float64))


def test_unknown_form_and_bad_chunk_size_are_clear_errors():
    log_a, b = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    assert set(FORMS) == {"recurrent", "chunk", "scan"}
    with pytest.raises(TrevoError, match="unknown form 'parallel'"):
        linear_scan(log_a, b, form="parallel")
    with pytest.raises(TrevoError, match="chunk_size must be >= 1"):
        linear_scan(log_a, b, form="chunk", chunk_size=0)


def loop(log_a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    a = torch.exp(log_a).expand(b.shape)
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


def _inputs(T, time_varying, complex_, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, T, 3, 2) if time_varying else (3, 2)
    log_a = -torch.rand(*shape, generator=g, dtype=torch.float64)
    b = torch.randn(2, T, 3, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, 2, generator=g, dtype=torch.float64)
    if complex_:
        log_a = torch.complex(log_a, torch.randn(*shape, generator=g, dtype=torch.float64))
        b = torch.complex(b, torch.randn_like(b))
        h0 = torch.complex(h0, torch.randn_like(h0))
    return log_a, b, h0


@pytest.mark.parametrize("time_varying,complex_", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("T,chunk", [(1, 4), (19, 1), (19, 4), (19, 8), (64, 4), (100, 3)])
def test_chunk_form_equals_the_loop_with_gradients(time_varying, complex_, T, chunk):
    log_a, b, h0 = (x.requires_grad_() for x in _inputs(T, time_varying, complex_))
    hs, last = linear_scan(log_a, b, h0, form="chunk", chunk_size=chunk)
    expected = loop(log_a, b, h0)
    torch.testing.assert_close(hs, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, expected[:, -1], rtol=1e-10, atol=1e-10)
    weight = torch.randn_like(hs)
    grads = torch.autograd.grad((hs * weight.conj()).real.sum(), (log_a, b, h0))
    expected_grads = torch.autograd.grad((expected * weight.conj()).real.sum(), (log_a, b, h0))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("T,chunk", [(1, 2), (19, 4), (70, 8)])
def test_reverse_chunked_recurrence_is_the_loop_backwards_in_time(T, chunk):
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, T, 5, generator=g, dtype=torch.float64)
    b = torch.randn(2, T, 5, generator=g, dtype=torch.float64)
    h = torch.randn(2, 5, generator=g, dtype=torch.float64)
    expected = loop(a.log().flip(1), b.flip(1), h).flip(1)
    torch.testing.assert_close(chunked_recurrence(a, b, h, chunk, reverse=True), expected, rtol=1e-10, atol=1e-10)
