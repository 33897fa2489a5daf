"""Mixture of Memories: routing picks each token's top-k memories with renormalised weights, and the mixer
equals a float64 loop in which only the routed memories are updated (by the gated delta rule) and read."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.mom import MixtureOfMemories, route


def test_route_keeps_the_top_k_with_renormalised_weights():
    logits = torch.tensor([[[0.0, 2.0, 1.0, -1.0]]])
    mask, w = route(logits, 2)
    assert mask.tolist() == [[[0.0, 1.0, 1.0, 0.0]]]
    p = torch.softmax(logits, -1)[0, 0]
    torch.testing.assert_close(w[0, 0, 1:3], p[1:3] / p[1:3].sum())


def test_mom_equals_a_loop_over_routed_memories():
    torch.manual_seed(0)
    d, H, M, T = 8, 2, 3, 14
    m = MixtureOfMemories(d, n_heads=H, n_memories=M, topk=2, shared_memory=True, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    Dh, Mt = d // H, M + 1
    mask, weights = route(m.router(x), 2)
    q = F.normalize(F.silu(m.q_conv(m.q_proj(x))[0]).view(2, T, H, Dh), dim=-1)
    k, v = F.silu(m.kv_conv(m.kv_proj(x))[0]).view(2, T, 2, Mt, H, Dh).unbind(2)
    k = F.normalize(k, dim=-1)
    beta = torch.sigmoid(m.b_proj(x)).view(2, T, Mt, H)
    alpha = torch.exp(-m.A_log.exp() * F.softplus(m.a_proj(x) + m.dt_bias)).view(2, T, Mt, H)
    S = torch.zeros(2, Mt, H, Dh, Dh, dtype=torch.float64)
    outs = torch.zeros(2, T, H, Dh, dtype=torch.float64)
    for b in range(2):
        for t in range(T):
            for j in range(Mt):
                shared = j == M
                if not shared and mask[b, t, j] == 0:
                    continue  # not routed: memory j neither decays nor is written
                kt, vt, bt, at = k[b, t, j], v[b, t, j], beta[b, t, j], alpha[b, t, j]  # [H, Dh], [H]
                proj = torch.eye(Dh, dtype=torch.float64) - bt[:, None, None] * kt[:, :, None] * kt[:, None, :]
                S[b, j] = at[:, None, None] * proj @ S[b, j] + bt[:, None, None] * kt[:, :, None] * vt[:, None, :]
                w = 1.0 if shared else weights[b, t, j]
                outs[b, t] += w * torch.einsum("hk,hkv->hv", q[b, t], S[b, j]) * Dh ** -0.5
    expected = m.out_proj(m.o_norm(outs).flatten(2) * F.silu(m.g_proj(x)))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
