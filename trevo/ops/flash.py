"""GAU and FLASH (Hua et al., "Transformer Quality in Linear Time", arXiv:2202.10447).

GAU (section 2): with U = SiLU(XW_u), V = SiLU(XW_v), Z = SiLU(XW_z) and per-dimension scales and
offsets Q = γ_q ⊙ Z + β_q, K = γ_k ⊙ Z + β_k, the output is (U ⊙ A V) W_o with the single-head
attention A = relu²(QKᵀ / n). Bidirectionally n is the number of (real) tokens; causally query t
sees t + 1 keys and n = t + 1, so outputs do not depend on the sequence's length.

FLASH (section 3, mixed chunk): positions are grouped into chunks of c. Inside a chunk, quadratic
attention relu²(Q_q K_qᵀ / c); across chunks, linear attention Q_l (Σ K_lᵀ V) — over the earlier
chunks, divided by c, when causal; over all tokens, divided by n, when bidirectional.
"""

from __future__ import annotations

import torch


def relu2_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                    key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """GAU's A V with A = relu²(q kᵀ / n); q ``[B, Tq, s]`` are the last Tq of the keys ``[B, Tk, s]``."""
    tq, tk = q.shape[1], k.shape[1]
    if causal:
        n = torch.arange(tk - tq + 1, tk + 1, device=q.device, dtype=q.dtype)[:, None]
    elif key_padding_mask is not None:
        n = key_padding_mask.sum(dim=1).clamp_min(1).to(q.dtype)[:, None, None]
    else:
        n = torch.tensor(float(tk), dtype=q.dtype, device=q.device)
    a = torch.relu(q @ k.transpose(-1, -2) / n).square()
    if causal:
        a = a.tril(diagonal=tk - tq)
    if key_padding_mask is not None:
        a = a * key_padding_mask[:, None, :].to(a.dtype)
    return a @ v


def flash_matrix(qq: torch.Tensor, qk: torch.Tensor, lq: torch.Tensor, lk: torch.Tensor, *, chunk_size: int,
                 causal: bool, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """FLASH's mixed-chunk attention as one ``[B, T, T]`` matrix (the reference): relu²(q_q·k_q / c)
    where t and j share a chunk (j <= t when causal), plus q_l·k_l / c where j's chunk is earlier
    (causal), or plus q_l·k_l / n for every j (bidirectional)."""
    t = qq.shape[1]
    chunk = torch.arange(t, device=qq.device) // chunk_size
    same = chunk[:, None] == chunk[None, :]
    quad = torch.relu(qq @ qk.transpose(-1, -2) / chunk_size).square()
    lin = lq @ lk.transpose(-1, -2)
    if causal:
        pos = torch.arange(t, device=qq.device)
        quad = quad * (same & (pos[None, :] <= pos[:, None])).to(quad.dtype)
        lin = lin * (chunk[None, :] < chunk[:, None]).to(lin.dtype) / chunk_size
        return quad + lin
    quad = quad * same.to(quad.dtype)
    n = float(t) if key_padding_mask is None else key_padding_mask.sum(dim=1).clamp_min(1).to(lin.dtype)[:, None, None]
    a = quad + lin / n
    if key_padding_mask is not None:
        a = a * key_padding_mask[:, None, :].to(a.dtype)
    return a


def flash_chunked(qq: torch.Tensor, qk: torch.Tensor, lq: torch.Tensor, lk: torch.Tensor, v: torch.Tensor, *,
                  chunk_size: int, causal: bool, key_padding_mask: torch.Tensor | None = None,
                  M: torch.Tensor | None = None) -> torch.Tensor:
    """FLASH in O(T·c) per chunk plus an O(s·e) linear state. Causal: M ``[B, s, e]`` carries
    Σ K_lᵀV / c of the chunks before (the sequence must start at a chunk boundary)."""
    b, t, _ = qq.shape
    if not causal:
        if key_padding_mask is not None:
            real = key_padding_mask.to(v.dtype)[..., None]
            lk, n = lk * real, real.sum(dim=1, keepdim=True).clamp_min(1)
        else:
            n = float(t)
        lin = lq @ (lk.transpose(-1, -2) @ v) / n
    if M is None:
        M = torch.zeros(b, qq.shape[-1], v.shape[-1], device=v.device, dtype=v.dtype)
    # Iterating over split views (not slicing in the loop) keeps the backward pass linear in T:
    # each slice's backward would scatter into a zero tensor of the full length.
    pieces = [x.split(chunk_size, dim=1) for x in (qq, qk, lq, lk, v)]
    none = [None] * len(pieces[0])
    lin_chunks = none if causal else lin.split(chunk_size, dim=1)
    real_chunks = none if causal or key_padding_mask is None else key_padding_mask.split(chunk_size, dim=1)
    out = []
    for qq_c, qk_c, lq_c, lk_c, v_c, lin_c, real_c in zip(*pieces, lin_chunks, real_chunks, strict=True):
        a = torch.relu(qq_c @ qk_c.transpose(-1, -2) / chunk_size).square()
        if causal:
            a = a.tril()
        elif real_c is not None:
            a = a * real_c[:, None, :].to(a.dtype)
        y = a @ v_c
        if causal:
            y = y + lq_c @ M
            M = M + lk_c.transpose(-1, -2) @ v_c / chunk_size
        else:
            y = y + lin_c
        out.append(y)
    return torch.cat(out, dim=1)
