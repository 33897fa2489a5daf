"""MesaNet's read-out: the optimal regularised least-squares memory, solved by conjugate gradient.

von Oswald et al., "MesaNet: Sequence Modeling by Locally Optimal Test-Time Training"
(arXiv:2506.05233): the Mesa layer and its conjugate-gradient training. Per head, two
gated linear states (layout ``[B, H, Dk, Dk]`` and ``[B, H, Dk, Dv]``)

    H_t = γ_t H_{t-1} + β_t k_t k_tᵀ,      G_t = γ_t G_{t-1} + β_t k_t v_tᵀ

and the output o_t = G_tᵀ (H_t + Λ)⁻¹ q_t, the read-out of the memory that minimises
Σ_i (Π γ) β_i ‖Wᵀk_i − v_i‖² + Σ_d λ_d ‖W_d‖² (Λ = diag(λ), λ > 0 per key channel). The solve
x_t = (H_t + Λ)⁻¹ q_t runs at most ``cg_steps`` iterations of conjugate gradient from x = 0 (fewer once
the residual is at rounding level); with cg_steps >= Dk it is exact up to rounding. H_t is a sum of
positive semi-definite terms with positive weights, so H_t + Λ is positive definite with eigenvalues
>= min λ: the system stays well-posed at any length. Half-precision inputs are computed in float32:
flash-linear-attention stored H_t in float16, where rounding made it numerically indefinite and CG
diverged to NaN (fla issue #1187, fixed by PR #1152 by keeping H_t in float32).

Forms: ``chunk`` and ``quadratic`` compute every product H_t p_t of a CG iteration at once, the
intra-chunk part as a masked linear attention with the CG directions as queries (H symmetric:
H_t p_t = Σ_i (Π γ) β_i k_i (k_iᵀ p_t)) and the rest from the states entering each chunk, which are built
once for all iterations; ``recurrent`` keeps H_t and G_t and solves token by token. All three run the same
CG iterations, so they agree to rounding.
"""

from __future__ import annotations

import torch

from trevo.errors import TrevoError
from trevo.ops.delta_rule import chunked
from trevo.ops.linear_recurrence import linear_recurrence, segsum

FORMS = ("chunk", "quadratic", "recurrent")


