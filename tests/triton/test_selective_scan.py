"""The Triton kernels of Mamba's selective scan (forward and recomputing backward) equal the torch
recurrent form in float64, run through Triton's interpreter on CPU, with several channel blocks and
chunks; and selective_scan hands them its chunk form when they are enabled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

import trevo.ops.triton.selective_scan as kernels  # noqa: E402
from trevo.ops import selective_scan as S  # noqa: E402
from trevo.ops import triton as triton_kernels  # noqa: E402


def _inputs(T, D, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, T, D, generator=g, dtype=torch.float64)
    dt = F.softplus(torch.randn(2, T, D, generator=g, dtype=torch.float64))
    A = -torch.rand(D, N, generator=g, dtype=torch.float64) - 0.1
    B, C = (torch.randn(2, T, N, generator=g, dtype=torch.float64) for _ in range(2))
    return x, dt, A, B, C, torch.randn(2, D, N, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("T,D,N,chunk,block", [(19, 6, 4, 4, 4096), (8, 5, 3, 8, 4096), (13, 7, 4, 4, 8)])
def test_kernels_equal_the_recurrent_form_forward_and_backward(monkeypatch, T, D, N, chunk, block):
    monkeypatch.setattr(kernels, "BLOCK_ELEMENTS", block)  # 8: two channels per program, four blocks
    exact = [x.requires_grad_() for x in _inputs(T, D, N)]
    single = [x.detach().float().requires_grad_() for x in exact]
    y, last = kernels.chunk_selective_scan(*single, chunk)
    y_ref, last_ref = S.selective_scan(*exact, form="recurrent")
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last.double(), last_ref, rtol=1e-5, atol=1e-5)
    wy, wl = torch.randn_like(y_ref), torch.randn_like(last_ref)
    got = torch.autograd.grad((y * wy.float()).sum() + (last * wl.float()).sum(), single)
    want = torch.autograd.grad((y_ref * wy).sum() + (last_ref * wl).sum(), exact)
    for name, a, b in zip(("x", "dt", "A", "B", "C", "h0"), got, want, strict=True):
        error = float((a.double() - b).abs().max() / b.abs().max())
        assert error < 1e-5, (name, error)


def test_selective_scan_dispatches_its_chunk_form_to_the_kernels(monkeypatch):
    calls = []
    real = kernels.chunk_selective_scan
    monkeypatch.setattr(kernels, "chunk_selective_scan", lambda *a: calls.append(a[-1]) or real(*a))
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: True)
    inputs = [x.float() for x in _inputs(10, 4, 3)]
    y, _ = S.selective_scan(*inputs, form="chunk", chunk_size=4)
    assert calls == [4]
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: False)
    torch.testing.assert_close(y, S.selective_scan(*inputs, form="chunk", chunk_size=4)[0], rtol=1e-5, atol=1e-5)
