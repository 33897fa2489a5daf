"""TaLK convolutions: time-aware large kernels (Lioutas & Guo 2020, "Time-aware Large Kernel
Convolutions", arXiv:2002.03184, §3-4).

Instead of learned filter weights, each position predicts how far to the left (and, bidirectionally,
to the right) its window reaches, and outputs the mean of the inputs inside it — computed from a
summed-area table, so the cost does not grow with the window (``trevo.ops.talk``). The layer of the
paper's Figure 2: a GLU input projection, the TaLK convolution per head, an output projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError
from trevo.ops.talk import talk_prefix, talk_quadratic
from trevo.registry import Paper, register


@register("mixer", "talk", paper=Paper("Time-aware Large Kernel Convolutions", "2002.03184", 2020),
          category="LongConv", family="talk", causal=True, bidirectional=True, recurrent=True,
          time="O(T·d) prefix, O(T·window·d) quadratic", memory="O(window·d) state",
          test_options={"window": 5.0, "n_heads": 2})
class TaLK(TokenMixer):
    """TaLK convolution layer (Lioutas & Guo 2020, eq. 3-7): x' = GLU(W_in x); per head h the offsets
    a^l_i = window·σ(w^l_h · x'_i) (and a^r_i bidirectionally); y_i = mean of x'_j over
    j ∈ [i − a^l_i, i + a^r_i] with linear interpolation at the fractional ends; output W_out y.
    Causal: a^r = 0. Forms: ``prefix`` (summed-area table) and ``quadratic`` (explicit weights).
    Generation keeps the last ⌈window⌉ inputs. Offset dropout (the paper's regulariser) is not applied."""

    forms = ("prefix", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, window: float = 32.0,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if window <= 0:
            raise IncompatibleError(f"TaLK needs window > 0 (the largest offset, in positions), got {window}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.window, self.reach = float(window), math.ceil(window)
        self.in_proj = nn.Linear(d_model, 2 * d_model)
        self.offset_proj = nn.Linear(d_model, n_heads * (1 if causal else 2))
        self.out_proj = nn.Linear(d_model, d_model)

    def _convolve(self, xs: torch.Tensor, query: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """TaLK of ``xs`` [B, N, d] at ``query`` with offsets predicted from ``u`` [B, T, d]."""
        H = self.n_heads
        offsets = self.window * torch.sigmoid(self.offset_proj(u))
        left, right = (offsets, None) if self.causal else offsets.chunk(2, dim=-1)
        op = talk_prefix if self.form_for(u.shape[1]) == "prefix" else talk_quadratic
        y = op(xs.unflatten(-1, (H, self.head_dim)), query, left, right)
        return self.out_proj(y.flatten(-2))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        u = F.glu(self.in_proj(x), dim=-1)
        if padding_mask is not None:  # padded positions add nothing to the real windows
            u = torch.where(padding_mask[..., None], u, torch.zeros_like(u))
        r, T = self.reach, x.shape[1]
        xs = F.pad(u, (0, 0, r, r))  # zeros beyond both ends
        return self._convolve(xs, torch.arange(r, r + T, device=x.device), u)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": torch.zeros(batch, self.reach, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = F.glu(self.in_proj(x), dim=-1)
        xs = torch.cat([state["conv"].to(u.dtype), u], dim=1)
        r = self.reach
        y = self._convolve(xs, torch.arange(r, r + x.shape[1], device=x.device), u)
        return y, {"conv": xs[:, xs.shape[1] - r:]}
