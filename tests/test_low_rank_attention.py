"""Linformer enforces its fixed length and equals its formula; Nyström's approximation error falls as
landmarks grow and is exact when there are as many landmarks as positions."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.config import RunConfig
from trevo.ops.attention import naive_softmax_attention
from trevo.ops.nystromformer import iterative_pinv, nystrom_attention
from trevo.registry import IncompatibleError, TrevoError, create
from trevo.train import build


def test_linformer_refuses_inputs_longer_than_max_len():
    mixer = create("mixer", "linformer", d_model=8, causal=False, max_len=10, proj_len=4)
    mixer(torch.randn(1, 10, 8))
    with pytest.raises(TrevoError, match="model.max_len=10"):
        mixer(torch.randn(1, 11, 8))
    cfg = RunConfig().override(["model.d_model=16", "model.n_layers=1", "task.seq_len=16", "model.max_len=16",
                                "model.mixer.name=linformer"])
    with pytest.raises(IncompatibleError, match="bidirectional only"):
        build(cfg)


def test_linformer_equals_its_formula():
    torch.manual_seed(0)
    mixer = create("mixer", "linformer", d_model=8, causal=False, max_len=12, proj_len=3, n_heads=2).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    q, k, v = (x @ w.T for w in mixer.qkv.weight.chunk(3))
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        ek, fv = mixer.E[:, :9] @ k[..., sl], mixer.F[:, :9] @ v[..., sl]
        heads.append(torch.softmax(q[..., sl] @ ek.transpose(-1, -2) / 2.0, dim=-1) @ fv)
    torch.testing.assert_close(mixer(x), torch.cat(heads, -1) @ mixer.out_proj.weight.T)


def test_nystrom_is_exact_with_as_many_landmarks_as_positions():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 12, 4, dtype=torch.float64) for _ in range(3))
    exact = naive_softmax_attention(q, k, v, causal=False)
    torch.testing.assert_close(nystrom_attention(q, k, v, 12, pinv="exact"), exact)


def test_nystrom_error_falls_as_landmarks_grow():
    torch.manual_seed(0)
    t = 32
    # Smooth sequences (as tokens of natural data are correlated), so that segment means summarise well.
    base = torch.cumsum(torch.randn(3, 1, t, 8, dtype=torch.float64), dim=2) / math.sqrt(t)
    q, k, v = base, base + 0.1 * torch.randn_like(base), torch.randn(3, 1, t, 8, dtype=torch.float64)
    exact = naive_softmax_attention(q, k, v, causal=False)
    errors = [float((nystrom_attention(q, k, v, m, pinv="exact") - exact).square().mean()) for m in (2, 4, 8, 16, 32)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-20


def test_iterative_pinv_approaches_the_pseudo_inverse():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(3, 6, 6, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(iterative_pinv(a, 30), torch.linalg.pinv(a), rtol=1e-6, atol=1e-6)
    err6 = (iterative_pinv(a, 6) @ a - torch.eye(6)).abs().amax()
    err2 = (iterative_pinv(a, 2) @ a - torch.eye(6)).abs().amax()
    assert err6 < err2
