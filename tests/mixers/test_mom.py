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


def loop_reference(m: MixtureOfMemories, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixer's output and final memories by a float64 loop over tokens and memories."""
    B, T, d = x.shape
    H, M = m.n_heads, m.n_memories
    Dh, Mt = d // H, M + 1
    mask, weights = route(m.router(x), m.topk)
    q = F.normalize(F.silu(m.q_conv(m.q_proj(x))[0]).view(B, T, H, Dh), dim=-1)
    k, v = F.silu(m.kv_conv(m.kv_proj(x))[0]).view(B, T, 2, Mt, H, Dh).unbind(2)
    k = F.normalize(k, dim=-1)
    beta = torch.sigmoid(m.b_proj(x)).view(B, T, Mt, H)
    alpha = torch.exp(-m.A_log.exp() * F.softplus(m.a_proj(x) + m.dt_bias)).view(B, T, Mt, H)
    S = torch.zeros(B, Mt, H, Dh, Dh, dtype=torch.float64)
    outs = torch.zeros(B, T, H, Dh, dtype=torch.float64)
    for b in range(B):
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
    return m.out_proj(m.o_norm(outs).flatten(2) * F.silu(m.g_proj(x))), S.flatten(1, 2)


def assert_every_form_equals_the_loop(m: MixtureOfMemories, x: torch.Tensor) -> torch.Tensor:
    """Every form's outputs and final memories equal the loop's; returns the memories."""
    expected, S = loop_reference(m, x)
    for form in m.forms:
        m.form = form
        y, state = m.prefill(x)
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state["S"], S, rtol=1e-10, atol=1e-10)
    return state["S"]


def test_mom_equals_a_loop_over_routed_memories():
    torch.manual_seed(0)
    m = MixtureOfMemories(8, n_heads=2, n_memories=3, topk=2, shared_memory=True, chunk_size=4).double()
    x = torch.randn(2, 14, 8, dtype=torch.float64)
    assert_every_form_equals_the_loop(m, x)


def test_mom_with_unbalanced_routing_and_an_unused_memory():
    """Rows route different numbers of tokens to a memory (the subsequences are padded to the longest), and
    memory 3 receives no token at all: it must keep its (zero) state."""
    torch.manual_seed(1)
    m = MixtureOfMemories(8, n_heads=2, n_memories=4, topk=1, shared_memory=True, chunk_size=4).double()
    x = torch.randn(3, 11, 8, dtype=torch.float64)
    x[..., 0] = 1.0  # a constant feature: the router's bias
    with torch.no_grad():
        m.router.weight[3] = 0.0
        m.router.weight[3, 0] = -100.0  # memory 3 is never a token's top memory
    mask, _ = route(m.router(x), 1)
    counts = mask.sum(1)
    assert counts[:, 3].eq(0).all() and (counts[:, :3].max(0).values != counts[:, :3].min(0).values).any()
    S = assert_every_form_equals_the_loop(m, x)
    assert S[:, 3 * 2:4 * 2].eq(0).all()
