"""The delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet), chunked with the WY / UT transform.

Schlag et al., "Linear Transformers Are Secretly Fast Weight Programmers" (arXiv:2102.11174), eq. 17-20;
Yang et al., "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"
(arXiv:2406.06484), §3; Yang et al., "Gated Delta Networks" (arXiv:2412.06464), eq. 10.

Layout as in ``trevo.ops.linear_recurrence``: q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, beta and
log_decay ``[B, H, T]``, state ``[B, H, Dk, Dv]`` (the transpose of the papers' ``Dv × Dk`` matrix):

    S_t = g_t (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,      o_t = scale · S_tᵀ q_t

with g_t = exp(log_decay_t) (1 for plain DeltaNet). Equivalently S_t = g_t S_{t-1} + k_t u_tᵀ with the
"new value" u_t = β_t (v_t − g_t S_{t-1}ᵀ k_t): the write replaces what the memory held under k_t.

Chunked form: inside a chunk, with γ_t the cumulative log decay from the chunk start and S_0 the state
entering it, the new values solve the unit lower-triangular system

    (I + A) U = β V − diag(β e^γ) K S_0,      A_ti = β_t e^{γ_t − γ_i} k_tᵀ k_i  (i < t)

so U = T(βV) − T(β e^γ K) S_0 with T = (I + A)⁻¹ (the UT transform; W = T(β e^γ K) is the WY
factor). Then o_t = e^{γ_t} S_0ᵀ q_t + Σ_{i<=t} e^{γ_t − γ_i} (q_tᵀ k_i) u_i and
S_C = e^{γ_C} S_0 + Σ_i e^{γ_C − γ_i} k_i u_iᵀ. Every exponent is <= 0. ``quadratic`` is the same
transform over the whole sequence as one chunk (the materialised O(T²) form).
"""

from __future__ import annotations

import math

import torch

from trevo.errors import TrevoError

FORMS = ("quadratic", "chunk", "recurrent")


def delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, *,
               log_decay: torch.Tensor | None = None, initial_state: torch.Tensor | None = None,
               padding_mask: torch.Tensor | None = None, scale: float = 1.0, form: str = "chunk",
               chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the (gated) delta rule. Returns (o ``[B, H, T, Dv]``, final state ``[B, H, Dk, Dv]``).
    Padded steps (``padding_mask`` False) write nothing and do not decay. ``form="auto"`` is
    recurrent for one token, chunk otherwise."""
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise TrevoError(f"expected q, k [B, H, T, Dk] and v [B, H, T, Dv]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    for name, x in (("beta", beta), ("log_decay", log_decay)):
        if x is not None and x.shape != (B, H, T):
            raise TrevoError(f"{name} must be [B, H, T] = {(B, H, T)}, got {tuple(x.shape)}")
    g = q.new_zeros(B, H, T) if log_decay is None else log_decay.to(q.dtype)
    beta = beta.to(q.dtype)
    if padding_mask is not None:
        if padding_mask.shape != (B, T):
            raise TrevoError(f"padding_mask must be [B, T] = {(B, T)}, got {tuple(padding_mask.shape)}")
        m = padding_mask[:, None, :].to(q.dtype)
        g, beta, k = g * m, beta * m, k * m[..., None]
    if initial_state is None:
        S0 = q.new_zeros(B, H, Dk, Dv)
    elif initial_state.shape != (B, H, Dk, Dv):
        raise TrevoError(f"initial_state must be [B, H, Dk, Dv] = {(B, H, Dk, Dv)}, "
                         f"got {tuple(initial_state.shape)}")
    else:
        S0 = initial_state.to(q.dtype)
    if form == "auto":
        form = "recurrent" if T == 1 else "chunk"
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of auto, {', '.join(FORMS)}")
    if T == 0:
        return v.new_zeros(v.shape), S0
    if form == "recurrent":
        o, S = _recurrent(q, k, v, beta, g, S0)
    elif form in ("chunk", "quadratic"):
        if chunk_size < 1:
            raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
        o, S = _chunk(q, k, v, beta, g, S0, T if form == "quadratic" else chunk_size)
    return o * scale, S


def _recurrent(q, k, v, beta, g, S):
    out = []
    # unbind, not indexing: the gradient of x[:, :, t] is a zero tensor of x's full size per step
    for qt, kt, vt, gt, bt in zip(q.unbind(2), k.unbind(2), v.unbind(2), g.unbind(2), beta.unbind(2), strict=True):
        S = torch.exp(gt)[..., None, None] * S
        u = bt[..., None] * (vt - (kt[..., None, :] @ S)[..., 0, :])
        S = S + kt[..., :, None] * u[..., None, :]
        out.append((qt[..., None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


def _chunk(q, k, v, beta, g, S0, C):
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    N = -(-T // C)
    pad = N * C - T
    if pad:  # beta = 0 and log decay = 0: padded steps are no-ops
        q, k, v = (torch.cat([x, x.new_zeros(B, H, pad, x.shape[-1])], dim=2) for x in (q, k, v))
        beta, g = (torch.cat([x, x.new_zeros(B, H, pad)], dim=2) for x in (beta, g))
    q, k, v = (x.reshape(B, H, N, C, x.shape[-1]) for x in (q, k, v))
    beta, g = beta.reshape(B, H, N, C), g.reshape(B, H, N, C)
    gam = g.cumsum(dim=-1)
    idx = torch.arange(C, device=q.device)
    diff = gam[..., :, None] - gam[..., None, :]
    strict = torch.exp(diff.masked_fill(~(idx[:, None] > idx[None, :]), -math.inf))
    incl = torch.exp(diff.masked_fill(~(idx[:, None] >= idx[None, :]), -math.inf))
    kk = k @ k.transpose(-1, -2)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    IA = eye + beta[..., :, None] * kk * strict  # I + A, unit lower triangular
    rhs = torch.cat([beta[..., None] * v, (beta * torch.exp(gam))[..., None] * k], dim=-1)
    sol = torch.linalg.solve_triangular(IA, rhs, upper=False, unitriangular=True)
    U0, W = sol[..., :Dv], sol[..., Dv:]  # U = U0 − W S_0
    Aqk = (q @ k.transpose(-1, -2)) * incl
    q_in = q * torch.exp(gam)[..., None]
    last = gam[..., -1:]
    k_out = k * torch.exp(last - gam)[..., None]
    decay = torch.exp(last)[..., None]  # [B, H, N, 1, 1]
    outs = []
    S = S0
    # unbind, not x[:, :, n]: indexing's gradient is a full-size zero tensor per chunk (quadratic in T).
    per_chunk = (t.unbind(dim=2) for t in (U0, W, q_in, Aqk, decay, k_out))
    for u0, w, qi, aqk, dec, ko in zip(*per_chunk, strict=True):
        U = u0 - w @ S
        outs.append(qi @ S + aqk @ U)
        S = dec * S + ko.transpose(-1, -2) @ U
    o = torch.stack(outs, dim=2).reshape(B, H, N * C, Dv)[:, :, :T]
    return o, S
