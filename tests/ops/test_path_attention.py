"""PaTH attention (trevo.ops.path_attention): every form equals the score q_iᵀ H_i ⋯ H_{j+1} k_j written
with explicit d×d matrices, after a cache and with the forget gate, and returns the cache carried to
the last token; with β = 0 (H = I) it is causal softmax attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.ops.attention import naive_softmax_attention
from trevo.ops.path_attention import FORMS, path_attention

B, H, T, D, DV, TC = 2, 2, 11, 4, 5, 3


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return dict(q=rnd(B, H, T, D), k=rnd(B, H, T, D), v=rnd(B, H, TC + T, DV), w=F.normalize(rnd(B, H, T, D), dim=-1),
                beta=2 * torch.rand(B, H, T, generator=gen, dtype=torch.float64), k_cache=rnd(B, H, TC, D),
                forget=torch.cumsum(-torch.rand(B, H, TC + T, generator=gen, dtype=torch.float64), dim=-1))


def _explicit(q, k, v, w, beta, k_cache, forget):
    """Per query, per key: the product of the d×d matrices H_t = I − β_t w_t w_tᵀ for j < t <= i."""
    eye = torch.eye(D, dtype=torch.float64)
    out = torch.zeros(B, H, T, DV, dtype=torch.float64)
    carried = torch.zeros(B, H, TC + T, D, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            Hm = [eye - beta[b, h, t] * torch.outer(w[b, h, t], w[b, h, t]) for t in range(T)]
            keys = torch.cat([k_cache[b, h], k[b, h]])
            for i in range(T):
                scores = []
                for j in range(TC + i + 1):
                    M = eye
                    for t in range(i, max(j - TC, -1), -1):  # H_i ⋯ H_{j+1} (segment positions)
                        M = M @ Hm[t]
                    bias = 0.0 if forget is None else forget[b, h, TC + i] - forget[b, h, j]
                    scores.append(q[b, h, i] @ M @ keys[j] / D ** 0.5 + bias)
                out[b, h, i] = torch.softmax(torch.stack(scores), 0) @ v[b, h, :TC + i + 1]
            for j in range(TC + T):
                M = eye
                for t in range(T - 1, max(j - TC, -1), -1):
                    M = M @ Hm[t]
                carried[b, h, j] = M @ keys[j]
    return out, carried


@pytest.mark.parametrize("with_forget", [False, True])
@pytest.mark.parametrize("form,chunk_size", [(f, c) for f in FORMS for c in (3, 4, 16)])
def test_every_form_equals_the_explicit_householder_products(form, chunk_size, with_forget):
    x = _inputs()
    if not with_forget:
        x["forget"] = None
    expected, carried = _explicit(**x)
    out, keys = path_attention(**x, form=form, chunk_size=chunk_size)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(keys, carried, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_identity_transforms_give_causal_softmax_attention(form):
    x = _inputs(1)
    x.update(beta=torch.zeros(B, H, T, dtype=torch.float64), forget=None, k_cache=x["k_cache"][:, :, :0],
             v=x["v"][:, :, TC:])
    out, keys = path_attention(**x, form=form, chunk_size=4)
    torch.testing.assert_close(out, naive_softmax_attention(x["q"], x["k"], x["v"], causal=True))
    torch.testing.assert_close(keys, x["k"], rtol=0, atol=0)


def test_gradients_of_the_chunk_form_equal_the_recurrent_form():
    grads = []
    for form in ("chunk", "recurrent"):
        x = {n: t.clone().requires_grad_(n != "forget") if t is not None else None for n, t in _inputs(2).items()}
        out, keys = path_attention(**x, form=form, chunk_size=4)
        (out.sin().sum() + keys.cos().sum()).backward()
        grads.append([x[n].grad for n in ("q", "k", "v", "w", "beta", "k_cache")])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
