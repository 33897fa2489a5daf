"""Hamburger with the NMF ham (Geng et al., "Is Attention Better Than Matrix Decomposition?",
arXiv:2109.04553). The math lives in ``trevo.ops.hamburger``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError
from trevo.ops.hamburger import ham_nmf
from trevo.registry import Paper, register


@register("mixer", "hamburger", paper=Paper("Is Attention Better Than Matrix Decomposition?", "2109.04553", 2021),
          category="MHA/MatrixMethod", family="hamburger", causal=False, bidirectional=True,
          time="O(K·T·d·r), K = n_steps, r = low_rank_dim", memory="O(T·d + T·r)",
          test_options={"low_rank_dim": 4, "n_steps": 3})
class Hamburger(TokenMixer):
    """Hamburger (eq. 1, §2.2-3): lower bread · ham · upper bread, y = W_l ham(ReLU(W_u x)). The ham
    factorises the non-negative channels × positions matrix (per group of ``n_heads``) as D Cᵀ of
    rank ``low_rank_dim`` by ``n_steps`` multiplicative NMF updates and returns the reconstruction,
    with the one-step gradient. The initial bases D₀ are a fixed random non-negative buffer (the
    paper's non-random variant, without its online update of D₀); VQ and concept decomposition hams
    are not included. Bidirectional only (the factorisation sees every position)."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 1, low_rank_dim: int = 16,
                 n_steps: int = 6) -> None:
        super().__init__(d_model, causal=causal)
        if low_rank_dim < 1 or n_steps < 0:
            raise IncompatibleError(f"hamburger needs low_rank_dim >= 1 and n_steps >= 0, got {low_rank_dim}, "
                                    f"{n_steps}")
        self.n_heads, self.n_steps = n_heads, n_steps
        group = head_dim_of(d_model, n_heads)
        self.upper = nn.Linear(d_model, d_model)
        self.lower = nn.Linear(d_model, d_model, bias=False)
        self.register_buffer("bases", F.normalize(torch.rand(n_heads, group, low_rank_dim), dim=1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        B, T, d = x.shape
        h = F.relu(self.upper(x))
        if padding_mask is not None:  # a zero column gets zero coefficients and leaves the bases alone
            h = h * padding_mask[..., None].to(h.dtype)
        cols = h.transpose(1, 2).reshape(B * self.n_heads, d // self.n_heads, T)  # channels × positions
        bases = self.bases.to(h.dtype).repeat(B, 1, 1)
        rec = ham_nmf(cols, bases, self.n_steps).reshape(B, d, T).transpose(1, 2)
        return self.lower(rec)
