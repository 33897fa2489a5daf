"""gMLP's spatial gating unit as a token mixer (Liu et al., "Pay Attention to MLPs", arXiv:2105.08050)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError, TrevoError
from trevo.ops.gmlp import spatial_gating, spatial_mixing_matrix
from trevo.registry import Paper, register


@register("mixer", "gmlp", paper=Paper("Pay Attention to MLPs", "2105.08050", 2021), category="Arch",
          family="gmlp", causal=True, bidirectional=True, fixed_length=True,
          time="O(T²·d)", memory="O(max_len²) weights; cache O(T·d) in generation")
class GMLP(TokenMixer):
    """gMLP block's token mixing (eq. 1-3): Z = GELU(XU) split into Z1, Z2;
    s(Z) = Z1 ⊙ (W·LayerNorm(Z2) + b); output s(Z) V. W ``[max_len, max_len]`` starts near zero and
    b at one (so s(Z) ≈ Z1 at init); lower-triangular W when causal.

    Bidirectionally, padded positions of LayerNorm(Z2) are zeroed before the spatial mixing (the paper
    does not mask). Generation keeps the past LayerNorm(Z2) rows (the mixing needs all of them)."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, expand: int = 2) -> None:
        super().__init__(d_model, causal=causal)
        hidden = expand * d_model
        if hidden % 2:
            raise IncompatibleError(f"gmlp splits expand·d_model={hidden} channels in two; make it even")
        self.max_len, self.half = max_len, hidden // 2
        self.proj_in = nn.Linear(d_model, hidden)
        self.norm = nn.LayerNorm(self.half)
        self.spatial_weight = nn.Parameter(torch.empty(max_len, max_len).uniform_(-1e-3, 1e-3))
        self.spatial_bias = nn.Parameter(torch.ones(max_len))
        self.proj_out = nn.Linear(self.half, d_model)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = F.gelu(self.proj_in(x)).chunk(2, dim=-1)
        return z1, self.norm(z2)

    def _gate(self, z1: torch.Tensor, z2: torch.Tensor, start: int) -> torch.Tensor:
        stop = z2.shape[1]
        if stop > self.max_len:
            raise TrevoError(f"gmlp mixes at most {self.max_len} positions (model.max_len), got position {stop - 1}; "
                             f"raise model.max_len")
        w = spatial_mixing_matrix(self.spatial_weight, start, stop, causal=self.causal).to(z2.dtype)
        return self.proj_out(spatial_gating(z1, z2, w, self.spatial_bias[start:stop].to(z2.dtype)))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        z1, z2 = self._split(x)
        if padding_mask is not None:
            z2 = z2 * padding_mask[..., None].to(z2.dtype)
        return self._gate(z1, z2, 0)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"z2": torch.zeros(batch, 0, self.half, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        z1, z2 = self._split(x)
        z2 = torch.cat([state["z2"], z2], dim=1)
        return self._gate(z1, z2, state["z2"].shape[1]), {"z2": z2}
