"""Hyena: gated long convolutions with implicitly parameterised filters (Poli et al. 2023,
"Hyena Hierarchy: Towards Larger Convolutional Language Models", arXiv:2302.10866, §3).

For order N, projections (each followed by a short causal depthwise convolution) give v and gates
x⁰ … x^{N−1}; the operator is (eq. 3, in the order of the paper's code)

    z₀ = x^{N−1} ⊙ v,   z_{i+1} = x^{N−2−i} ⊙ (h^{i} * z_i + b^{i} ⊙ z_i)  (i = 0 … N−2),   y = W_out z_{N−1},

where each long filter h^{i}_t = FFN(PE(t)) · exp(−α_c t) is an MLP with sine activations of a
positional encoding, windowed by a per-channel exponential decay. The convolutions live in
``trevo.ops.long_conv``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.short_conv import ShortConv
from trevo.errors import IncompatibleError
from trevo.ops.long_conv import causal_conv_quadratic, default_block, fft_causal_conv
from trevo.registry import Paper, register

HYENA_PAPER = Paper("Hyena Hierarchy: Towards Larger Convolutional Language Models", "2302.10866", 2023)


class ImplicitFilter(nn.Module):
    """h_t = FFN(PE(t)) · exp(−|α_c| t/L) per channel: PE(t) = [t/L, cos(2πk t/L), sin(2πk t/L)]_k,
    FFN with sin(ω·) activations (Hyena §3.3, "implicit long filters"). L = ``max_len`` only scales
    t, so the filter is defined at every lag."""

    def __init__(self, channels: int, *, max_len: int, emb_bands: int = 4, hidden: int = 32, omega: float = 1.0,
                 fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2) -> None:
        super().__init__()
        self.max_len, self.omega = max_len, omega
        self.register_buffer("bands", torch.arange(1, emb_bands + 1, dtype=torch.float32), persistent=False)
        self.fc1 = nn.Linear(1 + 2 * emb_bands, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, channels, bias=False)
        # Decay rates spread from fast to slow: the window reaches ``target`` at fast..slow·(the length).
        lo, hi = math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct
        self.register_buffer("deltas", torch.linspace(lo, hi, channels).abs(), persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        """Filters ``[channels, length]``."""
        t = torch.arange(length, device=self.fc1.weight.device, dtype=self.fc1.weight.dtype)[:, None] / self.max_len
        angle = 2 * math.pi * t * self.bands.to(t.dtype)
        pe = torch.cat([t, torch.cos(angle), torch.sin(angle)], dim=-1)
        h = torch.sin(self.omega * self.fc1(pe))
        h = torch.sin(self.omega * self.fc2(h))
        h = self.fc3(h) * torch.exp(-t * self.deltas.to(t.dtype))
        return h.T


@register("mixer", "hyena", paper=HYENA_PAPER, category="LongConv", family="hyena", causal=True,
          bidirectional=False, recurrent=False,
          time="O(N·T log T·d) fft, O(N·T²·d) quadratic", memory="O(T·d) input history",
          test_options={"fft_chunk_size": 8, "filter_hidden": 8})
class Hyena(TokenMixer):
    """Hyena operator of order N (default 2): y = W_out(x⁰ ⊙ (h¹ * (x¹ ⊙ v) + b¹ ⊙ x¹ ⊙ v)) for
    N = 2, with short causal depthwise convolutions on the projections and implicit long filters
    (Poli et al. 2023, eq. 3 and Algorithm 1-3). Forms: ``fft`` (exactly causal blocked FFT
    convolution) and ``quadratic`` (O(T²) Toeplitz). Generation keeps the history of every long
    convolution's input (a growing state): there is no recurrent form."""

    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = True, order: int = 2, conv_size: int = 3,
                 filter_hidden: int = 32, max_len: int = 2048, fft_chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if order < 2:
            raise IncompatibleError(f"Hyena needs order >= 2 (one long convolution), got {order}")
        self.order, self.fft_chunk_size = order, fft_chunk_size
        self.in_proj = nn.Linear(d_model, (order + 1) * d_model)
        self.short_conv = ShortConv((order + 1) * d_model, conv_size)
        self.filters = ImplicitFilter((order - 1) * d_model, max_len=max_len, hidden=filter_hidden)
        self.bias = nn.Parameter(torch.randn(order - 1, d_model))
        self.out_proj = nn.Linear(d_model, d_model)

    def _long_conv(self, u: torch.Tensor, k: torch.Tensor, n_new: int) -> torch.Tensor:
        """The last ``n_new`` outputs of the causal convolution of the history ``u`` [B, d, t]."""
        if n_new == 1:  # one new token: its output is a dot product with the flipped filter
            return (u * k[:, :u.shape[-1]].flip(-1)).sum(-1, keepdim=True)
        T = u.shape[-1]
        if self.form_for(T) == "quadratic":
            return causal_conv_quadratic(u, k)[..., T - n_new:]
        return fft_causal_conv(u, k, self.fft_chunk_size or default_block(T))[..., T - n_new:]

    def init_state(self, batch: int, device, dtype) -> State:
        d = self.d_model
        state = {"conv": self.short_conv.init_state(batch, device, dtype)}
        for i in range(self.order - 1):
            state[f"history{i}"] = torch.zeros(batch, d, 0, device=device, dtype=dtype)
        return state

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        T = x.shape[1]
        u, conv = self.short_conv(self.in_proj(x), state["conv"])
        new_state = {"conv": conv}
        *gates, v = u.transpose(1, 2).split(self.d_model, dim=1)
        filters = self.filters(state["history0"].shape[-1] + T).unflatten(0, (self.order - 1, self.d_model))
        z = v * gates[-1]
        for i in range(self.order - 1):
            history = torch.cat([state[f"history{i}"], z], dim=-1)
            new_state[f"history{i}"] = history
            z = self._long_conv(history, filters[i], T) + self.bias[i][:, None] * z
            z = z * gates[-2 - i]
        return self.out_proj(z.transpose(1, 2)), new_state
