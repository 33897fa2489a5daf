"""The Average Attention Network's decoder layer (Zhang, Xiong, Su 2018): a cumulative average and a gate."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.registry import Paper, register


@register("mixer", "average_attention",
          paper=Paper("Accelerating Neural Transformer via an Average Attention Network", "1805.00631", 2018),
          category="Others", family="average_attention", causal=True, bidirectional=False, recurrent=True,
          time="O(T·d·d_ff)", memory="O(d) state (a running sum and a count)")
class AverageAttention(TokenMixer):
    """Average attention (Zhang et al. 2018, eq. 2-4): the decoder's self-attention replaced by the
    cumulative average of its inputs, g_j = FFN((1/j) Σ_{k<=j} y_k), FFN(u) = W_2 ReLU(W_1 u), and a gating
    layer, i_j, f_j = σ(W [y_j; g_j]) and h̃_j = i_j ⊙ y_j + f_j ⊙ g_j (the residual and layer norm of
    eq. 5 are the block's). Decoding keeps a running sum and a count: an O(1) state (section 3.3).
    Forms: ``prefix`` (a cumulative sum) and ``recurrent`` (one token at a time)."""

    forms = ("prefix", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, expand: float = 4.0, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        hidden = int(expand * d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, d_model))
        self.gate = nn.Linear(2 * d_model, 2 * d_model)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"h": torch.zeros(batch, self.d_model, device=device, dtype=dtype),
                "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        count = state["pos"].to(x.dtype) + torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
        if self.form_for(x.shape[1]) == "recurrent":
            sums, total = [], state["h"]
            for x_t in x.unbind(1):
                total = total + x_t
                sums.append(total)
            sums = torch.stack(sums, dim=1)
        else:
            sums = state["h"][:, None] + x.cumsum(dim=1)
        g = self.ffn(sums / count[:, None])
        i, f = torch.sigmoid(self.gate(torch.cat([x, g], dim=-1))).chunk(2, dim=-1)
        return i * x + f * g, {"h": sums[:, -1], "pos": state["pos"] + x.shape[1]}
