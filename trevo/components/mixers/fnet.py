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
from trevo.ops.fourier_mixing import (
    fnet_dft,
    fnet_fft,
    global_filter_1d,
    global_filter_1d_circular,
    global_filter_2d,
    global_filter_2d_circular,
)
from trevo.registry import IncompatibleError, Paper, TrevoError, register


def _zero_padding(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    return x if padding_mask is None else x * padding_mask[..., None].to(x.dtype)


class _Fourier(TokenMixer):
    def __init__(self, d_model: int, *, causal: bool, impl: str) -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        if causal:
            raise IncompatibleError(f"{type(self).__name__} mixes every position with every other and "
                                    f"cannot be causal; choose a causal mixer for a causal model")


@register("mixer", "fnet", paper=Paper("FNet: Mixing Tokens with Fourier Transforms", "2105.03824", 2021),
          category="MHA/FFT", family="fourier_mixing", causal=False, bidirectional=True, forms=("fft", "dft"),
          time="O(T·d·log(T·d))", memory="O(T·d)")
class FNet(_Fourier):
    """FNet (Lee-Thorp et al. 2021, eq. 3): y = Re(FFT_seq(FFT_hidden(x))), no parameters.

    Forms: ``fft`` and ``dft`` (explicit DFT matrices, the reference)."""

    forms = ("fft", "dft")

    def __init__(self, d_model: int, *, causal: bool = False, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        x = _zero_padding(x, padding_mask)
        return fnet_dft(x) if self.pick_form(x.shape[1]) == "dft" else fnet_fft(x)


def _complex_filter(*shape: int) -> nn.Parameter:
    # GFNet's initialisation: real and imaginary parts N(0, 0.02²).
    return nn.Parameter(torch.randn(*shape, 2) * 0.02)


def _as_complex(filt: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # FFTs run in float32 for half-precision inputs (torch has no complex bfloat16).
    return torch.view_as_complex(filt.to(torch.float64 if dtype == torch.float64 else torch.float32).contiguous())


GFNET_PAPER = Paper("Global Filter Networks for Image Classification", "2107.00645", 2021)


@register("mixer", "gfnet", paper=GFNET_PAPER, category="MHA/FFT", family="fourier_mixing", causal=False,
          bidirectional=True, fixed_length=True, forms=("fft", "conv"), time="O(L·d·log L), L = max_len",
          memory="O(L·d) filter", test_options={"max_len": 19})
class GlobalFilter1D(_Fourier):
    """GFNet global filter over a sequence (Rao et al. 2021, eq. 4-5): y = irfft(K ⊙ rfft(x)),
    K ∈ C^{(L/2+1)×d} learned, L = ``max_len``; shorter inputs are zero-padded to L first.

    Forms: ``fft`` and ``conv`` (the circular convolution with k = irfft(K), the reference)."""

    forms = ("fft", "conv")

    def __init__(self, d_model: int, *, causal: bool = False, max_len: int = 1024, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        self.max_len = max_len
        self.filter = _complex_filter(max_len // 2 + 1, d_model)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        t = x.shape[1]
        if t > self.max_len:
            raise TrevoError(f"gfnet learns a filter for {self.max_len} positions (model.max_len) but got {t}; "
                             f"raise model.max_len")
        x = F.pad(_zero_padding(x, padding_mask), (0, 0, 0, self.max_len - t))
        filt = _as_complex(self.filter, x.dtype)
        mix = global_filter_1d_circular if self.pick_form(t) == "conv" else global_filter_1d
        return mix(x, filt)[:, :t].to(x.dtype).contiguous()


@register("mixer", "gfnet_2d", paper=GFNET_PAPER, category="MHA/FFT", family="fourier_mixing", causal=False,
          bidirectional=True, fixed_length=True, needs_2d=True, forms=("fft", "conv"),
          time="O(H·W·d·log(H·W))", memory="O(H·W·d) filter", test_options={"height": 4, "width": 4})
class GlobalFilter2D(_Fourier):
    """GFNet global filter layer (Rao et al. 2021, eq. 4-5): X̃ = irfft2(K ⊙ rfft2(X)) over an image's
    (H, W) grid, K ∈ C^{height×(width/2+1)×d}; smaller grids are zero-padded to (height, width).

    Needs the 2-D ``layout``. Forms: ``fft`` and ``conv`` (2-D circular convolution, the reference)."""

    forms = ("fft", "conv")

    def __init__(self, d_model: int, *, causal: bool = False, height: int = 32, width: int = 32,
                 impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        self.height, self.width = height, width
        self.filter = _complex_filter(height, width // 2 + 1, d_model)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        if layout is None or len(layout) != 2 or layout[0] * layout[1] != x.shape[1]:
            raise TrevoError(f"gfnet_2d needs a 2-D layout (H, W) with H·W = {x.shape[1]} positions, got "
                             f"{layout}; use it on an image task, or gfnet / fnet for sequences")
        h, w = layout
        if h > self.height or w > self.width:
            raise TrevoError(f"gfnet_2d holds a {self.height}×{self.width} filter but the image is {h}×{w}; "
                             f"raise the mixer's height and width options")
        img = _zero_padding(x, padding_mask).unflatten(1, (h, w))
        img = F.pad(img, (0, 0, 0, self.width - w, 0, self.height - h))
        filt = _as_complex(self.filter, x.dtype)
        mix = global_filter_2d_circular if self.pick_form(x.shape[1]) == "conv" else global_filter_2d
        return mix(img, filt)[:, :h, :w].flatten(1, 2).to(x.dtype).contiguous()
