"""DeltaFormer's corrected values and outputs against a float64 loop with explicit per-token softmaxes;
every form, a split against the cache, the first token."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import TrevoError
from trevo.ops.deltaformer import deltaformer


def loop(q, k, v, beta, c):
    """u_t = v_t − β_t Σ_{j<t} softmax_j(c_t·k_j/√d) u_j; o_t = Σ_{j<=t} softmax_j(q_t·k_j/√d) u_j."""
    s = 1 / math.sqrt(q.shape[-1])
    us, os = [], []
    for t in range(q.shape[2]):
        if t == 0:
            u = v[:, :, 0]
        else:
            w = torch.softmax((k[:, :, :t] @ c[:, :, t, :, None])[..., 0] * s, dim=-1)
            u = v[:, :, t] - beta[:, :, t, None] * (w[..., None] * torch.stack(us, dim=2)).sum(2)
        us.append(u)
        w = torch.softmax((k[:, :, :t + 1] @ q[:, :, t, :, None])[..., 0] * s, dim=-1)
        os.append((w[..., None] * torch.stack(us, dim=2)).sum(2))
    return torch.stack(os, dim=2), torch.stack(us, dim=2)


def make(seed, T=13):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, T, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    return q, k, v, torch.rand(2, 2, T, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("form", ["chunk", "quadratic", "recurrent"])
@pytest.mark.parametrize("query_reads", [False, True])
def test_every_form_equals_the_loop(form, query_reads):
    q, k, v, beta = make(0)
    c = q if query_reads else k
    o, u = deltaformer(q, k, v, beta, correction_query=c if query_reads else None, form=form, chunk_size=5)
    ref_o, ref_u = loop(q, k, v, beta, c)
    torch.testing.assert_close(o, ref_o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(u, ref_u, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", ["chunk", "recurrent"])
def test_a_split_against_the_cache_equals_one_pass(form):
    q, k, v, beta = make(1)
    o, u = deltaformer(q, k, v, beta, form=form, chunk_size=3)
    o1, u1 = deltaformer(q[:, :, :5], k[:, :, :5], v[:, :, :5], beta[:, :, :5], form=form, chunk_size=3)
    o2, u2 = deltaformer(q[:, :, 5:], k[:, :, 5:], v[:, :, 5:], beta[:, :, 5:], cache_k=k[:, :, :5], cache_u=u1,
                         form=form, chunk_size=3)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.cat([u1, u2], dim=2), u, rtol=1e-10, atol=1e-10)


def test_zero_beta_is_softmax_attention_and_the_first_token_reads_its_value():
    q, k, v, beta = make(2)
    o, u = deltaformer(q, k, v, torch.zeros_like(beta))
    mask = torch.ones(13, 13, dtype=torch.bool).tril()
    ref = torch.softmax((q @ k.transpose(-1, -2) / 2).masked_fill(~mask, -math.inf), dim=-1) @ v
    torch.testing.assert_close(o, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(u, v)
    o, _ = deltaformer(q, k, v, beta)
    torch.testing.assert_close(o[:, :, 0], v[:, :, 0])


def test_bad_shapes_are_clear_errors():
    q = torch.randn(1, 2, 5, 3)
    with pytest.raises(TrevoError, match="beta must be"):
        deltaformer(q, q, q, torch.zeros(1, 2, 4))
    with pytest.raises(TrevoError, match="correction_query"):
        deltaformer(q, q, q, torch.zeros(1, 2, 5), correction_query=q[..., :2])
