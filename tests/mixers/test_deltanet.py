"""The delta-rule family's layers (DeltaNet, Gated DeltaNet, KDA, Gated DeltaNet-2): DeltaNet and Gated
DeltaNet against an explicit loop with short causal convolutions computed independently; every layer
against a float64 token-by-token loop of its paper's recurrence built from its own projections; the
negative-eigenvalue option doubles β's range."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import short_conv_loop
from trevo.components.mixers.deltanet import DeltaNet, GatedDeltaNet
from trevo.components.multihead import merge_heads, split_heads
from trevo.registry import build


@pytest.mark.parametrize("cls", [DeltaNet, GatedDeltaNet])
def test_mixer_equals_the_explicit_delta_rule_loop(cls):
    torch.manual_seed(0)
    d, H, T = 16, 2, 10
    m = cls(d, causal=True, n_heads=H, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    dh = d // H

    def branch(name):
        y = F.silu(short_conv_loop(getattr(m, f"{name}_conv"), getattr(m, f"{name}_proj")(x)))
        return y.view(2, T, H, dh)

    q, k, v = branch("q"), branch("k"), branch("v")
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    beta = torch.sigmoid(m.b_proj(x))
    if cls is GatedDeltaNet:
        alpha = torch.exp(-m.decay.A_log.exp() * F.softplus(m.decay.proj(x) + m.decay.dt_bias))
        assert ((alpha > 0) & (alpha < 1)).all()
    else:
        alpha = torch.ones_like(beta)
    S = torch.zeros(2, H, dh, dh, dtype=torch.float64)  # S[b, h] maps keys to values: S_t = α S (I − β k kᵀ) + β v kᵀ
    eye = torch.eye(dh, dtype=torch.float64)
    outs = []
    for t in range(T):
        kt = k[:, t]
        proj = eye - beta[:, t, :, None, None] * kt[..., :, None] * kt[..., None, :]
        S = alpha[:, t, :, None, None] * S @ proj + beta[:, t, :, None, None] * v[:, t, :, :, None] * kt[..., None, :]
        outs.append((S @ q[:, t, :, :, None])[..., 0] * dh ** -0.5)
    o = m.o_norm(torch.stack(outs, dim=1)).flatten(2)
    if cls is GatedDeltaNet:
        o = o * F.silu(m.g_proj(x))
    expected = m.out_proj(o)
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


D, H, T = 16, 2, 11


def layer(name, **options):
    torch.manual_seed(0)
    return build("mixer", name, {"n_heads": H, "chunk_size": 4, **options}, d_model=D, causal=True).double()


def reference(m, x):
    """S_t = (I − k_t e_tᵀ) D_t S_{t−1} + k_t w_tᵀ, o_t = S_tᵀ q_t / √d_k, written per paper:
    DeltaNet e = βk, w = βv, D = I; Gated DeltaNet D = α_t I; KDA D = Diag(α_t); GDN-2 e = b ⊙ k, w = w ⊙ v."""
    name = m.registry_entry.name
    q, k, v = m.qkv(x, m.init_state(x.shape[0], x.device, x.dtype), {})
    if name == "gated_deltanet2":
        e = m.beta_scale * split_heads(torch.sigmoid(m.b_proj(x)), H) * k
        w = split_heads(torch.sigmoid(m.w_proj(x)), H) * v
    else:
        beta = m.beta_scale * torch.sigmoid(m.b_proj(x)).transpose(1, 2)[..., None]
        e, w = beta * k, beta * v
    log_d = torch.zeros_like(k)
    if name == "gated_deltanet":
        log_d = (-m.decay.A_log.exp() * F.softplus(m.decay.proj(x) + m.decay.dt_bias)).transpose(1, 2)[..., None]
        log_d = log_d.expand_as(k)
    if name in ("kda", "gated_deltanet2"):
        log_d = -m.decay.A_log.exp()[:, None, None] * split_heads(F.softplus(m.decay.proj(x) + m.decay.dt_bias), H)
    S = torch.zeros(x.shape[0], H, D // H, D // H, dtype=x.dtype)
    out = []
    for t in range(x.shape[1]):
        S = log_d[:, :, t].exp()[..., None] * S
        kt = k[:, :, t, :, None]
        S = S - kt @ (e[:, :, t, None, :] @ S) + kt @ w[:, :, t, None, :]
        out.append((q[:, :, t, None, :] @ S)[..., 0, :] * (D // H) ** -0.5)
    y = merge_heads(m.o_norm(torch.stack(out, dim=2)))
    if name == "gated_deltanet":
        y = y * F.silu(m.g_proj(x))
    elif name in ("kda", "gated_deltanet2"):
        y = y * torch.sigmoid(m.g_proj(x))
    return m.out_proj(y)


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "kda", "gated_deltanet2"])
@pytest.mark.parametrize("negative_eigenvalues", [False, True])
@pytest.mark.parametrize("form", ["chunk", "recurrent"])
def test_layer_equals_the_papers_recurrence(name, negative_eigenvalues, form):
    m = layer(name, negative_eigenvalues=negative_eigenvalues, form=form)
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m(x), reference(m, x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "kda"])
def test_negative_eigenvalues_double_the_range_of_beta(name):
    """β = σ(·) ∈ (0, 1) by default, 2σ(·) ∈ (0, 2) with the option: the eigenvalue 1 − β of I − β k kᵀ
    along k reaches (−1, 0) only with it."""
    x = torch.randn(1, T, D, dtype=torch.float64)
    for option, top in ((False, 1.0), (True, 2.0)):
        m = layer(name, negative_eigenvalues=option)
        with torch.no_grad():
            m.b_proj.bias.fill_(8.0)
        q, k, v = m.qkv(x, m.init_state(1, x.device, x.dtype), {})
        _, beta, _, _ = m.gates(x, q, k, v)
        assert beta.max() < top and beta.min() > 0.99 * top


def test_gated_deltanet2_with_equal_gates_is_kda():
    """b = w = β (the erase and write gates collapsed to KDA's scalar) gives KDA's layer exactly."""
    kda, gdn2 = layer("kda"), layer("gated_deltanet2")
    state = {k: p for k, p in kda.state_dict().items() if not k.startswith("b_proj")}
    gdn2.load_state_dict(state, strict=False)
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = kda.qkv(x, kda.init_state(2, x.device, x.dtype), {})
    beta = torch.sigmoid(kda.b_proj(x)).transpose(1, 2)[..., None]
    gdn2.gates = lambda x_, q_, k_, v_: (q_, torch.ones_like(beta[..., 0]), beta * k_, beta * v_)
    torch.testing.assert_close(gdn2(x), kda(x), rtol=1e-10, atol=1e-12)
