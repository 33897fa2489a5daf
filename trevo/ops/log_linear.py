"""Log-linear attention: a Fenwick-tree hierarchy of O(log T) states over a gated linear recurrence.

Guo et al., "Log-Linear Attention" (arXiv:2506.04761): the prefix before a query t is split into
buckets of sizes 1, 1, 2, 4, …: key i is in level ℓ(t, i) = 0 if i = t, else the bit length of t XOR i
(absolute positions), and each level has its own data-dependent weight λ_t^(ℓ) >= 0:

    o_t = Σ_{i<=t} λ_t^(ℓ(t, i)) (q_t·k_i) exp(Σ_{i<j<=t} g_j) v_i          (here over Mamba-2's scalar decay g)

The generation state is one matrix per level, ``[B, H, levels, Dk, Dv]`` (level ℓ at index ℓ − 1; level 0
is the current token), relative to the next position p: bucket ℓ holds the keys i < p with
bit_length(p XOR i) = ℓ, decayed to p − 1. It grows to bit_length(p) levels: O(log T) memory.

Forms:
  ``recurrent``  token by token with the Fenwick merge: after token t, levels 0 … c (c = the trailing
                 zeros of t + 1) merge into level c + 1.
  ``chunk``      blocks of ``chunk_size`` tokens: inside a block the masked quadratic form; the state is read
                 at level max(ℓ, bit_length(t XOR p0)) for a block starting at p0, and re-bucketed at its end.
  ``quadratic``  the same block computation over the whole sequence: the reference.
A model with ``n_levels`` level weights covers 2^(n_levels − 1) − 1 positions.

Over Gated DeltaNet (``beta`` given): every bucket evolves by the delta transition
S ← α_t (I − β_t k_t k_tᵀ) S and the token writes β_t k_t v_tᵀ into level 0, so that bucket ℓ holds
Σ_{i in ℓ} (Π_{i<j<=t} α_j (I − β_j k_j k_jᵀ)) β_i k_i v_iᵀ. Its ``chunk`` form takes the transition
products inside a block from the delta rule's UT transform (as ``trevo.ops.delta_rule``): they are the
same for every level, so one triangular solve per block serves all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.linear_recurrence import segsum

FORMS = ("chunk", "quadratic", "recurrent")


def bit_length(x: torch.Tensor, bits: int) -> torch.Tensor:
    """The bit length of non-negative integers (exact; at most ``bits``)."""
    powers = 2 ** torch.arange(bits, device=x.device, dtype=torch.long)
    return (x[..., None] >= powers).sum(-1)


def log_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor,
                         level_weights: torch.Tensor, *, state: torch.Tensor, pos: int, form: str = "chunk",
                         chunk_size: int = 64, beta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, log decay ``[B, H, T]``, λ ``[B, H, T, L]`` (L levels);
    ``state`` ``[B, H, levels, Dk, Dv]`` after ``pos`` tokens; ``beta`` ``[B, H, T]`` for the delta rule.
    Returns (o, the new state)."""
    B, H, T, _ = q.shape
    L = level_weights.shape[-1]
    end = pos + T
    if end >= 2 ** (L - 1):
        raise TrevoError(f"log-linear attention with {L} level weights covers {2 ** (L - 1) - 1} positions; got "
                         f"{end}: raise n_levels")
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    levels = max(int(end).bit_length(), state.shape[2])
    if state.shape[2] < levels:  # the hierarchy grows with the positions it covers
        state = torch.cat([state, state.new_zeros(*state.shape[:2], levels - state.shape[2], *state.shape[3:])], 2)
    if T == 0:
        return v, state
    if form == "recurrent":
        return _recurrent(q, k, v, log_decay, level_weights, state, pos, beta)
    size = T if form == "quadratic" else chunk_size
    if size < 1:
        raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
    outs = []
    # split, not x[:, :, a:b] per block: each slice's gradient is a zero tensor of x's full size, which
    # made the backward pass quadratic in T.
    blocks = zip(*(x.split(size, dim=2) for x in (q, k, v, log_decay, level_weights)), strict=True)
    betas = beta.split(size, dim=2) if beta is not None else [None] * -(-T // size)
    for start, (qb, kb, vb, gb, lb), bb in zip(range(0, T, size), blocks, betas, strict=True):
        o, state = _block(qb, kb, vb, gb, lb, state, pos + start, bb)
        outs.append(o)
    return torch.cat(outs, dim=2), state


def _block(q, k, v, g, lam, S, p0, beta):
    n, levels, bits = q.shape[2], S.shape[2], lam.shape[-1]
    positions = p0 + torch.arange(n, device=q.device)
    B, H = q.shape[:2]
    gam = g.cumsum(-1)
    k_out = k * torch.exp(gam[..., -1:] - gam)[..., None]  # k_i carried to the block's end by the decay
    pair_decay = torch.exp(segsum(g))  # e^{γ_t − γ_i} for i <= t, 0 above the diagonal
    scores = (q @ k.transpose(-1, -2)) * pair_decay
    q_state, k_write = q * torch.exp(gam)[..., None], k_out
    if beta is not None:
        # The delta rule's UT transform: with T_β = (I + A)⁻¹ diag(β), A_ti = β_t (k_t·k_i) e^{γ_t − γ_i} (i < t),
        # q_tᵀ P_{i→t} β_i k_i = (scores T_β)_ti for the transition P = Π α_j (I − β_j k_j k_jᵀ) between
        # i and t; q_tᵀ P_{0→t} = q_state − (scores W)_t with W = T_β (k e^γ); P_{i→n} β_i k_i = (T_βᵀ k_out)_i.
        strict = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(-1)
        A = beta[..., :, None] * (k @ k.transpose(-1, -2)) * pair_decay.masked_fill(~strict, 0)
        eye = torch.eye(n, dtype=q.dtype, device=q.device)
        t_beta = torch.linalg.solve_triangular(eye + A, torch.diag_embed(beta), upper=False, unitriangular=True)
        W = t_beta @ (k * torch.exp(gam)[..., None])
        q_state = q_state - scores @ W
        scores = scores @ t_beta
        k_write = t_beta.transpose(-1, -2) @ k_out
    carried = S * torch.exp(gam[..., -1])[..., None, None, None]  # P_{0→n} S on every level
    if beta is not None:  # P_{0→n} S = e^{γ_n} S − k_outᵀ W S
        carried = carried - torch.einsum("bhde,bhlef->bhldf", k_out.transpose(-1, -2) @ W, S)
    # inside the block: the masked quadratic form with a level weight per pair
    lvl = bit_length(positions[:, None] ^ positions[None, :], bits)
    o = (scores * torch.gather(lam, -1, lvl.expand(B, H, n, n))) @ v
    # the state: bucket ℓ is seen from t at level max(ℓ, bit_length(t XOR p0))
    buckets = torch.arange(1, levels + 1, device=q.device)
    seen = torch.maximum(buckets[None, :], bit_length(positions ^ p0, bits)[:, None])  # [n, levels]
    o = o + torch.einsum("bhtl,bhtd,bhlde->bhte", torch.gather(lam, -1, seen.expand(B, H, n, levels)), q_state, S)
    # re-bucketed relative to the next position
    p_end = p0 + n
    old = torch.maximum(buckets, bit_length(torch.tensor(p_end ^ p0, device=q.device), bits)) - 1
    move = torch.zeros(levels, levels, dtype=q.dtype, device=q.device)
    move[old, buckets - 1] = 1
    place = F.one_hot(bit_length(p_end ^ positions, bits) - 1, levels).to(q.dtype)  # [n, levels]
    writes = torch.einsum("il,bhid,bhie->bhlde", place, k_write, v)
    return o, torch.einsum("ml,bhlde->bhmde", move, carried) + writes


def _recurrent(q, k, v, g, lam, S, p, beta):
    outs = []
    levels = S.shape[2]
    betas = beta.unbind(2) if beta is not None else [None] * q.shape[2]
    for t, (qt, kt, vt, gt, lt, bt) in enumerate(zip(q.unbind(2), k.unbind(2), v.unbind(2), g.unbind(2),
                                                     lam.unbind(2), betas, strict=True)):
        S = S * torch.exp(gt)[..., None, None, None]
        if bt is not None:  # (I − β k kᵀ) S on every level, and the write β k vᵀ
            S = S - bt[..., None, None, None] * kt[:, :, None, :, None] * (kt[:, :, None, None, :] @ S)
            vt = bt[..., None] * vt
        write = kt[..., :, None] * vt[..., None, :]
        o = lt[..., 0, None] * (qt[..., None, :] @ write)[..., 0, :]
        o = o + torch.einsum("bhl,bhd,bhlde->bhe", lt[..., 1:levels + 1], qt, S)
        outs.append(o)
        c = ((p + t + 1) & -(p + t + 1)).bit_length() - 1  # trailing zeros of the next position
        merged = S[:, :, :c].sum(2) + S[:, :, c] + write  # levels 0 … c join level c + 1 (index c)
        S = torch.cat([torch.zeros_like(S[:, :, :c]), merged[:, :, None], S[:, :, c + 1:]], dim=2)
    return torch.stack(outs, dim=2), S
