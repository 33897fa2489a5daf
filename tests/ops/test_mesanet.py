"""MesaNet's read-out o_t = G_tᵀ (H_t + Λ)⁻¹ q_t: conjugate gradient against torch.linalg.solve in a float64
loop; the forms agree; the system stays positive definite and the solve accurate from half-precision
inputs (the failure flash-linear-attention had in float16, its issue #1187)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.mesanet import conjugate_gradient, mesa_net


def make(seed, B=2, H=2, T=15, D=4, Dv=3, collinear=False):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    k = rnd(B, H, T, D)
    if collinear:  # every key nearly the same direction: H_t is close to rank one and large
        k = k[:, :, :1] + 1e-3 * k
    return {"q": F.normalize(rnd(B, H, T, D), dim=-1), "k": F.normalize(k, dim=-1), "v": rnd(B, H, T, Dv),
            "beta": torch.sigmoid(rnd(B, H, T)), "lamb": 0.25 + torch.rand(H, D, generator=gen, dtype=torch.float64),
            "log_decay": F.logsigmoid(rnd(B, H, T) + 3)}


def exact(q, k, v, beta, lamb, log_decay, initial_state=None):
    """The states by their recurrences and the read-out by an exact solve, token by token."""
    B, H, T, D = q.shape
    Hs = torch.zeros(B, H, D, D, dtype=q.dtype) if initial_state is None else initial_state[0]
    Gs = torch.zeros(B, H, D, v.shape[-1], dtype=q.dtype) if initial_state is None else initial_state[1]
    out = []
    for t in range(T):
        g, b = log_decay[:, :, t].exp()[..., None, None], beta[:, :, t, None, None]
        Hs = g * Hs + b * k[:, :, t, :, None] * k[:, :, t, None, :]
        Gs = g * Gs + b * k[:, :, t, :, None] * v[:, :, t, None, :]
        x = torch.linalg.solve(Hs + torch.diag_embed(lamb), q[:, :, t])
        out.append((x[..., None, :] @ Gs)[..., 0, :])
    return torch.stack(out, dim=2), Hs, Gs


@pytest.mark.parametrize("form", ["chunk", "quadratic", "recurrent"])
def test_enough_cg_steps_give_the_exact_least_squares_read_out(form):
    x = make(0)
    ref, Hs, Gs = exact(**x)
    o, (H_T, G_T) = mesa_net(**x, cg_steps=8, form=form, chunk_size=4)
    torch.testing.assert_close(o, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(H_T, Hs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(G_T, Gs, rtol=1e-10, atol=1e-12)


def test_forms_agree_for_few_cg_steps_and_a_split_carries_both_states():
    x = make(1)
    outs = [mesa_net(**x, cg_steps=2, form=f, chunk_size=4)[0] for f in ("chunk", "quadratic", "recurrent")]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-10, atol=1e-12)
    assert (outs[0] - exact(**x)[0]).abs().max() > 1e-3  # two steps are not yet the exact solve
    head = {n: (t[:, :, :6] if t.dim() > 2 else t) for n, t in x.items()}
    tail = {n: (t[:, :, 6:] if t.dim() > 2 else t) for n, t in x.items()}
    o1, state = mesa_net(**head, cg_steps=6)
    o2, _ = mesa_net(**tail, initial_state=state, cg_steps=6)
    torch.testing.assert_close(torch.cat([o1, o2], dim=2), mesa_net(**x, cg_steps=6)[0], rtol=1e-10, atol=1e-12)


def test_conjugate_gradient_solves_a_positive_definite_system_in_n_steps():
    gen = torch.Generator().manual_seed(2)
    M = torch.randn(3, 6, 6, generator=gen, dtype=torch.float64)
    A = M @ M.transpose(-1, -2) + 0.1 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda p: (A @ p[..., None])[..., 0], b, 6)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_conjugate_gradient_stops_once_every_system_has_converged():
    """A = 2I is solved by the first step; the other 29 are skipped, not run on a zero residual."""
    b = torch.randn(4, 5, dtype=torch.float64)
    calls = []

    def apply(p):
        calls.append(p)
        return 2 * p

    torch.testing.assert_close(conjugate_gradient(apply, b, 30), b / 2)
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_stay_well_posed(dtype):
    """Long sequences of nearly collinear keys make H_t large and nearly singular; from float16 or
    bfloat16 inputs the system is built and solved in float32, so H_t + Λ keeps eigenvalues >= min λ,
    CG converges and the output matches the float64 solve of the same (rounded) inputs."""
    x = make(3, B=1, H=2, T=400, D=8, collinear=True)
    x["log_decay"] = torch.zeros_like(x["log_decay"])  # no forgetting: H_t grows to ~T β
    half = {n: (t.to(dtype) if n != "lamb" else t.float()) for n, t in x.items()}
    o, (H_T, _) = mesa_net(**half, cg_steps=30)
    assert o.dtype == dtype and torch.isfinite(o).all()
    assert H_T.dtype == torch.float32
    smallest = torch.linalg.eigvalsh(H_T.double() + torch.diag_embed(x["lamb"])).min()
    assert smallest >= x["lamb"].min() - 1e-3
    ref, _, _ = exact(**{n: t.double() for n, t in half.items()})
    err = (o.double() - ref).abs().max() / ref.abs().max()
    assert err < 2e-2, f"relative error {err:.2e} of the half-precision MesaNet read-out"


def test_bad_shapes_are_clear_errors():
    x = make(4)
    with pytest.raises(TrevoError, match="lamb must be"):
        mesa_net(**{**x, "lamb": x["lamb"][:, :2]})
    with pytest.raises(TrevoError, match="cg_steps"):
        mesa_net(**x, cg_steps=0)
