"""CoLT5 conditional attention against a brute-force loop: every token gets the light branch, only the
routed queries get the heavy one, over the routed keys only (top-k bidirectionally, a threshold causally)."""

from __future__ import annotations

import math

import torch

from trevo.testing import build_mixer


def _attend(q, ks, vs):
    s = torch.stack([q @ k / math.sqrt(q.shape[-1]) for k in ks])
    a = torch.softmax(s, 0)
    return sum(a[n] * v for n, v in enumerate(vs))


def _reference(m, x, causal):
    B, T, d = x.shape
    w = m.router / m.router.norm(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    H, Dh = m.n_heads, m.head_dim
    lq, lk, lv = m.light_qkv(x).chunk(3, dim=-1)
    hq, (hk, hv) = m.heavy_q(x), m.heavy_kv(x).chunk(2, dim=-1)
    Lh, Ld = m.light_n_heads, m.light_head_dim
    n = math.ceil(m.routed_fraction * T)
    for b in range(B):
        sq, skv = x[b] @ w[0], x[b] @ w[1]
        if causal:
            rq = {i for i in range(T) if sq[i] > m.threshold}
            rkv = {j for j in range(T) if skv[j] > m.threshold}
        else:
            rq = set(sorted(range(T), key=lambda i: -sq[i].item())[:n])
            rkv = set(sorted(range(T), key=lambda j: -skv[j].item())[:n])
        for i in range(T):
            near = [j for j in range(T) if (0 <= i - j < m.window if causal else abs(i - j) < m.window)]
            light = torch.cat([_attend(lq[b, i, h * Ld:(h + 1) * Ld], [lk[b, j, h * Ld:(h + 1) * Ld] for j in near],
                                       [lv[b, j, h * Ld:(h + 1) * Ld] for j in near]) for h in range(Lh)])
            out[b, i] = m.light_out(light)
            keys = [j for j in sorted(rkv) if (j <= i or not causal)]
            if i in rq and keys:
                heavy = torch.cat([_attend(hq[b, i, h * Dh:(h + 1) * Dh], [hk[b, j, h * Dh:(h + 1) * Dh] for j in keys],
                                           [torch.sigmoid(skv[j]) * hv[b, j, h * Dh:(h + 1) * Dh] for j in keys])
                                   for h in range(H)])
                out[b, i] = out[b, i] + torch.sigmoid(sq[i]) * m.heavy_out(heavy)
    return out


def test_light_branch_for_all_and_heavy_branch_for_routed_tokens():
    for causal in (False, True):
        m = build_mixer("colt5_attention", causal, window=3, routed_fraction=0.3, light_n_heads=2)
        x = torch.randn(2, 11, 16, dtype=torch.float64)
        torch.testing.assert_close(m(x), _reference(m, x, causal), rtol=1e-10, atol=1e-12)


def test_unrouted_tokens_get_exactly_the_light_branch():
    m = build_mixer("colt5_attention", False, routed_fraction=0.25)
    x = torch.randn(1, 16, 16, dtype=torch.float64)
    routed = set(m.router_scores(x)[0, 0].topk(4).indices.tolist())
    light = m._light(x, None, None)[0]
    y = m(x)
    for i in range(16):
        assert torch.equal(y[0, i], light[0, i]) != (i in routed)


def test_causal_routing_of_a_token_does_not_depend_on_later_tokens():
    m = build_mixer("colt5_attention", True)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    before = m.router_scores(x)[:, :, :6] > m.threshold
    x[:, 6:] = torch.randn_like(x[:, 6:]) * 3
    assert torch.equal(before, m.router_scores(x)[:, :, :6] > m.threshold)
