"""Linear attention (Katharopoulos et al., "Transformers are RNNs", arXiv:2006.16236, eq. 4-9).

With a positive feature map φ (applied by the caller), attention without the softmax is

    o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t),   S_t = S_{t-1} + φ(k_t) v_tᵀ,   z_t = z_{t-1} + φ(k_t)

(causal; the bidirectional form sums over all t). Layout: q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``,
S ``[B, H, Dk, Dv]``, z ``[B, H, Dk]``; q and k are already feature-mapped.
"""

from __future__ import annotations

import torch


def linear_attention_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                               S: torch.Tensor | None = None, z: torch.Tensor | None = None,
                               eps: float = 1e-6) -> torch.Tensor:
    """The quadratic masked form (the reference): (φQ φKᵀ ⊙ M) V / ((φQ φKᵀ ⊙ M) 1), plus the
    contribution of an initial state (S, z) when continuing a sequence."""
    if not causal:
        kv = k.transpose(-1, -2) @ v
        num = q @ kv
        den = q @ k.sum(dim=-2, keepdim=True).transpose(-1, -2)
        return num / (den + eps)
    scores = q @ k.transpose(-1, -2)
    scores = scores.tril()
    num = scores @ v
    den = scores.sum(dim=-1, keepdim=True)
    if S is not None:
        num = num + q @ S
        den = den + (q @ z[..., None])
    return num / (den + eps)


def linear_attention_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, S: torch.Tensor,
                               z: torch.Tensor, eps: float = 1e-6
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step at a time: the RNN form, O(Dk·Dv) state. Returns (o, S_T, z_T)."""
    out = []
    # unbind, not indexing: the gradient of x[..., t, :] is a zero tensor of x's full size per step
    for qt, kt, vt in zip(q.unbind(-2), k.unbind(-2), v.unbind(-2), strict=True):
        S = S + kt[..., :, None] * vt[..., None, :]
        z = z + kt
        num = (qt[..., None, :] @ S)[..., 0, :]
        den = (qt * z).sum(dim=-1, keepdim=True)
        out.append(num / (den + eps))
    return torch.stack(out, dim=-2), S, z


def linear_attention_state(k: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The state after absorbing a whole chunk: S + φKᵀV, z + Σ φK."""
    return S + k.transpose(-1, -2) @ v, z + k.sum(dim=-2)
