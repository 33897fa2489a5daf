"""QRNN: the quasi-recurrent neural network (Bradbury, Merity, Xiong, Socher 2017, "Quasi-Recurrent
Neural Networks", arXiv:1611.01576, eq. 1-4).

A masked (causal) convolution of width k over time gives, for every position at once, the candidate,
forget and output gates; fo-pooling is then a diagonal linear recurrence::

    Z = tanh(W_z * X),  F = σ(W_f * X),  O = σ(W_o * X),
    c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ z_t,   h_t = o_t ⊙ c_t,

evaluated by ``trevo.ops.scan`` (log f_t = log σ(·), so decays multiply in log space).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError
from trevo.ops.scan import linear_scan
from trevo.registry import Paper, register


@register("mixer", "qrnn", paper=Paper("Quasi-Recurrent Neural Networks", "1611.01576", 2017), category="Rnn",
          family="qrnn", causal=True, bidirectional=False, recurrent=True,
          time="O(T·k·d²) convolution + O(T log T·d) scan, O(T·C·d) chunk, O(T·d) recurrent",
          memory="O(k·d) state", test_options={"chunk_size": 8})
class QRNN(TokenMixer):
    """QRNN layer with fo-pooling (Bradbury et al. 2017, eq. 1-4): gates from a causal convolution of
    ``conv_size`` taps across all channels (the masked convolution W * X, a full d × d filter per tap),
    then c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ z_t, h_t = o_t ⊙ c_t. Zoneout (the paper's regulariser) is
    not applied. Forms: ``scan`` (trains by default: with a decay per channel and step the chunk form's
    [L, L] blocks cost about 9× more on a CPU at T = 128, d = 64), ``chunk`` and ``recurrent`` of
    ``trevo.ops.scan``; generation keeps the last k − 1 inputs and c."""

    forms = ("scan", "chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, conv_size: int = 2, chunk_size: int = 64,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if conv_size < 1:
            raise IncompatibleError(f"QRNN needs conv_size >= 1 (the filter width k), got {conv_size}")
        self.conv_size, self.chunk_size = conv_size, chunk_size
        self.conv = nn.Linear(conv_size * d_model, 3 * d_model)  # taps x_{t−k+1} … x_t → (z, f, o)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": torch.zeros(batch, self.conv_size - 1, self.d_model, device=device, dtype=dtype),
                "h": torch.zeros(batch, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        T, k = x.shape[1], self.conv_size
        history = torch.cat([state["conv"].to(x.dtype), x], dim=1)
        windows = history.unfold(1, k, 1)  # [B, T, d, k]: taps oldest first
        z, f, o = self.conv(windows.transpose(-1, -2).flatten(-2)).chunk(3, dim=-1)
        log_f = F.logsigmoid(f)
        c, last = linear_scan(log_f, -torch.expm1(log_f) * torch.tanh(z), state["h"], form=self.form_for(T),
                              chunk_size=self.chunk_size)
        return torch.sigmoid(o) * c, {"conv": history[:, history.shape[1] - (k - 1):], "h": last}
