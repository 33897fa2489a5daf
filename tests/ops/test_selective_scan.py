"""The selective scan (trevo.ops.selective_scan): its chunk and scan forms equal the recurrent form,
which equals Algorithm 2 written out with scalar arithmetic (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.ops.selective_scan import selective_scan


def _scan_inputs(B=2, T=21, D=3, N=4):
    torch.manual_seed(0)
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    dt = F.softplus(torch.randn(B, T, D, dtype=torch.float64)).requires_grad_(True)
    A = (-torch.rand(D, N, dtype=torch.float64) * 3).requires_grad_(True)
    Bm = torch.randn(B, T, N, dtype=torch.float64, requires_grad=True)
    C = torch.randn(B, T, N, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, D, N, dtype=torch.float64)
    return x, dt, A, Bm, C, h0


def _reference(x, dt, A, Bm, C, h0):
    """Algorithm 2 written out per channel and state entry, with scalar arithmetic."""
    Bsz, T, D = x.shape
    N = A.shape[1]
    y = torch.zeros(Bsz, T, D, dtype=x.dtype)
    for b in range(Bsz):
        for d in range(D):
            h = [h0[b, d, n] for n in range(N)]
            for t in range(T):
                acc = 0
                for n in range(N):
                    h[n] = torch.exp(dt[b, t, d] * A[d, n]) * h[n] + dt[b, t, d] * Bm[b, t, n] * x[b, t, d]
                    acc = acc + h[n] * C[b, t, n]
                y[b, t, d] = acc
    return y


@pytest.mark.parametrize("form", ["chunk", "scan"])
def test_parallel_selective_scans_equal_the_sequential_scan_forward_and_gradients(form):
    inputs = _scan_inputs()
    params = inputs[:5]
    y_seq, h_seq = selective_scan(*inputs, form="recurrent")
    y_chunk, h_chunk = selective_scan(*inputs, form=form, chunk_size=5)
    torch.testing.assert_close(y_seq, _reference(*(t.detach() for t in inputs)), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y_chunk, y_seq, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_chunk, h_seq, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y_seq)
    g_seq = torch.autograd.grad((y_seq * w).sum() + h_seq.sum(), params)
    g_chunk = torch.autograd.grad((y_chunk * w).sum() + h_chunk.sum(), params)
    for a, b in zip(g_seq, g_chunk, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


