"""GILR-LSTM: the LSTM with a gated impulse linear recurrent (GILR) surrogate for its hidden state
(Martin & Cundy 2018, "Parallelizing Linear Recurrent Neural Nets Over Sequence Length",
arXiv:1709.04057, §4.1-4.2)::

    g_t = σ(V_g x_t + b_g),  j_t = tanh(V_j x_t + b_j),  h̃_t = g_t ⊙ h̃_{t−1} + (1 − g_t) ⊙ j_t,
    f_t, i_t, o_t = σ(U_{f,i,o} h̃_{t−1} + V_{f,i,o} x_t + b),  z_t = tanh(U_z h̃_{t−1} + V_z x_t + b_z),
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ z_t,   h_t = o_t ⊙ c_t.

The LSTM's gates read the linear surrogate h̃_{t−1} instead of h_{t−1}, so both recurrences (h̃ and
c) are diagonal linear ones, evaluated over the whole sequence by the paper's parallel linear
recurrence (``trevo.ops.blocked_scan``, its Algorithm 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer, keep_init
from trevo.ops.blocked_scan import blocked_scan
from trevo.ops.scan import linear_scan
from trevo.registry import Paper, register


@register("mixer", "gilr_lstm", paper=Paper("Parallelizing Linear Recurrent Neural Nets Over Sequence Length",
                                            "1709.04057", 2018),
          category="Rnn", family="gilr_lstm", causal=True, bidirectional=False, recurrent=True,
          time="O(T·d²) projections + O(T·d) recurrences (depth C + log(T/C) scan)", memory="O(d) state",
          test_options={"chunk_size": 8})
class GILRLSTM(TokenMixer):
    """GILR-LSTM (Martin & Cundy 2018, §4.2): a GILR layer h̃_t = g_t ⊙ h̃_{t−1} + (1 − g_t) ⊙ j_t
    is the linear surrogate the LSTM gates read (h̃_{t−1} in place of h_{t−1}); the cell
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ z_t is linear too, and h_t = o_t ⊙ c_t. Forms: ``scan`` (the paper's
    Algorithm 1, blocks of ``chunk_size``: ``trevo.ops.blocked_scan``), ``chunk`` and ``recurrent``
    (``trevo.ops.scan``). The forget-gate bias starts at 1."""

    forms = ("scan", "chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        self.surrogate_proj = nn.Linear(d_model, 2 * d_model)  # V_g, V_j
        self.input_proj = nn.Linear(d_model, 4 * d_model)  # V_{f,i,o,z}
        self.surrogate_gates = nn.Linear(d_model, 4 * d_model, bias=False)  # U_{f,i,o,z}
        with torch.no_grad():
            self.input_proj.bias[:d_model].fill_(1.0)
        keep_init(self.input_proj)

    def _recurrence(self, log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        form = self.form_for(b.shape[1])
        if form == "scan":
            return blocked_scan(log_a, b, h0, chunk_size=self.chunk_size)
        return linear_scan(log_a, b, h0, form=form, chunk_size=self.chunk_size)

    def init_state(self, batch: int, device, dtype) -> State:
        # h: the surrogate h̃ (what the next step's gates read); c: the LSTM cell.
        zeros = torch.zeros(batch, self.d_model, device=device, dtype=dtype)
        return {"h": zeros, "c": zeros.clone()}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        g, j = self.surrogate_proj(x).chunk(2, dim=-1)
        log_g = F.logsigmoid(g)
        surrogate, last_surrogate = self._recurrence(log_g, -torch.expm1(log_g) * torch.tanh(j), state["h"])
        previous = torch.cat([state["h"][:, None].to(x.dtype), surrogate[:, :-1]], dim=1)  # h̃_{t−1}
        f, i, o, z = (self.input_proj(x) + self.surrogate_gates(previous)).chunk(4, dim=-1)
        c, last_c = self._recurrence(F.logsigmoid(f), torch.sigmoid(i) * torch.tanh(z), state["c"])
        return torch.sigmoid(o) * c, {"h": last_surrogate, "c": last_c}
