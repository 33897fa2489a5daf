"""FNet and the Global Filter Network (1-D and 2-D): token mixing by Fourier transforms.

Both mix every position with every other, so they are bidirectional only. Padding: a Fourier
transform sums over all positions, so padded positions are set to zero before mixing (the papers
do not mask; with zeros, the real positions' outputs do not depend on what the padding held).
The math lives in ``trevo.ops.fourier_mixing``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError, TrevoError
from trevo.ops.fourier_mixing import (
    fnet_dft,
    fnet_fft,
    global_filter_1d,
    global_filter_1d_circular,
    global_filter_2d,
    global_filter_2d_circular,
)
from trevo.registry import Paper, register


def _zero_padding(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    return x if padding_mask is None else x * padding_mask[..., None].to(x.dtype)


@register("mixer", "fnet", paper=Paper("FNet: Mixing Tokens with Fourier Transforms", "2105.03824", 2021),
          category="MHA/FFT", family="fourier_mixing", causal=False, bidirectional=True,
          time="O(T·d·log(T·d))", memory="O(T·d)")
class FNet(TokenMixer):
    """FNet (Lee-Thorp et al. 2021, eq. 3): y = Re(FFT_seq(FFT_hidden(x))), no parameters.

    Forms: ``fft`` and ``quadratic`` (explicit DFT matrices, the reference)."""

    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = False, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        x = _zero_padding(x, padding_mask)
        return fnet_dft(x) if self.form_for(x.shape[1]) == "quadratic" else fnet_fft(x)


def _complex_filter(*shape: int) -> nn.Parameter:
    # GFNet's initialisation: real and imaginary parts N(0, 0.02²).
    return nn.Parameter(torch.randn(*shape, 2) * 0.02)


def _as_complex(filt: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # FFTs run in float32 for half-precision inputs (torch has no complex bfloat16).
    return torch.view_as_complex(filt.to(torch.float64 if dtype == torch.float64 else torch.float32).contiguous())


GFNET_PAPER = Paper("Global Filter Networks for Image Classification", "2107.00645", 2021)


@register("mixer", "gfnet", paper=GFNET_PAPER, category="MHA/FFT", family="fourier_mixing", causal=False,
          bidirectional=True, fixed_length=True, time="O(L·d·log L), L = max_len",
          memory="O(L·d) filter")
class GlobalFilter1D(TokenMixer):
    """GFNet global filter over a sequence (Rao et al. 2021, eq. 4-5): y = irfft(K ⊙ rfft(x)),
    K ∈ C^{(L/2+1)×d} learned, L = ``max_len``; shorter inputs are zero-padded to L first.

    Forms: ``fft`` and ``quadratic`` (the circular convolution with k = irfft(K), the reference)."""

    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = False, max_len: int = 1024, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.max_len = max_len
        self.filter = _complex_filter(max_len // 2 + 1, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        t = x.shape[1]
        if t > self.max_len:
            raise TrevoError(f"gfnet learns a filter for {self.max_len} positions (model.max_len) but got {t}; "
                             f"raise model.max_len")
        x = F.pad(_zero_padding(x, padding_mask), (0, 0, 0, self.max_len - t))
        filt = _as_complex(self.filter, x.dtype)
        mix = global_filter_1d_circular if self.form_for(t) == "quadratic" else global_filter_1d
        return mix(x, filt)[:, :t].to(x.dtype).contiguous()


@register("mixer", "gfnet_2d", paper=GFNET_PAPER, category="MHA/FFT", family="fourier_mixing", causal=False,
          bidirectional=True, fixed_length=True, needs_2d=True,
          time="O(H·W·d·log(H·W))", memory="O(H·W·d) filter")
class GlobalFilter2D(TokenMixer):
    """GFNet global filter layer (Rao et al. 2021, eq. 4-5): X̃ = irfft2(K ⊙ rfft2(X)) over an image's
    (H, W) grid, K ∈ C^{H×(W/2+1)×d}, built for the task's grid (``layout``); smaller grids are
    zero-padded to it. Forms: ``fft`` and ``quadratic`` (2-D circular convolution, the reference)."""

    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = False, layout: tuple[int, ...] | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if layout is None or len(layout) != 2:
            raise IncompatibleError(f"gfnet_2d learns a filter over a 2-D grid and needs the task's 2-D layout, got "
                                    f"{layout}; use it on an image task, or gfnet / fnet for sequences")
        height, width = layout
        self.height, self.width = height, width
        self.filter = _complex_filter(height, width // 2 + 1, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        h, w = self.grid(x, layout)
        if h > self.height or w > self.width:
            raise TrevoError(f"gfnet_2d holds a {self.height}×{self.width} filter (built for the task's grid) but "
                             f"the image is {h}×{w}")
        img = _zero_padding(x, padding_mask).unflatten(1, (h, w))
        img = F.pad(img, (0, 0, 0, self.width - w, 0, self.height - h))
        filt = _as_complex(self.filter, x.dtype)
        mix = global_filter_2d_circular if self.form_for(x.shape[1]) == "quadratic" else global_filter_2d
        return mix(img, filt)[:, :h, :w].flatten(1, 2).to(x.dtype).contiguous()
