"""Linformer enforces its fixed length, is bidirectional only, and equals its formula."""

from __future__ import annotations

import pytest
import torch

from trevo.config import RunConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import create
from trevo.train import build


def test_linformer_refuses_inputs_longer_than_max_len():
    mixer = create("mixer", "linformer", d_model=8, causal=False, max_len=10, low_rank_dim=4)
    mixer(torch.randn(1, 10, 8))
    with pytest.raises(TrevoError, match="model.max_len=10"):
        mixer(torch.randn(1, 11, 8))
    cfg = RunConfig().override(["model.d_model=16", "model.n_layers=1", "task.seq_len=16", "model.max_len=16",
                                "model.mixer.name=linformer"])
    with pytest.raises(IncompatibleError, match="bidirectional only"):
        build(cfg)


def test_linformer_equals_its_formula():
    torch.manual_seed(0)
    mixer = create("mixer", "linformer", d_model=8, causal=False, max_len=12, low_rank_dim=3, n_heads=2).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    q, k, v = (x @ w.T for w in mixer.qkv.weight.chunk(3))
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        ek, fv = mixer.E[:, :9] @ k[..., sl], mixer.F[:, :9] @ v[..., sl]
        heads.append(torch.softmax(q[..., sl] @ ek.transpose(-1, -2) / 2.0, dim=-1) @ fv)
    torch.testing.assert_close(mixer(x), torch.cat(heads, -1) @ mixer.out_proj.weight.T)
