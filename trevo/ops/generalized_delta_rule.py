"""The generalized delta rule: a linear recurrence whose transition is diagonal plus rank one (DPLR).

Peng et al., "RWKV-7 'Goose' with Expressive Dynamic State Evolution" (arXiv:2503.14456), the
generalized delta rule; the same recurrence as flash-linear-attention's ``dplr_delta_rule``.
Layout as in ``trevo.ops.delta_rule``: q, k, a, b ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, state
``[B, H, Dk, Dv]``, log_decay ``[B, H, T]`` (a scalar per head) or ``[B, H, T, Dk]`` (per key channel):

    S_t = (diag(exp(log_decay_t)) + b_t a_tᵀ) S_{t-1} + k_t v_tᵀ,        o_t = scale · S_tᵀ q_t

RWKV-7's transition diag(w_t) − κ̂_tᵀ(a_t ⊙ κ̂_t) (in the paper's row-vector layout) is a = −κ̂, b = κ̂ ⊙ a;
the delta rule (I − β k pᵀ) D is a = D p, b = −β k with the write key β k.

Chunked form: inside a chunk with γ_t the inclusive cumulative log decay (γ_{t−1} the exclusive one)
and S_0 the state entering it, the low-rank reads u_t = a_tᵀ S_{t-1} solve the unit lower-triangular system

    (I − A_ab) U = A_ak V + (A ⊙ e^{γ_{t−1}}) S_0,     (A_xy)_ti = Σ_d x_td y_id e^{γ_{t−1,d} − γ_{i,d}}  (i < t)

and then o_t = (q_t ⊙ e^{γ_t})ᵀ S_0 + Σ_{i<=t} [(A_qk)_ti v_i + (A_qb)_ti u_i] (exponents γ_t − γ_i),
S_C = e^{γ_C} ⊙ S_0 + Σ_i e^{γ_C − γ_i} ⊙ (k_i v_iᵀ + b_i u_iᵀ). Every exponent taken is <= 0 (the pairwise
products come from ``trevo.ops.delta_rule.decayed_gram``). ``quadratic`` is one chunk over the whole
sequence; ``recurrent`` the step-by-step reference.
"""

from __future__ import annotations

import torch

from trevo.errors import TrevoError
from trevo.ops.delta_rule import FORMS, check_qkv, chunked, decay_of, decayed_gram, form_of, mask_of, state_of

__all__ = ["FORMS", "generalized_delta_rule"]


def generalized_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *,
                           log_decay: torch.Tensor | None = None, initial_state: torch.Tensor | None = None,
                           padding_mask: torch.Tensor | None = None, scale: float = 1.0, form: str = "chunk",
                           chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the DPLR recurrence (see the module docstring). Returns (o ``[B, H, T, Dv]``, final state
    ``[B, H, Dk, Dv]``). Padded steps (``padding_mask`` False) neither write, decay nor transform the state.
    ``form="auto"`` is recurrent for one token, chunk otherwise."""
    check_qkv(q, k, v)
    B, H, T, Dk = q.shape
    for name, x in (("a", a), ("b", b)):
        if x.shape != k.shape:
            raise TrevoError(f"{name} must have the keys' shape {tuple(k.shape)}, got {tuple(x.shape)}")
    g = decay_of(log_decay, q)
    a, b = a.to(q.dtype), b.to(q.dtype)
    if padding_mask is not None:
        m = mask_of(padding_mask, B, T, q.dtype)[..., None]
        g, k, a = g * m, k * m, a * m
    S0 = state_of(initial_state, q, v.shape[-1])
    form = form_of(form, T)
    if T == 0:
        return v.new_zeros(v.shape), S0
    if form == "recurrent":
        o, S = _recurrent(q, k, v, a, b, g, S0)
    else:
        if chunk_size < 1:
            raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
        o, S = _chunk(q, k, v, a, b, g, S0, T if form == "quadratic" else chunk_size)
    return o * scale, S


def _recurrent(q, k, v, a, b, g, S):
    out = []
    # unbind, not indexing: the gradient of x[:, :, t] is a zero tensor of x's full size per step
    steps = zip(q.unbind(2), k.unbind(2), v.unbind(2), a.unbind(2), b.unbind(2), g.unbind(2), strict=True)
    for qt, kt, vt, at, bt, gt in steps:
        read = (at[..., None, :] @ S)[..., 0, :]  # a_tᵀ S_{t-1}
        S = torch.exp(gt)[..., None] * S + bt[..., :, None] * read[..., None, :] + kt[..., :, None] * vt[..., None, :]
        out.append((qt[..., None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


def _chunk(q, k, v, a, b, g, S0, C):
    B, H, T, _ = q.shape
    Dv = v.shape[-1]
    q, k, v, a, b, g = (chunked(x, C) for x in (q, k, v, a, b, g))  # padded steps: zero k, a, log decay
    gam = g.cumsum(dim=-2)  # [B, H, N, C, G]
    # The exclusive cumulative decay by shifting (γ_t − g_t would round differently from γ_{t−1}).
    prev = torch.cat([torch.zeros_like(gam[..., :1, :]), gam[..., :-1, :]], dim=-2)
    A_ab = decayed_gram(a, b, prev, gam, strict=True)
    A_ak = decayed_gram(a, k, prev, gam, strict=True)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = torch.cat([A_ak @ v, a * torch.exp(prev)], dim=-1)
    sol = torch.linalg.solve_triangular(eye - A_ab, rhs, upper=False, unitriangular=True)
    U0, W = sol[..., :Dv], sol[..., Dv:]  # U = U0 + W S_0
    Aqk = decayed_gram(q, k, gam, gam, strict=False)
    Aqb = decayed_gram(q, b, gam, gam, strict=False)
    q_in = q * torch.exp(gam)
    last = gam[..., -1:, :]
    k_out, b_out = k * torch.exp(last - gam), b * torch.exp(last - gam)
    decay = torch.exp(last).transpose(-1, -2)  # [B, H, N, G, 1]
    o_kv = Aqk @ v
    kv = k_out.transpose(-1, -2) @ v
    outs = []
    S = S0
    # unbind, not x[:, :, n]: indexing's gradient is a full-size zero tensor per chunk (quadratic in T).
    per_chunk = (t.unbind(dim=2) for t in (U0, W, q_in, o_kv, Aqb, decay, kv, b_out))
    for u0, w, qi, okv, aqb, dec, kvc, bo in zip(*per_chunk, strict=True):
        U = u0 + w @ S
        outs.append(qi @ S + okv + aqb @ U)
        S = dec * S + kvc + bo.transpose(-1, -2) @ U
    o = torch.stack(outs, dim=2).reshape(B, H, -1, Dv)[:, :, :T]
    return o, S
