"""Log-linear attention: every form (from any starting position, through any split) equals the pairwise sum
over Fenwick levels ℓ(t, i) = bit_length(t XOR i), computed with Python integers; the buckets of the
state are the binary digits of the position."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.log_linear import FORMS, log_linear_attention


def pairwise(q, k, v, g, lam, start):
    """float64: o_t = Σ_{i<=t} λ_t[ℓ(t, i)] (q_t·k_i) exp(Σ_{i<j<=t} g_j) v_i over absolute positions."""
    B, H, T, _ = q.shape
    o = torch.zeros(B, H, T, v.shape[-1], dtype=torch.float64)
    for t in range(T):
        for i in range(t + 1):
            level = 0 if i == t else ((start + t) ^ (start + i)).bit_length()
            w = lam[:, :, t, level] * (q[:, :, t] * k[:, :, i]).sum(-1) * torch.exp(g[:, :, i + 1:t + 1].sum(-1))
            o[:, :, t] += w[..., None] * v[:, :, i]
    return o


def inputs(T, L=7, seed=0):
    torch.manual_seed(seed)
    B, H, Dk, Dv = 2, 2, 3, 2
    q, k, v = torch.randn(B, H, T, Dk).double(), torch.randn(B, H, T, Dk).double(), torch.randn(B, H, T, Dv).double()
    g = F.logsigmoid(torch.randn(B, H, T).double() + 2)
    lam = F.softplus(torch.randn(B, H, T, L).double())
    return q, k, v, g, lam, torch.zeros(B, H, 0, Dk, Dv, dtype=torch.float64)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("split", [0, 5, 12])
def test_every_form_is_the_sum_over_fenwick_levels(form, split):
    T = 29
    q, k, v, g, lam, empty = inputs(T)
    expected = pairwise(q, k, v, g, lam, 0)
    o1, S = log_linear_attention(q[:, :, :split], k[:, :, :split], v[:, :, :split], g[:, :, :split],
                                 lam[:, :, :split], state=empty, pos=0, form=form, chunk_size=6)
    o2, S = log_linear_attention(q[:, :, split:], k[:, :, split:], v[:, :, split:], g[:, :, split:],
                                 lam[:, :, split:], state=S, pos=split, form=form, chunk_size=6)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), expected, rtol=1e-10, atol=1e-10)
    assert S.shape[2] == T.bit_length()


def test_the_buckets_are_the_binary_digits_of_the_position():
    """With no decay and unit keys and values, bucket ℓ holds 2^(ℓ−1) tokens where bit ℓ−1 of p is set."""
    for p in (1, 6, 13, 16, 23):
        ones = torch.ones(1, 1, p, 1, dtype=torch.float64)
        for form in FORMS:
            _, S = log_linear_attention(ones, ones, ones, torch.zeros(1, 1, p, dtype=torch.float64),
                                        torch.ones(1, 1, p, 6, dtype=torch.float64),
                                        state=torch.zeros(1, 1, 0, 1, 1, dtype=torch.float64), pos=0, form=form,
                                        chunk_size=4)
            sizes = [int(s) for s in S[0, 0, :, 0, 0]]
            assert sizes == [(p >> b & 1) << b for b in range(p.bit_length())], (p, form, sizes)


def test_positions_past_the_levels_are_a_clear_error():
    q, k, v, g, lam, empty = inputs(70, L=7)
    with pytest.raises(TrevoError, match="raise n_levels"):
        log_linear_attention(q, k, v, g, lam, state=empty, pos=0)


def test_delta_rule_hierarchy_is_the_sum_over_levels_of_transported_writes():
    """o_t = Σ_{i<=t} λ_t[ℓ(t, i)] q_tᵀ (Π_{i<j<=t} α_j (I − β_j k_j k_jᵀ)) β_i k_i v_iᵀ, the products formed
    explicitly; split at 9 through the state, in every form (blocks of 4 from position 9 straddle the
power-of-two boundaries)."""
    T = 17
    q, k, v, g, lam, empty = inputs(T, seed=1)
    k = F.normalize(k, dim=-1)
    beta = torch.rand(*g.shape, dtype=torch.float64)
    eye = torch.eye(k.shape[-1], dtype=torch.float64)
    expected = torch.zeros(*q.shape[:3], v.shape[-1], dtype=torch.float64)
    for t in range(T):
        P = eye.expand(*q.shape[:2], -1, -1)
        for i in range(t, -1, -1):  # P = Π_{i<j<=t} A_j, grown leftwards
            level = 0 if i == t else (t ^ i).bit_length()
            write = beta[:, :, i, None, None] * k[:, :, i, :, None] * v[:, :, i, None, :]
            expected[:, :, t] += lam[:, :, t, level, None] * torch.einsum("bhd,bhde->bhe", q[:, :, t], P @ write)
            A = g[:, :, i].exp()[..., None, None] * (eye - beta[:, :, i, None, None] * k[:, :, i, :, None]
                                                     * k[:, :, i, None, :])
            P = P @ A
    for form in FORMS:
        o1, S = log_linear_attention(q[:, :, :9], k[:, :, :9], v[:, :, :9], g[:, :, :9], lam[:, :, :9],
                                     state=empty, pos=0, form=form, chunk_size=4, beta=beta[:, :, :9])
        o2, _ = log_linear_attention(q[:, :, 9:], k[:, :, 9:], v[:, :, 9:], g[:, :, 9:], lam[:, :, 9:], state=S,
                                     pos=9, form=form, chunk_size=4, beta=beta[:, :, 9:])
        torch.testing.assert_close(torch.cat([o1, o2], dim=2), expected, rtol=1e-10, atol=1e-10,
                                   msg=lambda m, form=form: f"{form}: {m}")


def test_unit_level_weights_give_back_the_gated_delta_rule():
    from trevo.ops.delta_rule import delta_rule

    q, k, v, g, lam, empty = inputs(20, seed=2)
    k = F.normalize(k, dim=-1)
    beta = torch.rand(*g.shape, dtype=torch.float64)
    o_ref, S_ref = delta_rule(q, k, v, beta, log_decay=g, form="recurrent")
    for form in FORMS:
        o, S = log_linear_attention(q, k, v, g, torch.ones_like(lam), state=empty, pos=0, form=form, chunk_size=6,
                                    beta=beta)
        torch.testing.assert_close(o, o_ref)
        torch.testing.assert_close(S.sum(2), S_ref)
