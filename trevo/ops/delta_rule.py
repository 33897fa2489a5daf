"""The delta rule and its gated forms (DeltaNet, Gated DeltaNet, Kimi Delta Attention, Gated DeltaNet-2,
Comba), chunked with the WY / UT transform.

Schlag et al., "Linear Transformers Are Secretly Fast Weight Programmers" (arXiv:2102.11174), eq. 17-20;
Yang et al., "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"
(arXiv:2406.06484), §3; Yang et al., "Gated Delta Networks" (arXiv:2412.06464), eq. 10; Kimi Team,
"Kimi Linear" (arXiv:2510.26692), the KDA recurrence; Hatamizadeh et al., "Gated DeltaNet-2"
(arXiv:2605.22791); Hu et al., "Comba" (arXiv:2506.02475).

Layout as in ``trevo.ops.linear_recurrence``: q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, beta ``[B, H, T]``,
state ``[B, H, Dk, Dv]`` (the transpose of the papers' ``Dv × Dk`` matrix). With D_t = diag(exp(log_decay_t))
(a scalar per head, ``[B, H, T]``, or a vector over the key channels, ``[B, H, T, Dk]``; identity when None)
and p_t the erase key (``erase_key``, k_t when None):

    S_t = (I − β_t k_t p_tᵀ) D_t S_{t-1} + β_t k_t v_tᵀ,      o_t = scale · S_tᵀ q_t

Equivalently S_t = D_t S_{t-1} + k_t u_tᵀ with the "new value" u_t = β_t (v_t − (D_t S_{t-1})ᵀ p_t): the
write replaces what the decayed memory held under p_t. DeltaNet is D = I, p = k; Gated DeltaNet a scalar
D; KDA a vector D; Gated DeltaNet-2 a vector D, p = b ⊙ k (the erase gate) and v pre-multiplied by the
write gate (β = 1); Comba a scalar D and p = b·k.

Chunked form: inside a chunk, with γ_t the cumulative log decay from the chunk start (per channel for a
vector decay) and S_0 the state entering it, the new values solve the unit lower-triangular system

    (I + A) U = β V − diag(β) (P ⊙ e^γ) S_0,      A_ti = β_t Σ_d p_td k_id e^{γ_td − γ_id}  (i < t)

so U = T(βV) − T(β P e^γ) S_0 with T = (I + A)⁻¹ (the UT transform; W = T(β P e^γ) is the WY factor).
Then o_t = (q_t ⊙ e^{γ_t})ᵀ S_0 + Σ_{i<=t} [Σ_d q_td k_id e^{γ_td − γ_id}] u_i and
S_C = e^{γ_C} ⊙ S_0 + Σ_i (k_i ⊙ e^{γ_C − γ_i}) u_iᵀ. Every exponent taken is <= 0: a vector decay's
pairwise products are built per sub-chunk (``decayed_gram``). ``quadratic`` is the same transform over
the whole sequence as one chunk (the materialised O(T²) form).
"""

from __future__ import annotations

import math

import torch

from trevo.errors import TrevoError
from trevo.ops import triton as triton_kernels

FORMS = ("quadratic", "chunk", "recurrent")


def delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, *,
               log_decay: torch.Tensor | None = None, erase_key: torch.Tensor | None = None,
               initial_state: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None,
               scale: float = 1.0, form: str = "chunk", chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the (gated) delta rule. Returns (o ``[B, H, T, Dv]``, final state ``[B, H, Dk, Dv]``).
    Padded steps (``padding_mask`` False) write nothing and do not decay. ``form="auto"`` is
    recurrent for one token, chunk otherwise."""
    check_qkv(q, k, v)
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    if beta.shape != (B, H, T):
        raise TrevoError(f"beta must be [B, H, T] = {(B, H, T)}, got {tuple(beta.shape)}")
    if erase_key is not None and erase_key.shape != k.shape:
        raise TrevoError(f"erase_key must have the keys' shape {tuple(k.shape)}, got {tuple(erase_key.shape)}")
    g = decay_of(log_decay, q)
    p = k if erase_key is None else erase_key.to(q.dtype)
    beta = beta.to(q.dtype)
    if padding_mask is not None:
        m = mask_of(padding_mask, B, T, q.dtype)
        g, beta, k = g * m[..., None], beta * m, k * m[..., None]
    S0 = state_of(initial_state, q, Dv)
    form = form_of(form, T)
    if T == 0:
        return v.new_zeros(v.shape), S0
    if form == "recurrent":
        o, S = _recurrent(q, k, v, beta, g, p, S0)
    else:
        if chunk_size < 1:
            raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
        # the kernels take the erase key equal to the key and a scalar decay (DeltaNet, Gated DeltaNet)
        if (form == "chunk" and erase_key is None and g.shape[-1] == 1 and triton_kernels.takes_chunk(chunk_size)
                and triton_kernels.enabled(q, k, v, beta, g, S0)):
            from trevo.ops.triton.delta_rule import chunk_delta_rule

            o, S = chunk_delta_rule(q, k, v, beta, g[..., 0], S0, chunk_size)
            return (o * scale).to(v.dtype), S
        o, S = _chunk(q, k, v, beta, g, p, S0, T if form == "quadratic" else chunk_size)
    return o * scale, S


def delta_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, *,
                  log_decay: torch.Tensor | None = None, initial_state: torch.Tensor | None = None,
                  padding_mask: torch.Tensor | None = None, scale: float = 1.0, form: str = "chunk",
                  chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated DeltaProduct (Siems et al., arXiv:2502.10297): n delta-rule (generalized Householder)
    steps per token, S_t = g_t Π_{j=1..n} (I − β_tj k_tj k_tjᵀ) S_{t-1} + (the n writes), read once.

    k ``[B, H, T, n, Dk]``, v ``[B, H, T, n, Dv]``, beta ``[B, H, T, n]``; q ``[B, H, T, Dk]`` and
    log_decay ``[B, H, T]`` or ``[B, H, T, Dk]`` once per token. It is the delta rule on the interleaved
    sequence of n·T steps, the decay at each token's first step and the read after its last
    (``chunk_size`` counts interleaved steps)."""
    if k.dim() != 5 or q.dim() != 4 or k.shape[:3] + k.shape[4:] != q.shape or v.shape[:4] != k.shape[:4]:
        raise TrevoError(f"delta_product expects q [B, H, T, Dk], k [B, H, T, n, Dk], v [B, H, T, n, Dv]; got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, T, n, Dk = k.shape
    if beta.shape != (B, H, T, n):
        raise TrevoError(f"beta must be [B, H, T, n] = {(B, H, T, n)}, got {tuple(beta.shape)}")
    g = decay_of(log_decay, q)  # [B, H, T, G]
    first = torch.zeros(n, dtype=q.dtype, device=q.device)
    first[0] = 1
    g = (g[:, :, :, None, :] * first[:, None]).flatten(2, 3)  # the decay at each token's first step
    if g.shape[-1] == 1:
        g = g[..., 0]
    reads = torch.zeros(n, dtype=q.dtype, device=q.device)
    reads[-1] = 1
    q = (q[:, :, :, None, :] * reads[:, None]).flatten(2, 3)  # read after the last step only
    mask = None if padding_mask is None else padding_mask.repeat_interleave(n, dim=1)
    o, S = delta_rule(q, k.flatten(2, 3), v.flatten(2, 3), beta.flatten(2, 3), log_decay=g,
                      initial_state=initial_state, padding_mask=mask, scale=scale, form=form,
                      chunk_size=chunk_size)
    return o[:, :, n - 1::n], S


# Input checks shared with trevo.ops.generalized_delta_rule.
def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise TrevoError(f"expected q, k [B, H, T, Dk] and v [B, H, T, Dv]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")


def decay_of(log_decay: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor:
    """The log decay as ``[B, H, T, G]`` with G = 1 (scalar per head) or Dk (per key channel)."""
    B, H, T, Dk = q.shape
    if log_decay is None:
        return q.new_zeros(B, H, T, 1)
    if log_decay.shape == (B, H, T):
        return log_decay.to(q.dtype)[..., None]
    if log_decay.shape == (B, H, T, Dk):
        return log_decay.to(q.dtype)
    raise TrevoError(f"log_decay must be [B, H, T] = {(B, H, T)} or [B, H, T, Dk] = {(B, H, T, Dk)}, "
                     f"got {tuple(log_decay.shape)}")


def mask_of(padding_mask: torch.Tensor, B: int, T: int, dtype: torch.dtype) -> torch.Tensor:
    if padding_mask.shape != (B, T):
        raise TrevoError(f"padding_mask must be [B, T] = {(B, T)}, got {tuple(padding_mask.shape)}")
    return padding_mask[:, None, :].to(dtype)


def state_of(initial_state: torch.Tensor | None, q: torch.Tensor, Dv: int) -> torch.Tensor:
    B, H, _, Dk = q.shape
    if initial_state is None:
        return q.new_zeros(B, H, Dk, Dv)
    if initial_state.shape != (B, H, Dk, Dv):
        raise TrevoError(f"initial_state must be [B, H, Dk, Dv] = {(B, H, Dk, Dv)}, "
                         f"got {tuple(initial_state.shape)}")
    return initial_state.to(q.dtype)


def form_of(form: str, T: int) -> str:
    if form == "auto":
        return "recurrent" if T == 1 else "chunk"
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of auto, {', '.join(FORMS)}")
    return form


def chunked(x: torch.Tensor, C: int) -> torch.Tensor:
    """``[B, H, T, D]`` zero-padded to a multiple of C and viewed as ``[B, H, N, C, D]``."""
    B, H, T, D = x.shape
    pad = -T % C
    if pad:
        x = torch.cat([x, x.new_zeros(B, H, pad, D)], dim=2)
    return x.reshape(B, H, -1, C, D)


def sub_chunk(C: int) -> int:
    """The divisor of C closest to √C: balances the two vector-decay costs (T·C²/c and T·c·Dk)."""
    divisors = [d for d in range(1, C + 1) if C % d == 0]
    return min(divisors, key=lambda d: abs(d - math.sqrt(C)))


def decayed_gram(x: torch.Tensor, y: torch.Tensor, bx: torch.Tensor, by: torch.Tensor, *,
                 strict: bool) -> torch.Tensor:
    """``A[..., t, i] = Σ_d x_td y_id exp(bx_td − by_id)`` for i < t (``strict``) or i <= t, 0 elsewhere.

    x, y ``[..., C, D]``; bx, by ``[..., C, G]`` (G = 1 or D) are cumulative log decays such that every
    exponent on the causal pairs is <= 0. A vector decay is split into sub-chunks of c ≈ √C: between
    sub-chunks both sides are taken relative to by at the last step before the query's sub-chunk (two
    factors <= 0); inside a sub-chunk the decay is applied elementwise (``[..., c, c, D]``)."""
    C = x.shape[-2]
    idx = torch.arange(C, device=x.device)
    mask = idx[:, None] > idx[None, :] if strict else idx[:, None] >= idx[None, :]
    if bx.shape[-1] == 1:
        diff = (bx[..., :, None, 0] - by[..., None, :, 0]).masked_fill(~mask, -math.inf)
        return (x @ y.transpose(-1, -2)) * torch.exp(diff)
    c = sub_chunk(C)
    nS, D, lead = C // c, x.shape[-1], x.shape[:-2]
    ref = torch.cat([torch.zeros_like(by[..., :1, :]), by[..., c - 1:C - 1:c, :]], dim=-2)  # [..., nS, D]
    x_off = x * torch.exp(bx - ref.repeat_interleave(c, dim=-2))
    sub = idx // c
    before = sub[None, :] < torch.arange(nS, device=x.device)[:, None]  # [nS, C]: key i before sub-chunk I
    expo = (ref[..., :, None, :] - by[..., None, :, :]).masked_fill(~before[..., None], -math.inf)
    y_off = y[..., None, :, :] * torch.exp(expo)  # [..., nS, C, D]
    A = (x_off.reshape(*lead, nS, c, D) @ y_off.transpose(-1, -2)).reshape(*lead, C, C)
    xs, ys = x.reshape(*lead, nS, c, D), y.reshape(*lead, nS, c, D)
    bxs, bys = bx.reshape(*lead, nS, c, D), by.reshape(*lead, nS, c, D)
    inner = mask[:c, :c]
    expo = (bxs[..., :, None, :] - bys[..., None, :, :]).masked_fill(~inner[..., None], -math.inf)
    diag = torch.einsum("...td,...id,...tid->...ti", xs, ys, torch.exp(expo))  # [..., nS, c, c]
    eye = torch.eye(nS, dtype=torch.bool, device=x.device)
    block = (diag[..., :, :, None, :] * eye[:, None, :, None]).reshape(*lead, C, C)  # block-diagonal
    return A + block


def _recurrent(q, k, v, beta, g, p, S):
    out = []
    # unbind, not indexing: the gradient of x[:, :, t] is a zero tensor of x's full size per step
    steps = zip(q.unbind(2), k.unbind(2), v.unbind(2), g.unbind(2), beta.unbind(2), p.unbind(2), strict=True)
    for qt, kt, vt, gt, bt, pt in steps:
        S = torch.exp(gt)[..., None] * S
        u = bt[..., None] * (vt - (pt[..., None, :] @ S)[..., 0, :])
        S = S + kt[..., :, None] * u[..., None, :]
        out.append((qt[..., None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


def _chunk(q, k, v, beta, g, p, S0, C):
    B, H, T, _ = q.shape
    Dv = v.shape[-1]
    q, k, v, p, g = (chunked(x, C) for x in (q, k, v, p, g))  # padded steps: zero keys, zero log decay
    beta = chunked(beta[..., None], C)[..., 0]  # and beta = 0: no-ops
    gam = g.cumsum(dim=-2)  # [B, H, N, C, G]
    A = beta[..., :, None] * decayed_gram(p, k, gam, gam, strict=True)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = torch.cat([beta[..., None] * v, beta[..., None] * p * torch.exp(gam)], dim=-1)
    sol = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    U0, W = sol[..., :Dv], sol[..., Dv:]  # U = U0 − W S_0
    Aqk = decayed_gram(q, k, gam, gam, strict=False)
    q_in = q * torch.exp(gam)
    last = gam[..., -1:, :]
    k_out = k * torch.exp(last - gam)
    decay = torch.exp(last).transpose(-1, -2)  # [B, H, N, G, 1]
    outs = []
    S = S0
    # unbind, not x[:, :, n]: indexing's gradient is a full-size zero tensor per chunk (quadratic in T).
    per_chunk = (t.unbind(dim=2) for t in (U0, W, q_in, Aqk, decay, k_out))
    for u0, w, qi, aqk, dec, ko in zip(*per_chunk, strict=True):
        U = u0 - w @ S
        outs.append(qi @ S + aqk @ U)
        S = dec * S + ko.transpose(-1, -2) @ U
    o = torch.stack(outs, dim=2).reshape(B, H, -1, Dv)[:, :, :T]
    return o, S
