"""The selective scan (trevo.ops.selective_scan): its chunk and scan forms equal the recurrent form,
which equals Algorithm 2 written out with scalar arithmetic (values and gradients); every form equals
an explicit float64 loop including the gradients of the final and initial states, across segments;
the chunk form keeps O(T·(D + N)) tensors for its backward pass, not the T·D·N states."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trevo.ops.selective_scan as S
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


def reference(x, dt, A, B, C, h):
    ys = []
    for t in range(x.shape[1]):
        for_t = (x[:, t], dt[:, t], B[:, t], C[:, t])
        xt, dtt, Bt, Ct = for_t
        h = torch.exp(dtt[..., None] * A) * h + (dtt * xt)[..., None] * Bt[:, None, :]
        ys.append((h * Ct[:, None, :]).sum(-1))
    return torch.stack(ys, 1), h


def _inputs(T, D=3, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, T, D, generator=g, dtype=torch.float64)
    dt = F.softplus(torch.randn(2, T, D, generator=g, dtype=torch.float64))
    A = -torch.rand(D, N, generator=g, dtype=torch.float64) - 0.1
    B = torch.randn(2, T, N, generator=g, dtype=torch.float64)
    C = torch.randn(2, T, N, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, D, N, generator=g, dtype=torch.float64)
    return [t.requires_grad_() for t in (x, dt, A, B, C, h0)]


@pytest.mark.parametrize("form", S.FORMS)
@pytest.mark.parametrize("T,chunk,segment", [(1, 4, 512), (19, 1, 512), (19, 4, 4), (19, 8, 8), (50, 3, 15)])
def test_every_form_equals_the_loop_with_gradients(monkeypatch, form, T, chunk, segment):
    inputs = _inputs(T)
    monkeypatch.setattr(S, "STATE_ELEMENTS", segment * inputs[0].shape[0] * inputs[2].numel())
    assert S.segment_steps(inputs[0].shape[0], *inputs[2].shape, chunk) == segment
    y, last = S.selective_scan(*inputs, form=form, chunk_size=chunk)
    y_ref, last_ref = reference(*inputs)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-10)
    wy, wh = torch.randn_like(y), torch.randn_like(last)
    got = torch.autograd.grad((y * wy).sum() + (last * wh).sum(), inputs)
    want = torch.autograd.grad((y_ref * wy).sum() + (last_ref * wh).sum(), inputs)
    for name, a, b in zip(("x", "dt", "A", "B", "C", "h0"), got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"{form} ∂{name}: {m}")


def test_chunk_form_saves_inputs_and_segment_states_not_every_state(monkeypatch):
    T, D, N = 64, 8, 6
    inputs = _inputs(T, D, N)
    monkeypatch.setattr(S, "STATE_ELEMENTS", 16 * 2 * D * N)  # segments of 16 steps
    y, _ = S.selective_scan(*inputs, form="chunk", chunk_size=4)
    saved = sum(t.numel() for t in y.grad_fn.saved_tensors)
    inputs_numel = sum(t.numel() for t in inputs[:5])
    assert saved == inputs_numel + (T // 16) * 2 * D * N  # x, Δ, A, B, C and one state per segment
    assert saved < 0.7 * 2 * T * D * N  # less than the states alone (2·T·D·N), let alone their decays


def test_an_unknown_form_is_a_clear_error():
    with pytest.raises(Exception, match="unknown form 'parallel'"):
        S.selective_scan(*_inputs(3), form="parallel")
