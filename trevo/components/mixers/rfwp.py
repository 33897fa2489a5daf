"""The recurrent delta net: a fast weight programmer whose slow net is recurrent (Irie, Schlag,
Csordás, Schmidhuber 2021, "Going Beyond Linear Transformers with Recurrent Fast Weight Programmers",
arXiv:2106.06295, §3 "Recurrent Delta Net").

DeltaNet writes the fast weights with the delta rule from projections of x_t alone; here the
projections also read tanh(y_{t−1}), the fast net's previous output, which makes the layer a true
RNN (no parallel form over time). The step is ``trevo.ops.rfwp.delta_step``.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.ops.rfwp import delta_step
from trevo.registry import Paper, register


@register("mixer", "rfwp", paper=Paper("Going Beyond Linear Transformers with Recurrent Fast Weight Programmers",
                                       "2106.06295", 2021),
          category="Rnn", family="rfwp", causal=True, bidirectional=False, recurrent=True,
          time="O(T·d²) (serial in T: the slow net reads the previous output)", memory="O(d²/H) fast weights",
          test_options={"n_heads": 2})
class RecurrentDeltaNet(TokenMixer):
    """Recurrent Delta Net (Irie et al. 2021, eq. 9-13): [q, k, v, β]_t = W x_t + R tanh(y_{t−1}),
    softmax on q and k per head, S_t = S_{t−1} + σ(β_t) φ(k_t) ⊗ (v_t − S_{t−1}ᵀφ(k_t)),
    y_t = S_tᵀ φ(q_t) per head, output W_o y_t. One form (a loop over time); the state is the fast
    weights S and the previous output."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4) -> None:
        super().__init__(d_model, causal=causal)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        width = 3 * d_model + n_heads  # q, k, v and one β per head
        self.in_proj = nn.Linear(d_model, width, bias=False)  # W
        self.rec_proj = nn.Linear(d_model, width, bias=False)  # R
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        H, D = self.n_heads, self.head_dim
        return {"S": torch.zeros(batch, H, D, D, device=device, dtype=dtype),
                "h": torch.zeros(batch, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H, D, d = self.n_heads, self.head_dim, self.d_model
        S, y = state["S"], state["h"]
        outs = []
        for wx in self.in_proj(x).unbind(1):  # W x_t for every t at once, then the serial part
            p = wx + self.rec_proj(torch.tanh(y))
            q, k, v = (t.unflatten(-1, (H, D)) for t in p[:, :3 * d].split(d, dim=-1))
            y_heads, S = delta_step(S, q.softmax(-1), k.softmax(-1), v, torch.sigmoid(p[:, 3 * d:]))
            y = y_heads.flatten(1)
            outs.append(y)
        ys = torch.stack(outs, dim=1) if outs else x
        return self.out_proj(ys), {"S": S, "h": y}
