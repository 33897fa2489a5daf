"""Griffin's recurrent block around the RG-LRU (De et al. 2024, arXiv:2402.19427, §2.4 and Figure 2):
the temporal-mixing block of Hawk (all recurrent) and Griffin (2 recurrent : 1 local attention)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.components.short_conv import ShortConv
from trevo.ops.rg_lru import C, rg_lru
from trevo.registry import Paper, register


class BlockDiagonalLinear(nn.Module):
    """y = x W + b with W block-diagonal over ``n_heads`` blocks (the RG-LRU's gate weights)."""

    def __init__(self, width: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.block = n_heads, head_dim_of(width, n_heads, what="the RNN width")
        self.weight = nn.Parameter(torch.randn(n_heads, self.block, self.block) / math.sqrt(self.block))
        self.bias = nn.Parameter(torch.zeros(n_heads, self.block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.unflatten(-1, (self.n_heads, self.block))
        return (torch.einsum("...hi,hij->...hj", xs, self.weight) + self.bias).flatten(-2)


def lambda_init(width: int, low: float = 0.9, high: float = 0.999) -> torch.Tensor:
    """Λ with a^c = σ(Λ)^c uniform in [low, high] (§2.4: "a^c between 0.9 and 0.999")."""
    a_c = torch.empty(width).uniform_(low, high)
    a = a_c ** (1 / C)
    return torch.log(a) - torch.log1p(-a)  # σ⁻¹(a)


@register("mixer", "rg_lru",
          paper=Paper("Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models",
                      "2402.19427", 2024),
          category="Rnn", family="rg_lru", causal=True, bidirectional=False, recurrent=True,
          time="O(T·L·D_RNN) chunk, O(T·log T·D_RNN) scan, O(T·D_RNN) recurrent",
          memory="O(D_RNN·conv_size) state", test_options={"chunk_size": 4})
class RGLRUBlock(TokenMixer):
    """Griffin's recurrent block (Figure 2c): y = W_out(GeLU(W_gate x) ⊙ RG-LRU(Conv1D(W_in x))) with an
    RNN width D_RNN = ``expand``·d (4/3 in the paper), a causal depthwise Conv1D of ``conv_size`` taps,
    and the RG-LRU h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ x_t), a_t = σ(Λ)^(8 r_t), its gates
    r_t, i_t block-diagonal over ``n_heads`` (``trevo.ops.rg_lru``)."""

    forms = ("chunk", "scan", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, expand: float = 4 / 3, n_heads: int = 4,
                 conv_size: int = 4, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        width = max(n_heads, round(expand * d_model / n_heads) * n_heads)
        self.width, self.chunk_size = width, chunk_size
        self.gate_proj = nn.Linear(d_model, width, bias=True)
        self.in_proj = nn.Linear(d_model, width, bias=True)
        self.conv = ShortConv(width, conv_size)
        self.gate_a = BlockDiagonalLinear(width, n_heads)
        self.gate_x = BlockDiagonalLinear(width, n_heads)
        self.lam = nn.Parameter(lambda_init(width))
        self.out_proj = nn.Linear(width, d_model, bias=True)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": self.conv.init_state(batch, device, dtype),
                "h": torch.zeros(batch, self.width, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        gate = F.gelu(self.gate_proj(x), approximate="tanh")
        u, conv = self.conv(self.in_proj(x), state["conv"])
        h, last = rg_lru(u, self.gate_a(u), self.gate_x(u), self.lam, state["h"], form=self.form_for(x.shape[1]),
                         chunk_size=self.chunk_size)
        return self.out_proj(gate * h), {"conv": conv, "h": last}
