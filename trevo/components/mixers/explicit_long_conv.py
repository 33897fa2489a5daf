"""Long convolutions with explicitly parameterised kernels: SGConv and the simple long convolution.
The kernels live in ``trevo.ops.explicit_long_conv``, the convolutions in ``trevo.ops.long_conv``.

Both are S4-style layers without the state space: y = W_out GELU(k * u + D ⊙ u) per channel.
Causal: exactly causal blocked FFT convolution; generation keeps the input history (a growing
state, like Hyena). Bidirectional: a second, backward kernel (the S4 code base's two-sided form)
and padded tokens zeroed before the convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError, TrevoError
from trevo.ops.explicit_long_conv import (
    fit_length,
    sgconv_kernel,
    sgconv_num_scales,
    simple_long_conv_kernel,
)
from trevo.ops.long_conv import (
    bidirectional_conv_quadratic,
    causal_conv_quadratic,
    default_block,
    fft_bidirectional_conv,
    fft_causal_conv,
)
from trevo.registry import Paper, register


class _ExplicitLongConv(TokenMixer):
    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool, fft_chunk_size: int | None, form: str) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.directions = 1 if causal else 2
        self.fft_chunk_size = fft_chunk_size
        self.skip = nn.Parameter(torch.randn(d_model))
        self.out_proj = nn.Linear(d_model, d_model)

    def kernel(self, length: int) -> torch.Tensor:
        """``[directions, d_model, length]``."""
        raise NotImplementedError

    def _conv(self, u: torch.Tensor, n_new: int) -> torch.Tensor:
        """The last ``n_new`` outputs of k * u for the history ``u`` ``[B, D, t]``."""
        T = u.shape[-1]
        k = self.kernel(T).to(u.dtype)
        quadratic = self.form_for(T) == "quadratic"
        if not self.causal:
            return (bidirectional_conv_quadratic if quadratic else fft_bidirectional_conv)(u, k[0], k[1])
        if n_new == 1:  # one new token: a dot product with the flipped kernel
            return (u * k[0].flip(-1)).sum(-1, keepdim=True)
        if quadratic:
            return causal_conv_quadratic(u, k[0])[..., T - n_new:]
        return fft_causal_conv(u, k[0], self.fft_chunk_size or default_block(T))[..., T - n_new:]

    def _output(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.gelu(y + self.skip.to(u.dtype)[:, None] * u).transpose(1, 2))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        if padding_mask is not None:
            x = x * padding_mask[..., None].to(x.dtype)
        u = x.transpose(1, 2)
        return self._output(self._conv(u, u.shape[-1]), u)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"history": torch.zeros(batch, self.d_model, 0, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = x.transpose(1, 2)
        history = torch.cat([state["history"], u], dim=-1)
        return self._output(self._conv(history, u.shape[-1]), u), {"history": history}


@register("mixer", "sgconv",
          paper=Paper("What Makes Convolutional Models Great on Long Sequence Modeling?", "2210.09298", 2022),
          category="LongConv", family="explicit_long_conv", causal=True, bidirectional=True,
          time="O(T log T·d) fft, O(T²·d) quadratic", memory="O(T·d); generation keeps the input history",
          test_options={"kernel_dim": 4, "fft_chunk_size": 8})
class SGConv(_ExplicitLongConv):
    """SGConv layer (Li et al. 2022, §3.1): y = W_out GELU(k * u + D ⊙ u) with the multi-scale kernel
    k = (1/Z)[α^i · Upsample_{2^{max(i−1,0)}}(w_i)]_{i<N}, N = 1 + ⌈log₂(max_len / kernel_dim)⌉, decay α
    (default 1/2), Z the kernel's norm per channel at initialisation. Lags past the kernel's
    kernel_dim·2^{N−1} taps weigh zero, so any length works. Forms: ``fft`` and ``quadratic``."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 2048, kernel_dim: int = 64, decay: float = 0.5,
                 fft_chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, fft_chunk_size=fft_chunk_size, form=form)
        if kernel_dim < 1 or not 0 < decay <= 1:
            raise IncompatibleError(f"sgconv needs kernel_dim >= 1 and 0 < decay <= 1, got {kernel_dim}, {decay}")
        self.decay = decay
        n = sgconv_num_scales(max_len, kernel_dim)
        self.sub_kernels = nn.ParameterList(
            [nn.Parameter(torch.randn(self.directions, d_model, kernel_dim)) for _ in range(n)])
        with torch.no_grad():
            norm = sgconv_kernel(list(self.sub_kernels), decay).norm(dim=-1, keepdim=True)
        self.register_buffer("kernel_norm", norm)

    def kernel(self, length: int) -> torch.Tensor:
        return fit_length(sgconv_kernel(list(self.sub_kernels), self.decay, self.kernel_norm), length)


@register("mixer", "simple_long_conv",
          paper=Paper("Simple Hardware-Efficient Long Convolutions for Sequence Modeling", "2302.06646", 2023),
          category="LongConv", family="explicit_long_conv", causal=True, bidirectional=True, fixed_length=True,
          time="O(T log T·d) fft, O(T²·d) quadratic",
          memory="O(L·d) kernel; generation keeps the input history",
          test_options={"fft_chunk_size": 8, "squash": 0.01})
class SimpleLongConv(_ExplicitLongConv):
    """Simple long convolution (Fu et al. 2023, §3.1): y = W_out GELU(k * u + D ⊙ u) with a kernel of
    ``max_len`` taps learned directly and regularised in the forward pass, k = Smooth_p(Squash_λ(K)):
    Squash_λ(K) = sign(K)·max(|K| − λ, 0), Smooth_p an average pool over p taps. Inputs longer than
    max_len are refused. Forms: ``fft`` and ``quadratic``."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 2048, squash: float = 1e-3, smooth: int = 3,
                 fft_chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, fft_chunk_size=fft_chunk_size, form=form)
        if smooth < 1 or smooth % 2 == 0:
            raise IncompatibleError(f"simple_long_conv needs an odd smooth width >= 1, got {smooth}")
        self.max_len, self.lam, self.width = max_len, squash, smooth
        # Unit-variance output at init: the taps' variance sums to about one over the kernel.
        self.weight = nn.Parameter(torch.randn(self.directions, d_model, max_len) / math.sqrt(max_len))

    def kernel(self, length: int) -> torch.Tensor:
        if length > self.max_len:
            raise TrevoError(f"simple_long_conv learns a kernel of {self.max_len} taps (model.max_len) but got "
                             f"{length} positions; raise model.max_len")
        return simple_long_conv_kernel(self.weight, self.lam, self.width)[..., :length]
