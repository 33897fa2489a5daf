"""Hamburger (Geng et al., "Is Attention Better Than Matrix Decomposition?", arXiv:2109.04553) with its
three hams: NMF, vector quantisation and concept decomposition. The math lives in ``trevo.ops.hamburger``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError
from trevo.ops.hamburger import ham_cd, ham_nmf, ham_vq
from trevo.registry import Paper, register

_META = dict(paper=Paper("Is Attention Better Than Matrix Decomposition?", "2109.04553", 2021),
             category="MHA/MatrixMethod", family="hamburger", causal=False, bidirectional=True,
             time="O(K·T·d·r), K = n_steps, r = low_rank_dim", memory="O(T·d + T·r)")


class _Hamburger(TokenMixer):
    """Lower bread · ham · upper bread (eq. 1): y = W_l ham(W_u x), the ham applied per group of
    ``n_heads`` to the channels × positions matrix with ``low_rank_dim`` bases and ``n_steps`` iterations.
    The initial bases D₀ are a fixed random buffer (the paper's non-random variant, without its online
    update of D₀). Bidirectional only: the decomposition sees every position."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int, low_rank_dim: int, n_steps: int) -> None:
        super().__init__(d_model, causal=causal)
        if low_rank_dim < 1 or n_steps < 0:
            raise IncompatibleError(f"{type(self).__name__} needs low_rank_dim >= 1 and n_steps >= 0, got "
                                    f"{low_rank_dim}, {n_steps}")
        self.n_heads, self.n_steps = n_heads, n_steps
        group = head_dim_of(d_model, n_heads)
        self.upper = nn.Linear(d_model, d_model)
        self.lower = nn.Linear(d_model, d_model, bias=False)
        self.register_buffer("bases", F.normalize(self.initial_bases(n_heads, group, low_rank_dim), dim=1))

    def initial_bases(self, n_heads: int, group: int, rank: int) -> torch.Tensor:
        return torch.randn(n_heads, group, rank)

    def bread(self, x: torch.Tensor) -> torch.Tensor:
        return self.upper(x)

    def ham(self, cols: torch.Tensor, bases: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        B, T, d = x.shape
        h = self.bread(x)
        mask = None
        if padding_mask is not None:  # a zero column gets zero coefficients and leaves the bases alone
            h = h * padding_mask[..., None].to(h.dtype)
            mask = padding_mask.to(h.dtype).repeat_interleave(self.n_heads, dim=0)
        cols = h.transpose(1, 2).reshape(B * self.n_heads, d // self.n_heads, T)  # channels × positions
        bases = self.bases.to(h.dtype).repeat(B, 1, 1)
        rec = self.ham(cols, bases, mask).reshape(B, d, T).transpose(1, 2)
        return self.lower(rec)


@register("mixer", "hamburger", **_META, test_options={"low_rank_dim": 4, "n_steps": 3})
class Hamburger(_Hamburger):
    """Hamburger with the NMF ham (§2.2, Alg. NMF): ReLU after the lower bread makes the matrix
    non-negative, which ``n_steps`` multiplicative updates factorise as D Cᵀ; non-negative initial bases."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 1, low_rank_dim: int = 16,
                 n_steps: int = 6) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, low_rank_dim=low_rank_dim, n_steps=n_steps)

    def initial_bases(self, n_heads: int, group: int, rank: int) -> torch.Tensor:
        return torch.rand(n_heads, group, rank)

    def bread(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.upper(x))

    def ham(self, cols: torch.Tensor, bases: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return ham_nmf(cols, bases, self.n_steps)


@register("mixer", "hamburger_vq", **_META, test_options={"low_rank_dim": 4, "n_steps": 3})
class HamburgerVQ(_Hamburger):
    """Hamburger with the vector-quantisation ham (§2.2, Alg. VQ): soft spherical k-means of the positions
    into ``low_rank_dim`` centroids, sharpened by ``inverse_temperature`` (the paper's 1/T = 100); each
    position is replaced by its soft assignment's mix of centroids."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 1, low_rank_dim: int = 16,
                 n_steps: int = 6, inverse_temperature: float = 100.0) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, low_rank_dim=low_rank_dim, n_steps=n_steps)
        self.inverse_temperature = inverse_temperature

    def ham(self, cols: torch.Tensor, bases: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return ham_vq(cols, bases, self.n_steps, self.inverse_temperature, mask)


@register("mixer", "hamburger_cd", **_META, test_options={"low_rank_dim": 4, "n_steps": 3})
class HamburgerCD(_Hamburger):
    """Hamburger with the concept-decomposition ham (§2.2, Alg. CD): unit concept vectors from soft
    spherical k-means, then the ridge least-squares coefficients C = Xᵀ D (DᵀD + ``ridge``·I)⁻¹ (the
    paper's β = 0.1)."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 1, low_rank_dim: int = 16,
                 n_steps: int = 6, inverse_temperature: float = 100.0, ridge: float = 0.1) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, low_rank_dim=low_rank_dim, n_steps=n_steps)
        if ridge <= 0:
            raise IncompatibleError(f"hamburger_cd needs ridge > 0 (the Gram matrix must stay invertible), got "
                                    f"{ridge}")
        self.inverse_temperature, self.ridge = inverse_temperature, ridge

    def ham(self, cols: torch.Tensor, bases: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return ham_cd(cols, bases, self.n_steps, self.inverse_temperature, self.ridge, mask)
