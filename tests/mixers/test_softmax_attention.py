"""Softmax attention and its multi-query / grouped-query variants equal softmax(QKᵀ/√d)V written out
per query head (query head h reading key/value head h // group), in both forms; the KV cache holds
n_kv_heads heads and grows by one token per step."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.registry import create

D, T = 16, 7


def _formula(m, x: torch.Tensor, causal: bool, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, H, G, dh = x.shape[0], m.n_heads, m.n_kv_heads, m.head_dim
    q = m.q_proj(x).view(B, T, H, dh)
    k, v = (t.view(B, T, G, dh) for t in m.kv_proj(x).chunk(2, dim=-1))
    out = torch.zeros(B, T, H, dh, dtype=x.dtype)
    for b in range(B):
        for h in range(H):
            g = h // (H // G)
            for t in range(T):
                keys = [j for j in range(t + 1 if causal else T) if mask is None or mask[b, j]]
                scores = torch.stack([q[b, t, h] @ k[b, j, g] / math.sqrt(dh) for j in keys])
                weights = torch.softmax(scores, dim=0)
                out[b, t, h] = sum(w * v[b, j, g] for w, j in zip(weights, keys, strict=True))
    return m.out_proj(out.flatten(2))


@pytest.mark.parametrize("name,options", [("softmax_attention", {"n_heads": 2}),
                                          ("grouped_query_attention", {"n_heads": 4, "n_kv_heads": 2}),
                                          ("multi_query_attention", {"n_heads": 4})])
@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_formula_with_shared_key_value_heads(name, options, causal):
    torch.manual_seed(0)
    m = create("mixer", name, d_model=D, causal=causal, chunk_size=3, **options).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = None if causal else torch.tensor([[True] * T, [True] * 5 + [False] * 2])
    expected = _formula(m, x, causal, mask)
    for form in ("sdpa", "chunk"):
        m.form = form
        y = m(x, padding_mask=mask)
        real = torch.ones(2, T, dtype=torch.bool) if mask is None else mask
        torch.testing.assert_close(y[real], expected[real], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kv_heads", [("softmax_attention", 4), ("grouped_query_attention", 2),
                                           ("multi_query_attention", 1)])
def test_kv_cache_holds_the_key_value_heads_and_grows_one_token_per_step(name, kv_heads):
    torch.manual_seed(0)
    m = create("mixer", name, d_model=D, causal=True, n_heads=4).double()
    x = torch.randn(1, T, D, dtype=torch.float64)
    _, state = m.prefill(x[:, :3])
    assert state["k"].shape == state["v"].shape == (1, kv_heads, 3, D // 4)
    for t in range(3, T):
        _, state = m.step(x[:, t], state)
        assert state["k"].shape[2] == t + 1


def test_qk_norm_rms_normalises_each_query_and_key_head_before_the_scores():
    torch.manual_seed(0)
    m = create("mixer", "softmax_attention", d_model=D, causal=True, n_heads=2, qk_norm=True).double()
    with torch.no_grad():
        m.q_norm.weight.copy_(torch.linspace(0.5, 2, D // 2))
        m.k_norm.weight.copy_(torch.linspace(2, 0.5, D // 2))
    x = torch.randn(2, T, D, dtype=torch.float64)
    B, H, dh = 2, 2, D // 2
    q = m.q_proj(x).view(B, T, H, dh)
    k, v = (t.view(B, T, H, dh) for t in m.kv_proj(x).chunk(2, dim=-1))
    rms = lambda t, w: t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w  # noqa: E731
    q, k = rms(q, m.q_norm.weight), rms(k, m.k_norm.weight)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, -1), v)
    torch.testing.assert_close(m(x), m.out_proj(o.flatten(2)), rtol=1e-10, atol=1e-12)
    # normalised heads bound every logit by √dh · |g_q| · |g_k|, whatever the scale of the input
    big = m(1e4 * x)
    assert torch.isfinite(big).all()


def test_output_gate_multiplies_the_attention_output_by_a_sigmoid_of_the_input():
    torch.manual_seed(0)
    gated = create("mixer", "softmax_attention", d_model=D, causal=True, n_heads=2, output_gate=True).double()
    plain = create("mixer", "softmax_attention", d_model=D, causal=True, n_heads=2).double()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if not k.startswith("gate_proj")})
    x = torch.randn(2, T, D, dtype=torch.float64)
    # plain's output before W_O, gated elementwise by σ(x W_θ), then W_O (Qiu et al. 2025, G1)
    inner = {}
    plain.out_proj.register_forward_hook(lambda mod, args, out: inner.setdefault("o", args[0]))
    plain(x)
    expected = gated.out_proj(inner["o"] * torch.sigmoid(gated.gate_proj(x)))
    torch.testing.assert_close(gated(x), expected, rtol=1e-10, atol=1e-12)


def test_rotary_attention_refuses_an_odd_head_width_at_build():
    from trevo.errors import IncompatibleError
    from trevo.registry import build

    rope = build("position", "rope", d_model=18)
    with pytest.raises(IncompatibleError, match="head dimension must be even; got 9"):
        build("mixer", "softmax_attention", {"n_heads": 2}, d_model=18, causal=True, position=rope)
