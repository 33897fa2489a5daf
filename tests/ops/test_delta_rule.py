"""The (gated) delta rule: chunked UT/WY form, the one-chunk quadratic form and the loop agree
(values and gradients, initial state included); state carries across a split; padding is a no-op;
a write on orthogonal keys recalls the written value exactly; strong decay stays finite. Its general
form S_t = (I − β_t k_t p_tᵀ) D_t S_{t−1} + β_t k_t v_tᵀ (per-channel decays D_t for KDA and Gated
DeltaNet-2, erase keys p_t) and Gated DeltaProduct against float64 token-by-token loops written from the
papers' equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from trevo.errors import TrevoError
from trevo.ops.delta_rule import decayed_gram, delta_product, delta_rule

FORMS = ("quadratic", "chunk", "recurrent")


def make(seed, B, H, T, Dk, Dv, gated, strength, init, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    out = {"q": rnd(B, H, T, Dk), "k": F.normalize(rnd(B, H, T, Dk), dim=-1), "v": rnd(B, H, T, Dv),
           "beta": torch.sigmoid(rnd(B, H, T))}
    if gated:
        out["log_decay"] = -strength * torch.sigmoid(rnd(B, H, T))
    if init:
        out["initial_state"] = rnd(B, H, Dk, Dv)
    return {n: t.to(dtype) for n, t in out.items()}


shapes = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16), "B": st.integers(1, 2), "H": st.integers(1, 2), "T": st.integers(1, 21),
    "Dk": st.integers(1, 5), "Dv": st.integers(1, 4), "gated": st.booleans(),
    "strength": st.sampled_from([0.05, 1.0, 5.0]), "init": st.booleans(),
})


def run(inputs, form, chunk_size, grad_out):
    leaves = {n: t.clone().requires_grad_(True) for n, t in inputs.items()}
    q, k, v, beta = (leaves[n] for n in ("q", "k", "v", "beta"))
    rest = {n: t for n, t in leaves.items() if n not in ("q", "k", "v", "beta")}
    o, S = delta_rule(q, k, v, beta, **rest, form=form, chunk_size=chunk_size, scale=0.7)
    grads = torch.autograd.grad((o * grad_out[0]).sum() + (S * grad_out[1]).sum(), list(leaves.values()))
    return o.detach(), S.detach(), dict(zip(leaves, grads, strict=True))


def check(p, chunk_size, dtype, tol):
    inputs = make(**p, dtype=dtype)
    gen = torch.Generator().manual_seed(p["seed"] + 1)
    grad_out = (torch.randn(p["B"], p["H"], p["T"], p["Dv"], generator=gen, dtype=torch.float64).to(dtype),
                torch.randn(p["B"], p["H"], p["Dk"], p["Dv"], generator=gen, dtype=torch.float64).to(dtype))
    ref = run(inputs, "recurrent", chunk_size, grad_out)
    for form in ("quadratic", "chunk"):
        o, S, grads = run(inputs, form, chunk_size, grad_out)
        torch.testing.assert_close(o, ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(S, ref[1], rtol=tol, atol=tol)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref[2][name], rtol=tol, atol=tol, msg=lambda m, n=name: f"d{n}: {m}")


@settings(max_examples=25, deadline=None)
@given(p=shapes, chunk_size=st.integers(1, 8))
def test_forms_and_gradients_agree_in_float64(p, chunk_size):
    check(p, chunk_size, torch.float64, 1e-9)


@settings(max_examples=10, deadline=None)
@given(p=shapes, chunk_size=st.sampled_from([4, 8]))
def test_forms_and_gradients_agree_in_float32(p, chunk_size):
    check(p, chunk_size, torch.float32, 1e-4)


@settings(max_examples=15, deadline=None)
@given(p=shapes, form=st.sampled_from(FORMS), split=st.floats(0, 1), chunk_size=st.integers(1, 8))
def test_state_carried_across_a_split_equals_one_pass(p, form, split, chunk_size):
    x = make(**p)
    t = int(split * p["T"])
    gate = x.get("log_decay")
    o, S = delta_rule(x["q"], x["k"], x["v"], x["beta"], log_decay=gate, initial_state=x.get("initial_state"),
                      form=form, chunk_size=chunk_size)

    def part(sl, state):
        return delta_rule(x["q"][:, :, sl], x["k"][:, :, sl], x["v"][:, :, sl], x["beta"][:, :, sl],
                          log_decay=None if gate is None else gate[:, :, sl], initial_state=state, form=form,
                          chunk_size=chunk_size)

    o1, S1 = part(slice(0, t), x.get("initial_state"))
    o2, S2 = part(slice(t, p["T"]), S1)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S2, S, rtol=1e-10, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(p=shapes, form=st.sampled_from(FORMS), chunk_size=st.integers(1, 8), data=st.data())
def test_padding_changes_neither_real_outputs_nor_the_final_state(p, form, chunk_size, data):
    x = make(**p)
    B, T = p["B"], p["T"]
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B)))
    gate = x.get("log_decay")
    init = x.get("initial_state")
    o, S = delta_rule(x["q"], x["k"], x["v"], x["beta"], log_decay=gate, initial_state=init, padding_mask=mask,
                      form=form, chunk_size=chunk_size)
    for b in range(B):
        r = mask[b]
        ob, Sb = delta_rule(x["q"][b:b + 1, :, r], x["k"][b:b + 1, :, r], x["v"][b:b + 1, :, r],
                            x["beta"][b:b + 1, :, r], log_decay=None if gate is None else gate[b:b + 1, :, r],
                            initial_state=None if init is None else init[b:b + 1], form="recurrent")
        torch.testing.assert_close(o[b:b + 1, :, r], ob, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(S[b:b + 1], Sb, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_write_on_orthogonal_keys_recalls_the_written_value_exactly(form):
    """With β = 1 and orthonormal keys, the delta rule overwrites: after writing v1 then v2 under the
    same key e_0 and v3 under e_1, reading with e_0 gives v2 (not v1 + v2 as additive attention
    would) and reading with e_1 gives v3."""
    e = torch.eye(4, dtype=torch.float64)
    k = torch.stack([e[0], e[0], e[1], e[2]])[None, None]
    v = torch.tensor([[1.0, 2.0], [5.0, -3.0], [7.0, 0.5], [0.0, 0.0]], dtype=torch.float64)[None, None]
    q = torch.stack([e[0], e[0], e[0], e[1]])[None, None]
    beta = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]], dtype=torch.float64)
    o, S = delta_rule(q, k, v, beta, form=form, chunk_size=2)
    torch.testing.assert_close(o[0, 0], torch.tensor([[1.0, 2.0], [5.0, -3.0], [5.0, -3.0], [7.0, 0.5]],
                                                     dtype=torch.float64))
    torch.testing.assert_close(S[0, 0, 2], torch.zeros(2, dtype=torch.float64))
    # β = 1/2 moves the memory half-way: S e_0 = 1/2 · old + 1/2 · new
    o, _ = delta_rule(q[:, :, :2], k[:, :, :2], v[:, :, :2], torch.full((1, 1, 2), 0.5, dtype=torch.float64),
                      form=form, chunk_size=2)
    torch.testing.assert_close(o[0, 0, 1], 0.5 * (0.5 * v[0, 0, 0]) + 0.5 * v[0, 0, 1])


@pytest.mark.parametrize("form", FORMS)
def test_gated_delta_rule_hand_checked(form):
    """One key e_0, decay a: S_1 = β v1 e_0ᵀ; S_2 = a S_1 (I − β e_0 e_0ᵀ) + β v2 e_0ᵀ."""
    e0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    k = torch.stack([e0, e0])[None, None]
    v = torch.tensor([[2.0], [10.0]], dtype=torch.float64)[None, None]
    beta = torch.full((1, 1, 2), 0.5, dtype=torch.float64)
    a = 0.6
    o, _ = delta_rule(k, k, v, beta, log_decay=torch.full((1, 1, 2), a, dtype=torch.float64).log(), form=form,
                      chunk_size=2)
    s1 = 0.5 * 2.0
    assert o[0, 0, 0, 0].item() == pytest.approx(s1)
    assert o[0, 0, 1, 0].item() == pytest.approx(a * s1 * 0.5 + 0.5 * 10.0)


def test_strong_decay_over_thousands_of_steps_is_finite_and_exact_in_float32():
    x = make(0, 1, 1, 2000, 3, 2, True, 1.0, True)
    x["log_decay"] = -5 + 0.5 * torch.rand(1, 1, 2000, dtype=torch.float64)
    with torch.no_grad():
        ref = delta_rule(x["q"], x["k"], x["v"], x["beta"], log_decay=x["log_decay"],
                         initial_state=x["initial_state"], form="recurrent")
    f = {n: t.float() for n, t in x.items()}
    f["log_decay"].requires_grad_(True)
    o, S = delta_rule(f["q"], f["k"], f["v"], f["beta"], log_decay=f["log_decay"], initial_state=f["initial_state"],
                      form="chunk", chunk_size=64)
    torch.testing.assert_close(o.double(), ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(S.double(), ref[1], rtol=1e-4, atol=1e-4)
    (grad,) = torch.autograd.grad(o.sum(), f["log_decay"])
    assert torch.isfinite(grad).all()


def test_bad_shapes_are_clear_errors():
    q = torch.randn(1, 2, 5, 3)
    with pytest.raises(TrevoError, match="beta must be"):
        delta_rule(q, q, q, torch.zeros(1, 2, 4))
    with pytest.raises(TrevoError, match="unknown form"):
        delta_rule(q, q, q, torch.zeros(1, 2, 5), form="fast")


def make_general(seed, B=2, H=2, T=13, Dk=4, Dv=3, decay="vector", erase=True, strength=1.0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    x = {"q": rnd(B, H, T, Dk), "k": F.normalize(rnd(B, H, T, Dk), dim=-1), "v": rnd(B, H, T, Dv),
         "beta": 2 * torch.sigmoid(rnd(B, H, T)), "initial_state": rnd(B, H, Dk, Dv)}
    if decay == "scalar":
        x["log_decay"] = -strength * torch.rand(B, H, T, generator=gen, dtype=torch.float64)
    elif decay == "vector":
        x["log_decay"] = -strength * torch.rand(B, H, T, Dk, generator=gen, dtype=torch.float64)
    if erase:
        x["erase_key"] = 0.7 * rnd(B, H, T, Dk)
    return x


def loop(q, k, v, beta, log_decay=None, erase_key=None, initial_state=None):
    """The recurrence as written: S ← D S; S ← S − β k (pᵀ S) + β k vᵀ; o = Sᵀ q (float64, one token at a time)."""
    B, H, T, Dk = q.shape
    S = initial_state.clone() if initial_state is not None else q.new_zeros(B, H, Dk, v.shape[-1])
    p = k if erase_key is None else erase_key
    out = []
    for t in range(T):
        if log_decay is not None:
            d = log_decay[:, :, t].exp()
            S = (d[..., None, None] if d.dim() == 2 else d[..., :, None]) * S
        kt, pt, bt = k[:, :, t, :, None], p[:, :, t, :, None], beta[:, :, t, None, None]
        S = S - bt * kt @ (pt.transpose(-1, -2) @ S) + bt * kt @ v[:, :, t, None, :]
        out.append((q[:, :, t, None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


@pytest.mark.parametrize("decay", [None, "scalar", "vector"])
@pytest.mark.parametrize("erase", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_every_form_equals_the_recurrence_loop(decay, erase, form):
    x = make_general(1, decay=decay, erase=erase)
    ref = loop(**x)
    o, S = delta_rule(**x, form=form, chunk_size=5)
    torch.testing.assert_close(o, ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, ref[1], rtol=1e-10, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), T=st.integers(1, 17), chunk_size=st.integers(1, 9),
       decay=st.sampled_from([None, "scalar", "vector"]), erase=st.booleans(), strength=st.sampled_from([0.1, 3.0]))
def test_general_forms_and_gradients_agree_in_float64(seed, T, chunk_size, decay, erase, strength):
    x = make_general(seed, T=T, decay=decay, erase=erase, strength=strength)
    gen = torch.Generator().manual_seed(seed + 1)
    results = []
    for form in FORMS:
        leaves = {n: t.clone().requires_grad_(True) for n, t in x.items()}
        o, S = delta_rule(**leaves, form=form, chunk_size=chunk_size, scale=0.7)
        w_o = torch.randn(o.shape, generator=gen, dtype=torch.float64)
        w_S = torch.randn(S.shape, generator=gen, dtype=torch.float64)
        grads = torch.autograd.grad((o * w_o).sum() + (S * w_S).sum(), list(leaves.values()))
        gen.manual_seed(seed + 1)
        results.append((o.detach(), S.detach(), grads))
    for o, S, grads in results[1:]:
        torch.testing.assert_close(o, results[0][0], rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(S, results[0][1], rtol=1e-9, atol=1e-10)
        for g, g0, name in zip(grads, results[0][2], x, strict=True):
            torch.testing.assert_close(g, g0, rtol=1e-8, atol=1e-10, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("form", FORMS)
def test_general_state_carried_across_a_split_equals_one_pass(form):
    x = make_general(2, T=17)
    o, S = delta_rule(**x, form=form, chunk_size=4)
    first = {n: (t[:, :, :7] if n not in ("initial_state",) else t) for n, t in x.items()}
    rest = {n: t[:, :, 7:] for n, t in x.items() if n != "initial_state"}
    o1, S1 = delta_rule(**first, form=form, chunk_size=4)
    o2, S2 = delta_rule(**rest, initial_state=S1, form=form, chunk_size=4)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S2, S, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_padded_steps_are_no_ops(form):
    x = make_general(3, B=1, T=11)
    mask = torch.tensor([[True, False, True, True, False, False, True, True, True, False, True]])
    o, S = delta_rule(**x, padding_mask=mask, form=form, chunk_size=3)
    real = {n: (t[:, :, mask[0]] if n != "initial_state" else t) for n, t in x.items()}
    ref = loop(**real)
    torch.testing.assert_close(o[:, :, mask[0]], ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, ref[1], rtol=1e-10, atol=1e-10)


def test_a_negative_eigenvalue_flips_the_state_along_the_key():
    """β = 2 makes I − β k kᵀ the reflection across k⊥ (Grazzi et al.): with no writes the component
    of the memory along k changes sign every step (parity), while β <= 1 can only shrink it."""
    k = torch.tensor([0.6, 0.8], dtype=torch.float64).expand(1, 1, 6, 2)
    v = torch.zeros(1, 1, 6, 1, dtype=torch.float64)
    S0 = torch.tensor([[3.0], [4.0]], dtype=torch.float64)[None, None]  # = 5 k, along k
    for form in FORMS:
        o, S = delta_rule(k, k, v, torch.full((1, 1, 6), 2.0, dtype=torch.float64), initial_state=S0, form=form,
                          chunk_size=4)
        torch.testing.assert_close(o[0, 0, :, 0], 5.0 * torch.tensor([-1, 1, -1, 1, -1, 1], dtype=torch.float64))
        o, _ = delta_rule(k, k, v, torch.full((1, 1, 6), 0.5, dtype=torch.float64), initial_state=S0, form=form)
        assert (o[0, 0, :, 0] > 0).all()


def test_decayed_gram_is_the_pairwise_decayed_product():
    gen = torch.Generator().manual_seed(4)
    x, y = (torch.randn(2, 12, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    b = (-torch.rand(2, 12, 5, generator=gen, dtype=torch.float64)).cumsum(1)
    for strict in (False, True):
        A = decayed_gram(x, y, b, b, strict=strict)
        ref = torch.einsum("ntd,nid,ntid->nti", x, y, torch.exp(b[:, :, None] - b[:, None]))
        keep = torch.ones(12, 12, dtype=torch.bool).tril(-1 if strict else 0)
        torch.testing.assert_close(A, ref * keep, rtol=1e-12, atol=1e-12)


def householder_loop(q, k, v, beta, log_decay, S):
    """Gated DeltaProduct written out: per token the decay, then n generalized Householder steps
    S ← (I − β_j k_j k_jᵀ) S + β_j k_j v_jᵀ, then the read."""
    out = []
    for t in range(q.shape[2]):
        S = log_decay[:, :, t].exp()[..., None, None] * S
        for j in range(k.shape[3]):
            kj, bj = k[:, :, t, j, :, None], beta[:, :, t, j, None, None]
            eye = torch.eye(kj.shape[-2], dtype=S.dtype)
            S = (eye - bj * kj @ kj.transpose(-1, -2)) @ S + bj * kj @ v[:, :, t, j, None, :]
        out.append((q[:, :, t, None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n", [1, 3])
def test_delta_product_equals_n_householder_steps_per_token(form, n):
    gen = torch.Generator().manual_seed(5)
    B, H, T, Dk, Dv = 2, 2, 9, 4, 3
    q, S0 = torch.randn(B, H, T, Dk, generator=gen, dtype=torch.float64), torch.randn(B, H, Dk, Dv, generator=gen,
                                                                                        dtype=torch.float64)
    k = F.normalize(torch.randn(B, H, T, n, Dk, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, T, n, Dv, generator=gen, dtype=torch.float64)
    beta = 2 * torch.rand(B, H, T, n, generator=gen, dtype=torch.float64)
    g = -torch.rand(B, H, T, generator=gen, dtype=torch.float64)
    ref = householder_loop(q, k, v, beta, g, S0)
    o, S = delta_product(q, k, v, beta, log_decay=g, initial_state=S0, form=form, chunk_size=4)
    torch.testing.assert_close(o, ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, ref[1], rtol=1e-10, atol=1e-10)


def test_two_reflections_rotate_the_state():
    """With v = 0 and β = 2 a DeltaProduct step with two keys is the product of two reflections: a rotation
    by twice the angle between them (here 2·45° = 90°), which no single delta-rule step can express."""
    c = 2 ** -0.5
    k = torch.tensor([[1.0, 0.0], [c, c]], dtype=torch.float64)[None, None, None]  # [1, 1, 1, 2, 2]
    S0 = torch.tensor([[1.0], [0.0]], dtype=torch.float64)[None, None]
    _, S = delta_product(torch.zeros(1, 1, 1, 2, dtype=torch.float64), k, torch.zeros(1, 1, 1, 2, 1,
                         dtype=torch.float64), torch.full((1, 1, 1, 2), 2.0, dtype=torch.float64), initial_state=S0)
    torch.testing.assert_close(S[0, 0, :, 0], torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_general_bad_inputs_are_clear_errors():
    q = torch.randn(1, 2, 5, 3)
    with pytest.raises(TrevoError, match="beta must be"):
        delta_rule(q, q, q, torch.zeros(1, 2, 4))
    with pytest.raises(TrevoError, match="log_decay must be"):
        delta_rule(q, q, q, torch.zeros(1, 2, 5), log_decay=torch.zeros(1, 2, 5, 4))
    with pytest.raises(TrevoError, match="erase_key must have"):
        delta_rule(q, q, q, torch.zeros(1, 2, 5), erase_key=torch.zeros(1, 2, 5, 2))
    with pytest.raises(TrevoError, match="unknown form"):
        delta_rule(q, q, q, torch.zeros(1, 2, 5), form="fast")
    with pytest.raises(TrevoError, match="delta_product expects"):
        delta_product(q, q, q, torch.zeros(1, 2, 5))
