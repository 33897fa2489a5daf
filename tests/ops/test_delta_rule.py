"""The (gated) delta rule: chunked UT/WY form, the one-chunk quadratic form and the loop agree
(values and gradients, initial state included); state carries across a split; padding is a no-op;
a write on orthogonal keys recalls the written value exactly; strong decay stays finite."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from trevo.errors import TrevoError
from trevo.ops.delta_rule import delta_rule

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
