"""RWKV-5 / RWKV-6: the bonus u applies to the current token only, decays to the past; ddlerp."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.rwkv6 import RWKV5TimeMix, RWKV6TimeMix
from trevo.components.token_shift import token_shift


@pytest.mark.parametrize("cls", [RWKV5TimeMix, RWKV6TimeMix])
def test_wkv_with_bonus_for_the_current_token_and_decay_for_the_past(cls):
    """wkv_t = diag(u) k_tᵀ v_t + Σ_{i<t} diag(Π_{j=i+1}^{t−1} w_j) k_iᵀ v_i, per head, read by r_t."""
    torch.manual_seed(0)
    d, H, T = 16, 2, 6
    m = cls(d, causal=True, n_heads=H, chunk_size=4).double()
    with torch.no_grad():
        m.time_first.normal_()
    x = torch.randn(1, T, d, dtype=torch.float64)
    mix = m.mixed(x, token_shift(x))
    dh = d // H
    r, k, v = (getattr(m, n)(mix[c]).view(T, H, dh) for n, c in (("receptance", "r"), ("key", "k"), ("value", "v")))
    w = m.log_decay(mix["w"]).exp().view(T, H, dh)
    assert ((w > 0) & (w < 1)).all()
    u = m.time_first
    o = torch.zeros(T, H, dh, dtype=torch.float64)
    for t in range(T):
        for h in range(H):
            wkv = torch.outer(u[h] * k[t, h], v[t, h])
            for i in range(t):
                decay = torch.ones(dh, dtype=torch.float64)
                for j in range(i + 1, t):
                    decay = decay * w[j, h]
                wkv = wkv + torch.outer(decay * k[i, h], v[i, h])
            o[t, h] = r[t, h] @ wkv
    y = F.group_norm(o.reshape(T, d), H, m.ln_x.weight, m.ln_x.bias, m.ln_x.eps)
    expected = m.output(F.silu(m.gate(mix["g"])) * y[None])
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_rwkv5_decay_is_static_and_rwkv6_decay_depends_on_the_data():
    torch.manual_seed(0)
    x = torch.randn(1, 5, 16)
    m5, m6 = RWKV5TimeMix(16, n_heads=2), RWKV6TimeMix(16, n_heads=2)
    w5 = m5.log_decay(m5.mixed(x, token_shift(x))["w"])
    assert torch.equal(w5[0, 0], w5[0, 3])
    with torch.no_grad():
        m6.decay_B.normal_()
    w6 = m6.log_decay(m6.mixed(x, token_shift(x))["w"])
    assert not torch.allclose(w6[0, 0], w6[0, 3])


def test_ddlerp_interpolates_between_the_token_and_its_predecessor():
    """With the LoRA switched off, ddlerp_□(a, b) = a + (b − a) ⊙ λ_□: λ = 0 gives x_t, λ = 1 gives x_{t−1}."""
    m = RWKV6TimeMix(16, n_heads=2)
    with torch.no_grad():
        m.mix_B.zero_()
        m.mu.zero_()
        m.mu[1] = 1.0
    x = torch.randn(1, 4, 16)
    mix = m.mixed(x, token_shift(x))
    torch.testing.assert_close(mix["r"], x)
    torch.testing.assert_close(mix["k"], token_shift(x))
