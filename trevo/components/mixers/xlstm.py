"""xLSTM's two cells as token mixers: mLSTM (matrix memory, on the engine) and sLSTM (scalar memory with
recurrent connections, token by token), both with exponential gating (``trevo.ops.xlstm``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer, keep_init
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.short_conv import ShortConv
from trevo.errors import IncompatibleError
from trevo.ops.xlstm import mlstm, slstm
from trevo.registry import Paper, register

XLSTM = Paper("xLSTM: Extended Long Short-Term Memory", "2405.04517", 2024)


class BlockDiagonal(nn.Module):
    """A linear map with blocks of ``block`` channels on the diagonal (xLSTM's q/k/v projections)."""

    def __init__(self, width: int, block: int) -> None:
        super().__init__()
        if width % block:
            raise IncompatibleError(f"the width {width} is not divisible by the projection block size {block}")
        self.block = block
        self.weight = nn.Parameter(torch.randn(width // block, block, block) / math.sqrt(block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...gi,gio->...go", x.unflatten(-1, (-1, self.block)), self.weight).flatten(-2)


def head_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-head LayerNorm without bias (xLSTM's multi-head group norm) on ``[B, H, T, D]`` or ``[B, T, H, D]``."""
    return F.layer_norm(x, x.shape[-1:], eps=eps) * weight


@register("mixer", "mlstm", paper=XLSTM, category="Rnn", family="xlstm", causal=True, bidirectional=False,
          recurrent=True, time="O(T·C·e·d + T·(e·d)²/H) chunk, O(T·(e·d)²/H) recurrent",
          memory="O((e·d)²/H) state", test_options={"chunk_size": 8})
class MLSTM(TokenMixer):
    """The mLSTM block: [x_m, z] = W_up x (``expand`` 2); x_c = SiLU(conv4(x_m));
    q, k = block-diagonal maps of x_c, v of x_m (blocks of 4); gates ĩ, f̃ = W [q, k, v] + b per head;
    the mLSTM cell (C_t = f_t C_{t−1} + i_t v_t k_tᵀ, n_t, h_t = C_t q_t / max(|n_tᵀ q_t|, 1)) with the
    stabiliser m_t; then (GroupNorm(h) + skip ⊙ x_c) ⊙ SiLU(z), W_down."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, expand: int = 2, conv_size: int = 4,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        inner = expand * d_model
        self.n_heads, self.inner, self.head_dim = n_heads, inner, head_dim_of(inner, n_heads, what="expand·d_model")
        self.chunk_size = chunk_size
        self.up_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv = ShortConv(inner, conv_size)
        self.q_proj, self.k_proj, self.v_proj = (BlockDiagonal(inner, 4) for _ in range(3))
        self.gates = nn.Linear(3 * inner, 2 * n_heads)
        with torch.no_grad():  # the published initialisation: ĩ ≈ 0, forget biases from 3 to 6 (f ≈ 0.95 … 1)
            self.gates.weight.zero_()
            self.gates.bias[:n_heads].normal_(0, 0.1)
            self.gates.bias[n_heads:] = torch.linspace(3.0, 6.0, n_heads)
        keep_init(self.gates)
        self.norm_weight = nn.Parameter(torch.ones(self.head_dim))
        self.skip = nn.Parameter(torch.ones(inner))
        self.down_proj = nn.Linear(inner, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        H, D = self.n_heads, self.head_dim
        return {"S": torch.zeros(batch, H, D, D, device=device, dtype=dtype),
                "z": torch.zeros(batch, H, D, device=device, dtype=dtype),
                "m": torch.zeros(batch, H, device=device, dtype=dtype),
                "conv": self.conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        x_m, z = self.up_proj(x).chunk(2, dim=-1)
        x_c, conv = self.conv(x_m, state["conv"])
        x_c = F.silu(x_c)
        q, k, v = self.q_proj(x_c), self.k_proj(x_c), self.v_proj(x_m)
        i_pre, f_pre = self.gates(torch.cat([q, k, v], dim=-1)).transpose(1, 2).chunk(2, dim=1)  # [B, H, T] each
        h, (C, n, m) = mlstm(split_heads(q, H), split_heads(k, H), split_heads(v, H), F.logsigmoid(f_pre), i_pre,
                             C=state["S"], n=state["z"], m=state["m"], form=self.form_for(x.shape[1]),
                             chunk_size=self.chunk_size)
        h = merge_heads(head_norm(h, self.norm_weight)) + self.skip * x_c
        return self.down_proj(h * F.silu(z)), {"S": C, "z": n, "m": m, "conv": conv}


@register("mixer", "slstm", paper=XLSTM, category="Rnn", family="xlstm", causal=True, bidirectional=False,
          recurrent=True, time="O(T·d²/H), sequential (no parallel form)", memory="O(d) state",
          test_options={})
class SLSTM(TokenMixer):
    """The sLSTM block's cell: scalar memories per channel, gates z̃, ĩ, f̃, õ = W x + R h_{t−1} + b
    with block-diagonal recurrent R (one D × D block per head), the input and forget gates fed by
    SiLU(conv4(x)); exponential input gate, sigmoid forget gate, the stabiliser m_t; output W_o
    GroupNorm(h). Inherently sequential: its one form is ``recurrent`` (the block's gated MLP is the
    channel mixer's job in trevo)."""

    forms = ("recurrent",)

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4) -> None:
        super().__init__(d_model, causal=causal)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        D = self.head_dim
        self.conv = ShortConv(d_model, conv_size)
        self.w_zo = nn.Linear(d_model, 2 * d_model)
        self.w_if = nn.Linear(d_model, 2 * d_model)
        self.R = nn.Parameter(torch.randn(4, n_heads, D, D) / math.sqrt(D))
        with torch.no_grad():  # forget biases from 3 to 6 as in the paper's code
            self.w_if.bias[d_model:] = torch.linspace(3.0, 6.0, d_model)
        keep_init(self.w_if)
        self.norm_weight = nn.Parameter(torch.ones(D))
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        def zeros():
            return torch.zeros(batch, self.n_heads, self.head_dim, device=device, dtype=dtype)

        return {"c": zeros(), "z": zeros(), "m": zeros(), "h": zeros(),
                "conv": self.conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x_c, conv = self.conv(x, state["conv"])
        z_pre, o_pre = self.w_zo(x).chunk(2, dim=-1)
        i_pre, f_pre = self.w_if(F.silu(x_c)).chunk(2, dim=-1)
        wx = torch.stack([z_pre, i_pre, f_pre, o_pre], dim=2).unflatten(-1, (self.n_heads, self.head_dim))
        h, (c, n, m, h_last) = slstm(wx, self.R, c=state["c"], n=state["z"], m=state["m"], h=state["h"])
        y = head_norm(h, self.norm_weight).flatten(2)
        return self.out_proj(y), {"c": c, "z": n, "m": m, "h": h_last, "conv": conv}