def mesa_net(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, lamb: torch.Tensor, *,
             log_decay: torch.Tensor | None = None, initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
             padding_mask: torch.Tensor | None = None, cg_steps: int = 30, form: str = "chunk",
             chunk_size: int = 64) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(o ``[B, H, T, Dv]``, (H ``[B, H, Dk, Dk]``, G ``[B, H, Dk, Dv]``)) of the Mesa layer.

    q, k ``[B, H, T, Dk]``; v ``[B, H, T, Dv]``; beta, log_decay ``[B, H, T]``; lamb ``[H, Dk]`` (> 0).
    Padded steps (``padding_mask`` False) leave both states unchanged."""
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise TrevoError(f"expected q, k [B, H, T, Dk] and v [B, H, T, Dv]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    for name, x in (("beta", beta), ("log_decay", log_decay)):
        if x is not None and x.shape != (B, H, T):
            raise TrevoError(f"{name} must be [B, H, T] = {(B, H, T)}, got {tuple(x.shape)}")
    if lamb.shape != (H, Dk):
        raise TrevoError(f"lamb must be [H, Dk] = {(H, Dk)}, got {tuple(lamb.shape)}")
    if cg_steps < 1:
        raise TrevoError(f"cg_steps must be >= 1, got {cg_steps}")
    if form == "auto":
        form = "recurrent" if T == 1 else "chunk"
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of auto, {', '.join(FORMS)}")
    out_dtype = v.dtype
    dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v, beta, lamb = (x.to(dtype) for x in (q, k, v, beta, lamb))
    g = q.new_zeros(B, H, T) if log_decay is None else log_decay.to(dtype)
    if padding_mask is not None:
        if padding_mask.shape != (B, T):
            raise TrevoError(f"padding_mask must be [B, T] = {(B, T)}, got {tuple(padding_mask.shape)}")
        m = padding_mask[:, None, :].to(dtype)
        g, beta = g * m, beta * m
    if initial_state is None:
        H0, G0 = q.new_zeros(B, H, Dk, Dk), q.new_zeros(B, H, Dk, Dv)
    else:
        H0, G0 = (s.to(dtype) for s in initial_state)
        if H0.shape != (B, H, Dk, Dk) or G0.shape != (B, H, Dk, Dv):
            raise TrevoError(f"initial_state must be (H [B, H, Dk, Dk], G [B, H, Dk, Dv]) = "
                             f"({(B, H, Dk, Dk)}, {(B, H, Dk, Dv)}), got ({tuple(H0.shape)}, {tuple(G0.shape)})")
    if T == 0:
        return v.new_zeros(v.shape).to(out_dtype), (H0, G0)
    lam = lamb[None, :, None, :]
    if form == "recurrent":
        o, H_T, G_T = _recurrent(q, k, v, beta, g, lamb, H0, G0, cg_steps)
        return o.to(out_dtype), (H_T, G_T)
    kb = beta[..., None] * k
    C = T if form == "quadratic" else chunk_size
    state_times, H_T = _chunked_state_product(k, kb, g, H0, C)
    lam = lam[..., None, :]  # the chunked layout [B, H, N, C, Dk]
    x = conjugate_gradient(lambda p: state_times(p) + lam * p, chunked(q, C), cg_steps)
    o, G_T = linear_recurrence(x.flatten(2, 3)[:, :, :T], kb, v, log_decay=g, initial_state=G0, form=form,
                               chunk_size=chunk_size)
    return o.to(out_dtype), (H_T, G_T)


def _chunked_state_product(k, kb, g, H0, C):
    """(x ↦ H_t x_t at every t in the chunked layout ``[B, H, N, C, Dk]`` of ``delta_rule.chunked``, and H_T).

    H_t x_t = e^{b_t} H_c x_t + Σ_{i<=t} e^{b_t − b_i} kb_i (k_iᵀ x_t) inside chunk c, with b the log decay
    cumulated from the chunk start and H_c the state entering the chunk (H symmetric). The chunk states and
    the decay weights depend on k, β and γ alone, so they are built once: each CG iteration is then three
    batched matmuls, not a linear-attention pass with its scan over chunks. Zero padding writes nothing and
    does not decay."""
    kc, kbc, gc = chunked(k, C), chunked(kb, C), chunked(g[..., None], C)[..., 0]
    seg = segsum(gc)  # [B, H, N, C(t), C(i)]: Σ_{i<j<=t} g_j, summed directly (no cancellation at C = T)
    w = torch.exp(seg)
    b = gc.cumsum(dim=-1)
    writes = (kbc * torch.exp(seg[..., -1, :])[..., None]).transpose(-1, -2) @ kc  # [B, H, N, Dk, Dk]
    states, S = [], H0
    for decay, write in zip(torch.exp(b[..., -1]).unbind(dim=2), writes.unbind(dim=2), strict=True):
        states.append(S)
        S = decay[..., None, None] * S + write
    entering = torch.stack(states, dim=2)
    from_start = torch.exp(b)[..., None]

    def state_times(x: torch.Tensor) -> torch.Tensor:
        return ((x @ kc.transpose(-1, -2)) * w) @ kbc + (x * from_start) @ entering

    return state_times, S


def conjugate_gradient(apply, b: torch.Tensor, steps: int) -> torch.Tensor:
    """At most ``steps`` iterations of CG for A x = b from x = 0 over the last axis (A symmetric positive
    definite, one system per leading index); ``apply(p)`` returns A p.

    A system stops once its residual is below √ε·‖b‖: iterating on a residual made of rounding errors
    changes x by nothing but makes its gradient rounding noise (the ratios of CG are then 0/0)."""
    x = torch.zeros_like(b)
    r, p = b, b
    delta = (r * r).sum(-1, keepdim=True)
    threshold = delta * torch.finfo(b.dtype).eps
    for _ in range(steps):
        active = delta > threshold
        if not bool(active.any()):  # every system converged: the remaining iterations change nothing
            break
        Ap = apply(p)
        curvature = (p * Ap).sum(-1, keepdim=True)
        alpha = torch.where(active, delta / torch.where(active, curvature, torch.ones_like(curvature)), 0)
        x = x + alpha * p
        r = r - alpha * Ap
        new = (r * r).sum(-1, keepdim=True)
        ratio = torch.where(active, new / torch.where(active, delta, torch.ones_like(delta)), 0)
        p = torch.where(active, r + ratio * p, p)
        delta = torch.where(active, new, delta)
    return x


def _recurrent(q, k, v, beta, g, lamb, Hs, Gs, steps):
    out = []
    # unbind, not indexing: the gradient of x[:, :, t] is a zero tensor of x's full size per step
    for qt, kt, vt, bt, gt in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2), g.unbind(2), strict=True):
        decay = torch.exp(gt)[..., None, None]
        kb = (bt[..., None] * kt)[..., :, None]
        Hs = decay * Hs + kb * kt[..., None, :]
        Gs = decay * Gs + kb * vt[..., None, :]
        x = conjugate_gradient(lambda p, Hs=Hs: (Hs @ p[..., None])[..., 0] + lamb * p, qt, steps)
        out.append((x[..., None, :] @ Gs)[..., 0, :])
    return torch.stack(out, dim=2), Hs, Gs
