"""The Triton chunk kernels of the linear-recurrence engine (scalar and vector decay, forward and
backward) equal the torch recurrent form in float64, run through Triton's interpreter on CPU; and
linear_recurrence hands them its chunk form when they are enabled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from trevo.ops import linear_recurrence as engine  # noqa: E402
from trevo.ops import triton as triton_kernels  # noqa: E402
from trevo.ops.triton.linear_recurrence import chunk_linear_recurrence  # noqa: E402


def _inputs(T, DK, DV, vector, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(2, 2, T, DK, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 2, T, DV, generator=g, dtype=torch.float64)
    log_decay = F.logsigmoid(torch.randn(2, 2, T, DK if vector else 1, generator=g, dtype=torch.float64) + 2)
    S0 = torch.randn(2, 2, DK, DV, generator=g, dtype=torch.float64)
    return q, k, v, log_decay, S0


@pytest.mark.parametrize("vector", [False, True], ids=["scalar", "vector"])
@pytest.mark.parametrize("T,DK,DV,chunk", [(37, 16, 16, 16), (16, 20, 12, 16), (40, 16, 16, 32)])
def test_kernels_equal_the_recurrent_form_forward_and_backward(vector, T, DK, DV, chunk):
    exact = [x.requires_grad_() for x in _inputs(T, DK, DV, vector)]
    single = [x.detach().float().requires_grad_() for x in exact]
    o, S = chunk_linear_recurrence(*single, chunk)
    log_decay = exact[3] if vector else exact[3][..., 0]
    o_ref, S_ref = engine.linear_recurrence(exact[0], exact[1], exact[2], log_decay=log_decay,
                                            initial_state=exact[4], form="recurrent")
    torch.testing.assert_close(o.double(), o_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(S.double(), S_ref, rtol=1e-5, atol=1e-4)
    wo, wS = torch.randn_like(o_ref), torch.randn_like(S_ref)
    got = torch.autograd.grad((o * wo.float()).sum() + (S * wS.float()).sum(), single)
    want = torch.autograd.grad((o_ref * wo).sum() + (S_ref * wS).sum(), exact)
    for name, a, b in zip(("q", "k", "v", "log_decay", "initial_state"), got, want, strict=True):
        error = float((a.double() - b).abs().max() / b.abs().max())
        assert error < 1e-5, (name, error)


def test_linear_recurrence_dispatches_its_chunk_form_to_the_kernels(monkeypatch):
    calls = []
    real = chunk_linear_recurrence

    def counting(*args):
        calls.append(args[-1])
        return real(*args)

    import trevo.ops.triton.linear_recurrence as kernels

    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: True)
    monkeypatch.setattr(kernels, "chunk_linear_recurrence", counting)
    q, k, v, log_decay, S0 = (x.float() for x in _inputs(20, 16, 16, True))
    o, S = engine.linear_recurrence(q, k, v, log_decay=log_decay, initial_state=S0, scale=0.5, form="chunk",
                                    chunk_size=16)
    assert calls == [16]
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: False)
    o_torch, S_torch = engine.linear_recurrence(q, k, v, log_decay=log_decay, initial_state=S0, scale=0.5,
                                                form="chunk", chunk_size=16)
    torch.testing.assert_close(o, o_torch, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S, S_torch, rtol=1e-5, atol=1e-5)
    # chunk sizes the kernels cannot take, and the bonus term, stay on the torch form
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: True)
    engine.linear_recurrence(q, k, v, log_decay=log_decay, form="chunk", chunk_size=12)
    engine.linear_recurrence(q, k, v, log_decay=log_decay, bonus=torch.ones(2, 16), form="chunk", chunk_size=16)
    assert calls == [16]


def test_kernels_never_serve_cpu_tensors():
    x = torch.zeros(2)
    assert not triton_kernels.enabled(x)  # CPU tensors never dispatch (the interpreter is for tests)
