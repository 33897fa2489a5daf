"""Luna: linear unified nested attention (Ma et al., "Luna: Linear Unified Nested Attention",
arXiv:2106.01540, section 3).

Bidirectional (eq. 6-7): a fixed-length sequence P (l rows) packs the input, and the input unpacks
the packed sequence:

    Y_P = Attn(P, X) = softmax(P_q Xᵀ/√d) X,         Y = Attn(X, Y_P) = softmax(Q K_Pᵀ/√d) V_P,

with K_P = Y_P W_K, V_P = Y_P W_V (O(l·T) time and memory).

Causal (section 3.4, the paper's code ``LunarCausalAttention``): packing with a softmax over positions
would look ahead, so the pack weights are a positive map of each position alone, a_j = elu(x_j·p_q) + 1
∈ R^l, and the packed keys and values at step t are running means,

    K_P(t) = (1/t) Σ_{j<=t} a_j k_jᵀ,   V_P(t) = (1/t) Σ_{j<=t} a_j v_jᵀ,   y_t = softmax(q_t K_P(t)ᵀ) V_P(t),

a constant-size state (two l × d matrices and the count). Forms: ``prefix`` (cumulative sums) and
``recurrent`` (one step at a time).

Layout: heads ``[B, H, T, D]``; pack queries ``[1, H, l, D]``; states S_k ``[B, H, D, l]``, S_v
``[B, H, l, D]`` (sums, not means) and ``pos`` (tokens seen).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def luna_pack(pack_q: torch.Tensor, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Y_P = softmax(P_q Xᵀ/√d) X ``[B, H, l, D]``, padded positions left out."""
    scores = pack_q @ x.transpose(-1, -2) / math.sqrt(x.shape[-1])
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask.bool()[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ x


def luna_unpack(q: torch.Tensor, k_packed: torch.Tensor, v_packed: torch.Tensor) -> torch.Tensor:
    """Y = softmax(Q K_Pᵀ/√d) V_P."""
    return torch.softmax(q @ k_packed.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v_packed


def causal_pack_weights(x: torch.Tensor, pack_q: torch.Tensor) -> torch.Tensor:
    """a_j = elu(x_j·p_q/√d) + 1 ``[B, H, T, l]``: positive, and a function of position j alone."""
    return F.elu(x @ pack_q.transpose(-1, -2) / math.sqrt(x.shape[-1])) + 1


def luna_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, S_k: torch.Tensor,
                S_v: torch.Tensor, pos: torch.Tensor, *, form: str = "prefix"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, S_k, S_v) of causal Luna after the sums (S_k, S_v) of ``pos`` earlier tokens; q pre-scaled."""
    t = q.shape[-2]
    count = pos.to(q.dtype) + torch.arange(1, t + 1, device=q.device, dtype=q.dtype)  # tokens seen at each step
    if form == "recurrent":
        out = []
        for i, (q_t, k_t, v_t, a_t) in enumerate(zip(q.unbind(2), k.unbind(2), v.unbind(2), a.unbind(2),
                                                     strict=True)):
            S_k = S_k + k_t[..., :, None] * a_t[..., None, :]
            S_v = S_v + a_t[..., :, None] * v_t[..., None, :]
            probs = torch.softmax((q_t[..., None, :] @ S_k)[..., 0, :] / count[i], dim=-1)
            out.append((probs[..., None, :] @ S_v)[..., 0, :] / count[i])
        return torch.stack(out, dim=2), S_k, S_v
    sk = S_k[:, :, None] + torch.cumsum(k[..., :, None] * a[..., None, :], dim=2)  # [B, H, T, D, l]
    sv = S_v[:, :, None] + torch.cumsum(a[..., :, None] * v[..., None, :], dim=2)  # [B, H, T, l, D]
    probs = torch.softmax((q[..., None, :] @ sk)[..., 0, :] / count[:, None], dim=-1)
    y = (probs[..., None, :] @ sv)[..., 0, :] / count[:, None]
    return y, sk[:, :, -1], sv[:, :, -1]
