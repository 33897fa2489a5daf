"""Mamba's selective scan and block: defining properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.mamba import Mamba
from trevo.ops.selective_scan import selective_scan_chunked, selective_scan_parallel, selective_scan_sequential


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


@pytest.mark.parametrize("parallel_form", ["chunk", "scan"])
def test_parallel_selective_scans_equal_the_sequential_scan_forward_and_gradients(parallel_form):
    inputs = _scan_inputs()
    params = inputs[:5]
    y_seq, h_seq = selective_scan_sequential(*inputs)
    if parallel_form == "chunk":
        y_chunk, h_chunk = selective_scan_chunked(*inputs, chunk_size=5)
    else:
        y_chunk, h_chunk = selective_scan_parallel(*inputs)
    torch.testing.assert_close(y_seq, _reference(*(t.detach() for t in inputs)), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y_chunk, y_seq, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_chunk, h_seq, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y_seq)
    g_seq = torch.autograd.grad((y_seq * w).sum() + h_seq.sum(), params)
    g_chunk = torch.autograd.grad((y_chunk * w).sum() + h_chunk.sum(), params)
    for a, b in zip(g_seq, g_chunk, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_step_by_step_decode_equals_the_full_forward():
    torch.manual_seed(0)
    mixer = Mamba(8, causal=True, d_state=4, chunk_size=4).double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    full = mixer(x)
    state, ys = mixer.init_state(2, "cpu", torch.float64), []
    for t in range(11):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), full, rtol=1e-10, atol=1e-12)
    # The conv state is the last d_conv − 1 (pre-convolution) inputs.
    inner = mixer.in_proj(x)[..., :mixer.d_inner]
    torch.testing.assert_close(state["conv"], inner[:, -3:].transpose(1, 2))


def test_mamba_initialisation():
    mixer = Mamba(16, causal=True, d_state=6, dt_min=0.002, dt_max=0.05)
    A = -torch.exp(mixer.A_log.detach())
    torch.testing.assert_close(A, -torch.arange(1, 7, dtype=torch.float32).repeat(32, 1))  # S4D-Real
    dt = F.softplus(mixer.dt_bias.detach())
    assert dt.min() >= 0.002 * (1 - 1e-4) and dt.max() <= 0.05 * (1 + 1e-4)
    assert torch.equal(mixer.D.detach(), torch.ones(32))
