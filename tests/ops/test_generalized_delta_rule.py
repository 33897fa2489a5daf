"""The generalized delta rule S_t = (diag(w_t) + b_t a_tᵀ) S_{t−1} + k_t v_tᵀ against a float64 loop that
builds the transition matrix explicitly; forms and gradients agree; the delta rule is its special case."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.delta_rule import delta_rule
from trevo.ops.generalized_delta_rule import generalized_delta_rule

FORMS = ("quadratic", "chunk", "recurrent")


def make(seed, B=2, H=2, T=14, Dk=4, Dv=3, decay="vector"):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    kk = F.normalize(rnd(B, H, T, Dk), dim=-1)
    x = {"q": rnd(B, H, T, Dk), "k": rnd(B, H, T, Dk), "v": rnd(B, H, T, Dv), "a": -kk,
         "b": kk * torch.sigmoid(rnd(B, H, T, Dk)), "initial_state": rnd(B, H, Dk, Dv)}
    if decay == "vector":
        x["log_decay"] = -torch.rand(B, H, T, Dk, generator=gen, dtype=torch.float64)
    elif decay == "scalar":
        x["log_decay"] = -torch.rand(B, H, T, generator=gen, dtype=torch.float64)
    return x


def loop(q, k, v, a, b, log_decay=None, initial_state=None):
    """M_t = diag(w_t) + b_t a_tᵀ as a matrix; S_t = M_t S_{t−1} + k_t v_tᵀ; o_t = S_tᵀ q_t."""
    S, out = initial_state.clone(), []
    Dk = q.shape[-1]
    for t in range(q.shape[2]):
        if log_decay is None:
            w = torch.ones(*q.shape[:2], Dk, dtype=q.dtype)
        else:
            w = log_decay[:, :, t].exp()
            w = w[..., None].expand(*q.shape[:2], Dk) if w.dim() == 2 else w
        M = torch.diag_embed(w) + b[:, :, t, :, None] @ a[:, :, t, None, :]
        S = M @ S + k[:, :, t, :, None] @ v[:, :, t, None, :]
        out.append((q[:, :, t, None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


@pytest.mark.parametrize("decay", [None, "scalar", "vector"])
@pytest.mark.parametrize("form", FORMS)
def test_every_form_equals_the_transition_matrix_loop(decay, form):
    x = make(0, decay=decay)
    ref = loop(**x)
    o, S = generalized_delta_rule(**x, form=form, chunk_size=5)
    torch.testing.assert_close(o, ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, ref[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 3, 16])
def test_gradients_agree_across_forms(chunk_size):
    x = make(1, T=11)
    grads = []
    for form in FORMS:
        leaves = {n: t.clone().requires_grad_(True) for n, t in x.items()}
        o, S = generalized_delta_rule(**leaves, form=form, chunk_size=chunk_size)
        grads.append(torch.autograd.grad(o.square().sum() + S.sum(), list(leaves.values())))
    for g in grads[1:]:
        for a, b, name in zip(g, grads[0], x, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=lambda m, n=name: f"d{n}: {m}")


def test_the_gated_delta_rule_is_a_special_case():
    """(I − β k pᵀ) D = D + (−β k)(D p)ᵀ: the delta rule is DPLR with a = D p, b = −β k and the write key β k."""
    x = make(2)
    beta = torch.sigmoid(x["v"][..., 0])
    k, p, g = F.normalize(x["k"], dim=-1), x["q"].flip(2), x["log_decay"]
    o1, S1 = delta_rule(x["q"], k, x["v"], beta, log_decay=g, erase_key=p, initial_state=x["initial_state"])
    o2, S2 = generalized_delta_rule(x["q"], beta[..., None] * k, x["v"], g.exp() * p, -beta[..., None] * k,
                                    log_decay=g, initial_state=x["initial_state"], chunk_size=4)
    torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S1, S2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_padded_steps_are_no_ops_and_state_carries_across_a_split(form):
    x = make(3, B=1, T=10)
    mask = torch.tensor([[True, True, False, True, False, True, True, False, True, True]])
    o, S = generalized_delta_rule(**x, padding_mask=mask, form=form, chunk_size=3)
    real = {n: (t[:, :, mask[0]] if n != "initial_state" else t) for n, t in x.items()}
    ref = loop(**real)
    torch.testing.assert_close(o[:, :, mask[0]], ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, ref[1], rtol=1e-10, atol=1e-10)
    head = {n: (t[:, :, :4] if n != "initial_state" else t) for n, t in x.items()}
    tail = {n: t[:, :, 4:] for n, t in x.items() if n != "initial_state"}
    o1, S1 = generalized_delta_rule(**head, form=form, chunk_size=3)
    o2, S2 = generalized_delta_rule(**tail, initial_state=S1, form=form, chunk_size=3)
    full = generalized_delta_rule(**x, form=form, chunk_size=3)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), full[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S2, full[1], rtol=1e-10, atol=1e-10)


def test_long_strongly_decayed_sequences_stay_finite_in_float32():
    x = make(4, B=1, H=1, T=600)
    x["log_decay"] = -4 * torch.rand(1, 1, 600, 4, dtype=torch.float64)
    ref = loop(**x)
    o, S = generalized_delta_rule(**{n: t.float() for n, t in x.items()}, chunk_size=64)
    torch.testing.assert_close(o.double(), ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(S.double(), ref[1], rtol=1e-4, atol=1e-4)


def test_bad_shapes_are_clear_errors():
    q = torch.randn(1, 2, 5, 3)
    with pytest.raises(TrevoError, match="a must have"):
        generalized_delta_rule(q, q, q, q[..., :2], q)
    with pytest.raises(TrevoError, match="unknown form"):
        generalized_delta_rule(q, q, q, q, q, form="scan")
