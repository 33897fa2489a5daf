"""RWKV-4: time-mix (the token mixer) and channel-mix (its FFN), both with token shift.

Peng et al., "RWKV: Reinventing RNNs for the Transformer Era" (arXiv:2305.13048), eq. 11-17.
The WKV operator and its stable forms live in ``trevo.ops.rwkv4``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import ChannelMixer, State, TokenMixer
from trevo.components.token_shift import token_shift
from trevo.ops.rwkv4 import wkv4, wkv4_init_state
from trevo.registry import Paper, register

RWKV_PAPER = Paper("RWKV: Reinventing RNNs for the Transformer Era", "2305.13048", 2023)


def _ratio(layer_idx: int, n_layers: int) -> float:
    return layer_idx / max(1, n_layers - 1)


@register("mixer", "rwkv4", paper=RWKV_PAPER, category="LongConv", family="rwkv4", causal=True,
          bidirectional=False, recurrent=True,
          time="O(T·L·d) chunk, O(T²·d) quadratic, O(T·d) recurrent", memory="O(d) state",
          test_options={"chunk_size": 8})
class RWKV4TimeMix(TokenMixer):
    """RWKV-4 time-mix: r, k, v from token-shifted inputs (eq. 11-13), WKV with per-channel decay w
    and bonus u (eq. 14), output W_o(σ(r) ⊙ wkv) (eq. 15).

    Forms: ``chunk`` (time-parallel inside chunks of ``chunk_size``), ``quadratic`` (one chunk: the
    whole sequence, O(T²) memory) and ``recurrent`` (time-sequential, the RNN mode)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, chunk_size: int = 16, layer_idx: int = 0,
                 n_layers: int = 1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        ratio0, ratio1 = _ratio(layer_idx, n_layers), 1.0 - _ratio(layer_idx, n_layers)
        h = torch.arange(d_model, dtype=torch.float32) / max(1, d_model - 1)
        # The RWKV-4 initialisation: decays spread from fast to slow channels, deeper layers slower.
        self.time_decay = nn.Parameter(-5 + 8 * h ** (0.7 + 1.3 * ratio0))
        zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(d_model)], dtype=torch.float32) * 0.5
        self.time_first = nn.Parameter(torch.full((d_model,), math.log(0.3)) + zigzag)
        x = torch.arange(d_model, dtype=torch.float32) / d_model
        self.time_mix_k = nn.Parameter(x ** ratio1)
        self.time_mix_v = nn.Parameter(x ** ratio1 + 0.3 * ratio0)
        self.time_mix_r = nn.Parameter(x ** (0.5 * ratio1))
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        a, b, p = wkv4_init_state(batch, self.d_model, device, dtype)
        return {"x_prev": torch.zeros(batch, self.d_model, device=device, dtype=dtype), "a": a, "b": b, "p": p}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        xx = token_shift(x, state["x_prev"])
        k = self.key(x * self.time_mix_k + xx * (1 - self.time_mix_k))
        v = self.value(x * self.time_mix_v + xx * (1 - self.time_mix_v))
        r = self.receptance(x * self.time_mix_r + xx * (1 - self.time_mix_r))
        w, u = torch.exp(self.time_decay), self.time_first
        wkv_state = (state["a"], state["b"], state["p"])
        wkv, (a, b, p) = wkv4(w, u, k, v, wkv_state, form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        y = self.output(torch.sigmoid(r) * wkv)
        return y, {"x_prev": x[:, -1], "a": a, "b": b, "p": p}


@register("channel", "rwkv4_channel", paper=RWKV_PAPER, category="FFN", family="rwkv4", time="O(T·d²)")
class RWKV4ChannelMix(ChannelMixer):
    """RWKV-4 channel-mix: σ(r) ⊙ W_v max(k, 0)², with r, k from token-shifted inputs (eq. 16-17)."""

    def __init__(self, d_model: int, expand: float = 4.0, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model)
        ratio1 = 1.0 - _ratio(layer_idx, n_layers)
        x = torch.arange(d_model, dtype=torch.float32) / d_model
        self.time_mix_k = nn.Parameter(x ** ratio1)
        self.time_mix_r = nn.Parameter(x ** ratio1)
        hidden = int(expand * d_model)
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)

    def _mix(self, x: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        k = torch.relu(self.key(x * self.time_mix_k + xx * (1 - self.time_mix_k))).square()
        r = torch.sigmoid(self.receptance(x * self.time_mix_r + xx * (1 - self.time_mix_r)))
        return r * self.value(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x, token_shift(x))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"x_prev": torch.zeros(batch, self.d_model, device=device, dtype=dtype)}

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        last = None if state is None else state["x_prev"]
        return self._mix(x, token_shift(x, last)), {"x_prev": x[:, -1]}

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, state = self.prefill(x_t[:, None], state)
        return y[:, 0], state
