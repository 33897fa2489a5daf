"""The linear-recurrence engine: its three forms agree (values and gradients of every input, the
initial state included), state carries across a split, padding is a no-op, strong decay over
thousands of steps stays finite and exact, and a hand-checked tiny case."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from trevo.errors import TrevoError
from trevo.ops.linear_recurrence import linear_recurrence, segsum

FORMS = ("quadratic", "chunk", "recurrent")


def make(seed, B, H, T, Dk, Dv, gate, strength, bonus, init, dtype):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    inputs = {"q": rnd(B, H, T, Dk), "k": rnd(B, H, T, Dk), "v": rnd(B, H, T, Dv)}
    if gate != "none":
        shape = (B, H, T) if gate == "scalar" else (B, H, T, Dk)
        # log decays in [-strength, 0): from nearly no decay to e^-5 per step
        inputs["log_decay"] = -strength * torch.sigmoid(rnd(*shape))
    if bonus:
        inputs["bonus"] = rnd(H, Dk)
    if init:
        inputs["initial_state"] = rnd(B, H, Dk, Dv)
    return inputs


def run(inputs, form, chunk_size, grad_out=None):
    leaves = {n: t.clone().requires_grad_(True) for n, t in inputs.items()}
    o, S = linear_recurrence(**leaves, form=form, chunk_size=chunk_size, scale=0.5)
    if grad_out is None:
        return o.detach(), S.detach(), {}
    go, gS = grad_out
    grads = torch.autograd.grad((o * go).sum() + (S * gS).sum(), list(leaves.values()))
    return o.detach(), S.detach(), dict(zip(leaves, grads, strict=True))


shapes = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16), "B": st.integers(1, 2), "H": st.integers(1, 3), "T": st.integers(1, 21),
    "Dk": st.integers(1, 5), "Dv": st.integers(1, 4), "gate": st.sampled_from(["none", "scalar", "vector"]),
    "strength": st.sampled_from([0.05, 1.0, 5.0]), "bonus": st.booleans(), "init": st.booleans(),
})


def check_forms_agree(p, chunk_size, dtype, rtol, atol):
    inputs = make(**p, dtype=dtype)
    B, H, T, Dk, Dv = p["B"], p["H"], p["T"], p["Dk"], p["Dv"]
    gen = torch.Generator().manual_seed(p["seed"] + 1)
    grad_out = (torch.randn(B, H, T, Dv, generator=gen, dtype=torch.float64).to(dtype),
                torch.randn(B, H, Dk, Dv, generator=gen, dtype=torch.float64).to(dtype))
    ref = run(inputs, "recurrent", chunk_size, grad_out)
    for form in ("quadratic", "chunk"):
        o, S, grads = run(inputs, form, chunk_size, grad_out)
        torch.testing.assert_close(o, ref[0], rtol=rtol, atol=atol)
        torch.testing.assert_close(S, ref[1], rtol=rtol, atol=atol)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref[2][name], rtol=rtol, atol=atol, msg=lambda m, n=name: f"d{n}: {m}")


@settings(max_examples=25, deadline=None)
@given(p=shapes, chunk_size=st.integers(1, 8))
def test_forms_and_gradients_agree_in_float64(p, chunk_size):
    check_forms_agree(p, chunk_size, torch.float64, rtol=1e-9, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(p=shapes, chunk_size=st.sampled_from([4, 8, 16]))
def test_forms_and_gradients_agree_in_float32(p, chunk_size):
    check_forms_agree(p, chunk_size, torch.float32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gate,bonus", [("scalar", False), ("vector", True)])
def test_strong_decay_over_thousands_of_steps_stays_exact_in_float32(gate, bonus):
    """Log decay near -5 per step over 2000 steps: a cumulative sum reaches -10000, whose exp (or its
    inverse) would under- or overflow; the chunk form never forms it. float32 chunk and quadratic
    against a float64 recurrence."""
    T, Dk = 2000, 2
    inputs = make(0, 1, 1, T, Dk, 2, gate, 1.0, bonus, True, torch.float64)
    gen = torch.Generator().manual_seed(2)
    inputs["log_decay"] = -5 + 0.5 * torch.rand(inputs["log_decay"].shape, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        o_ref, S_ref = linear_recurrence(**inputs, form="recurrent")
    f32 = {n: t.float() for n, t in inputs.items()}
    f32["log_decay"].requires_grad_(True)
    for form in ("chunk", "quadratic"):
        o, S = linear_recurrence(**f32, form=form, chunk_size=64)
        torch.testing.assert_close(o.double(), o_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(S.double(), S_ref, rtol=1e-4, atol=1e-4)
        (grad,) = torch.autograd.grad(o.sum() + S.sum(), f32["log_decay"])
        assert torch.isfinite(grad).all()


def test_extreme_vector_decay_neither_overflows_nor_produces_nan():
    inputs = make(3, 1, 2, 40, 3, 2, "vector", 1.0, False, True, torch.float32)
    inputs["log_decay"] = torch.full_like(inputs["log_decay"], -200.0)
    for n in inputs:
        inputs[n].requires_grad_(True)
    o, S = linear_recurrence(**inputs, form="chunk", chunk_size=16)
    o.sum().backward()
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert all(torch.isfinite(t.grad).all() for t in inputs.values())
    # each step forgets everything before it: o_t = k_t v_tᵀ q_t
    expected = (inputs["q"] * inputs["k"]).sum(-1, keepdim=True) * inputs["v"]
    torch.testing.assert_close(o, expected.detach())


@settings(max_examples=20, deadline=None)
@given(p=shapes, form=st.sampled_from(FORMS), split=st.floats(0, 1), chunk_size=st.integers(1, 8))
def test_state_carried_across_a_split_equals_one_pass(p, form, split, chunk_size):
    inputs = make(**p, dtype=torch.float64)
    T = p["T"]
    t = int(split * T)
    o, S = linear_recurrence(**inputs, form=form, chunk_size=chunk_size)

    def part(sl, state):
        kw = {n: (x[:, :, sl] if x.dim() >= 3 and n != "initial_state" else x) for n, x in inputs.items()
              if n != "initial_state"}
        return linear_recurrence(**kw, initial_state=state, form=form, chunk_size=chunk_size)

    o1, S1 = part(slice(0, t), inputs.get("initial_state"))
    o2, S2 = part(slice(t, T), S1)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S2, S, rtol=1e-10, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(p=shapes, form=st.sampled_from(FORMS), chunk_size=st.integers(1, 8), data=st.data())
def test_padding_changes_neither_real_outputs_nor_the_final_state(p, form, chunk_size, data):
    """Padded steps anywhere in the sequence are no-ops: each row equals the run on its real tokens."""
    inputs = make(**p, dtype=torch.float64)
    B, T = p["B"], p["T"]
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T),
                                           min_size=B, max_size=B)))
    o, S = linear_recurrence(**inputs, padding_mask=mask, form=form, chunk_size=chunk_size)
    for b in range(B):
        real = mask[b]
        kw = {n: (x[b:b + 1, :, real] if n in ("q", "k", "v", "log_decay") else x[b:b + 1] if n == "initial_state"
                  else x) for n, x in inputs.items()}
        ob, Sb = linear_recurrence(**kw, form="recurrent")
        torch.testing.assert_close(o[b:b + 1, :, real], ob, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(S[b:b + 1], Sb, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_hand_checked_scalar_decay_and_bonus(form):
    """Dk = Dv = 1, three steps, decays a_t: o_3 = q_3 (k_3 v_3 + a_3 k_2 v_2 + a_3 a_2 k_1 v_1);
    with a bonus u (RWKV: the query reads S_2), o_3 = q_3 (u k_3 v_3 + k_2 v_2 + a_2 k_1 v_1)."""
    q, k, v = (torch.tensor(x, dtype=torch.float64).view(1, 1, 3, 1) for x in
               ([1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [4.0, 1.0, -2.0]))
    a = torch.tensor([0.5, 0.25, 0.8], dtype=torch.float64)
    o, S = linear_recurrence(q, k, v, log_decay=a.log().view(1, 1, 3), form=form, chunk_size=2)
    assert o[0, 0, 2, 0].item() == pytest.approx(3 * (2 * -2 + 0.8 * -1 * 1 + 0.8 * 0.25 * 0.5 * 4))
    assert S.item() == pytest.approx(2 * -2 + 0.8 * -1 * 1 + 0.8 * 0.25 * 0.5 * 4)
    u = torch.tensor([[3.0]], dtype=torch.float64)
    o, _ = linear_recurrence(q, k, v, log_decay=a.log().view(1, 1, 3), bonus=u, form=form, chunk_size=2)
    assert o[0, 0, 2, 0].item() == pytest.approx(3 * (3 * 2 * -2 + -1 * 1 + 0.25 * 0.5 * 4))
    assert o[0, 0, 0, 0].item() == pytest.approx(1 * 3 * 0.5 * 4)


def test_segsum_sums_segments():
    x = torch.tensor([1.0, 2.0, 4.0])
    out = segsum(x)
    assert out[2, 0] == 6 and out[2, 1] == 4 and out[1, 1] == 0 and out[0, 1] == float("-inf")


def test_bad_shapes_are_clear_errors():
    q = torch.randn(1, 2, 5, 3)
    with pytest.raises(TrevoError, match="log_decay must be"):
        linear_recurrence(q, q, q, log_decay=torch.zeros(1, 2, 5, 2))
    with pytest.raises(TrevoError, match="bonus must be"):
        linear_recurrence(q, q, q, bonus=torch.zeros(3))
    with pytest.raises(TrevoError, match="unknown form"):
        linear_recurrence(q, q, q, form="fast")
    with pytest.raises(TrevoError, match="initial_state"):
        linear_recurrence(q, q, q, initial_state=torch.zeros(1, 2, 3, 4))


def test_vector_decay_with_sub_chunks_matches_the_reference_on_larger_chunks():
    """Chunk sizes with several sub-chunks (C = 16 → sub-chunks of 4) against the quadratic form."""
    inputs = make(5, 2, 2, 50, 4, 3, "vector", 1.0, True, True, torch.float64)
    inputs["log_decay"] = F.logsigmoid(torch.randn_like(inputs["log_decay"]))
    ref = linear_recurrence(**inputs, form="quadratic")
    for C in (12, 16, 32):
        out = linear_recurrence(**inputs, form="chunk", chunk_size=C)
        torch.testing.assert_close(out[0], ref[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out[1], ref[1], rtol=1e-10, atol=1e-10)


# The value-side decay (ABC / Gated Slot Attention's first pass).

def value_gated_loop(q, k, v, log_decay, value_log_decay, S):
    """float64 reference: S_t = diag(a_t) S_{t-1} diag(b_t) + k_t v_tᵀ, o_t = S_tᵀ q_t, one step at a time."""
    outs = []
    for t in range(q.shape[2]):
        a = torch.ones_like(q[:, :, t]) if log_decay is None else log_decay[:, :, t].exp()
        a = a[..., None] if a.dim() == 2 else a
        b = value_log_decay[:, :, t].exp()
        S = a[..., :, None] * S * b[..., None, :] + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t], S))
    return torch.stack(outs, dim=2), S


@pytest.mark.parametrize("key_gate", ["none", "scalar", "vector"])
def test_value_side_decay_equals_its_loop_in_every_form(key_gate):
    torch.manual_seed(0)
    B, H, T, Dk, Dv = 2, 2, 23, 3, 5
    q, k, v = torch.randn(B, H, T, Dk).double(), torch.randn(B, H, T, Dk).double(), torch.randn(B, H, T, Dv).double()
    gv = F.logsigmoid(torch.randn(B, H, T, Dv).double() + 1)
    gk = None if key_gate == "none" else F.logsigmoid(torch.randn(*((B, H, T) if key_gate == "scalar"
                                                                   else (B, H, T, Dk))).double() + 2)
    S0 = torch.randn(B, H, Dk, Dv).double()
    o_ref, S_ref = value_gated_loop(q, k, v, gk, gv, S0)
    forms = ("quadratic", "recurrent") if key_gate == "vector" else FORMS
    for form in forms:
        for C in (1, 4, 7, 16):
            o, S = linear_recurrence(q, k, v, log_decay=gk, value_log_decay=gv, initial_state=S0, form=form,
                                     chunk_size=C)
            torch.testing.assert_close(o, o_ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-10)
    if key_gate == "vector":
        with pytest.raises(TrevoError, match="scalar log_decay on the key side"):
            linear_recurrence(q, k, v, log_decay=gk, value_log_decay=gv, form="chunk")


def test_value_side_decay_gradients_agree_and_padding_is_a_no_op():
    torch.manual_seed(1)
    B, H, T, Dk, Dv = 2, 1, 13, 2, 4
    leaves = [torch.randn(B, H, T, Dk).double(), torch.randn(B, H, T, Dk).double(), torch.randn(B, H, T, Dv).double(),
              F.logsigmoid(torch.randn(B, H, T, Dv).double()), torch.randn(B, H, Dk, Dv).double()]
    grads = {}
    for form in FORMS:
        xs = [x.clone().requires_grad_(True) for x in leaves]
        o, S = linear_recurrence(*xs[:3], value_log_decay=xs[3], initial_state=xs[4], form=form, chunk_size=4)
        grads[form] = torch.autograd.grad(o.square().sum() + S.sum(), xs)
    for form in ("quadratic", "chunk"):
        for g, r in zip(grads[form], grads["recurrent"], strict=True):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-10)
    mask = torch.rand(B, T) > 0.3
    q, k, v, gv, S0 = leaves
    o, S = linear_recurrence(q, k, v, value_log_decay=gv, initial_state=S0, padding_mask=mask, chunk_size=4)
    for b in range(B):
        real = mask[b]
        ob, Sb = value_gated_loop(q[b:b + 1, :, real], k[b:b + 1, :, real], v[b:b + 1, :, real], None,
                                  gv[b:b + 1, :, real], S0[b:b + 1])
        torch.testing.assert_close(o[b:b + 1, :, real], ob, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(S[b:b + 1], Sb, rtol=1e-10, atol=1e-10)


def test_strong_value_side_decay_stays_finite_and_exact_in_float32():
    torch.manual_seed(2)
    T = 1500
    q, k, v = torch.randn(1, 1, T, 2), torch.randn(1, 1, T, 2), torch.randn(1, 1, T, 3)
    gv = -5 + 0.5 * torch.rand(1, 1, T, 3)
    o_ref, S_ref = value_gated_loop(q.double(), k.double(), v.double(), None, gv.double(),
                                    torch.zeros(1, 1, 2, 3, dtype=torch.float64))
    for form in ("chunk", "quadratic"):
        o, S = linear_recurrence(q, k, v, value_log_decay=gv, form=form, chunk_size=64)
        torch.testing.assert_close(o.double(), o_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(S.double(), S_ref, rtol=1e-4, atol=1e-4)


def test_under_bf16_autocast_the_decays_and_the_state_stay_float32():
    torch.manual_seed(0)
    B, H, T, D = 1, 2, 512, 16
    q, k, v = (torch.randn(B, H, T, D) for _ in range(3))
    g = -torch.rand(B, H, T, D) * 0.02  # decays near 1: the state sums hundreds of steps
    ref, ref_state = linear_recurrence(q.double(), k.double(), v.double(), log_decay=g.double(), form="chunk",
                                       chunk_size=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o, state = linear_recurrence(q.bfloat16(), k.bfloat16(), v.bfloat16(), log_decay=g.bfloat16(), form="chunk",
                                     chunk_size=32)
    # everything in bfloat16, as before: the 16-bit reference the float32 state is measured against
    o16, state16 = linear_recurrence(q.bfloat16(), k.bfloat16(), v.bfloat16(), log_decay=g.bfloat16(),
                                     form="chunk", chunk_size=32)
    # the products too, and the output is handed on unrounded (float32): see linear_recurrence's comment
    assert state.dtype == o.dtype == torch.float32 and state16.dtype == torch.bfloat16
    err = (state.double() - ref_state).abs().max() / ref_state.abs().max()
    err16 = (state16.double() - ref_state).abs().max() / ref_state.abs().max()
    assert err < 0.01 and err < 0.75 * err16, (err, err16)  # measured: 0.0028 (the inputs' rounding) against 0.0062
    assert (o.double() - ref).abs().max() / ref.abs().max() < 0.01  # measured: 0.0028
