"""HyperMixer: token mixing whose weights a hypernetwork generates from the tokens themselves (Mai,
Pannatier, Fehr, Chen, Marelli, Fleuret, Henderson 2023, "HyperMixer: An MLP-based Low Cost
Alternative to Transformers", arXiv:2203.03691, §3, eq. 3-5).

MLP-Mixer's token-mixing MLP has fixed weights W₁, W₂ ∈ R^{T×d'} and a fixed length. HyperMixer
generates them per input, one row per token, W₁ = h₁(x + p), W₂ = h₂(x + p) (position-wise MLPs of
the tokens with sinusoidal positions p), so any length works and the layer is permutation-aware only
through p::

    TM(X) = W₂ σ(W₁ᵀ X)    (σ = GELU; W₁ᵀ X ∈ R^{d'×d} sums over tokens).

Causal use restricts the sum to the prefix, y_t = w₂,ₜ σ(S_t) with S_t = Σ_{s<=t} w₁,ₛ x_sᵀ — a
constant-size state (trevo's form; the paper is bidirectional).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.registry import Paper, register


def sinusoidal(positions: torch.Tensor, width: int) -> torch.Tensor:
    """The sinusoidal encoding of Vaswani et al. (2017) at ``positions`` → ``[T, width]``."""
    half = width // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float64) / half)
    angle = positions.double()[:, None] * freq
    return F.pad(torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1), (0, width - 2 * half))


@register("mixer", "hypermixer", paper=Paper("HyperMixer: An MLP-based Low Cost Alternative to Transformers",
                                             "2203.03691", 2023),
          category="Arch", family="hypermixer", causal=True, bidirectional=True, recurrent=True,
          time="O(T·d·d') (T·d·d' memory in the prefix form)", memory="O(d'·d) state",
          test_options={"low_rank_dim": 4})
class HyperMixer(TokenMixer):
    """HyperMixer token mixing (Mai et al. 2023, eq. 3-5): W₁ = h₁(x + p), W₂ = h₂(x + p) with
    position-wise hypernetwork MLPs (d → d → d'), TM(X) = W₂ GELU(W₁ᵀX). ``tied`` shares h₁ = h₂
    (the paper's tied variant). Causal (trevo's): y_t = W₂[t] GELU(Σ_{s<=t} W₁[s] x_sᵀ), forms
    ``prefix`` (cumulative sums) and ``recurrent`` (state S = Σ w₁ ⊗ x and the position)."""

    forms = ("prefix", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = False, low_rank_dim: int = 64, tied: bool = False,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.low_rank_dim, self.tied = low_rank_dim, tied
        make = lambda: nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, low_rank_dim))  # noqa: E731
        self.hyper1 = make()
        self.hyper2 = self.hyper1 if tied else make()

    def _weights(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W₁, W₂) ``[B, T, d']`` from the tokens plus their sinusoidal positions."""
        p = sinusoidal(torch.arange(offset, offset + x.shape[1], device=x.device), self.d_model).to(x.dtype)
        h = x + p
        return self.hyper1(h), self.hyper2(h)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        w1, w2 = self._weights(x, 0)
        if padding_mask is not None:  # padded tokens take no part in the sum over tokens
            w1 = w1 * padding_mask[..., None].to(w1.dtype)
        mixed = F.gelu(torch.einsum("btr,btd->brd", w1, x))  # σ(W₁ᵀ X)
        return torch.einsum("btr,brd->btd", w2, mixed)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.low_rank_dim, self.d_model, device=device, dtype=dtype),
                "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        offset = int(state["pos"])
        w1, w2 = self._weights(x, offset)
        if self.form_for(x.shape[1]) == "prefix":
            S = state["S"][:, None] + torch.cumsum(w1[..., :, None] * x[..., None, :], dim=1)  # [B, T, d', d]
            y = torch.einsum("btr,btrd->btd", w2, F.gelu(S))
            last = S[:, -1] if x.shape[1] else state["S"]
        else:
            last, ys = state["S"], []
            for a, b, x_t in zip(w1.unbind(1), w2.unbind(1), x.unbind(1), strict=True):
                last = last + a[:, :, None] * x_t[:, None, :]
                ys.append(torch.einsum("br,brd->bd", b, F.gelu(last)))
            y = torch.stack(ys, 1) if ys else x
        return y, {"S": last, "pos": state["pos"] + x.shape[1]}
