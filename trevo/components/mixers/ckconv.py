"""Continuous-kernel convolutions: CKConv, FlexConv and the CCNN's N-D separable FlexConv.

The filter is a small neural network of the relative position, k(p) = KernelNet(p), sampled at every
lag the input has, so one layer sees the whole sequence with a fixed number of parameters:

- CKConv (Romero, Kuzina, Bekkers, Tomczak, Hoogendoorn 2022, "CKConv: Continuous Kernel Convolution
  For Sequential Data", arXiv:2102.02611): a SIREN kernel net over all lags;
- FlexConv (Romero, Bruintjes, Tomczak, Bekkers, Hoogendoorn, van Gemert 2022, "FlexConv: Continuous
  Kernel Convolutions with Differentiable Kernel Sizes", arXiv:2110.08059): a MAGNet kernel net times a
  Gaussian mask of learned width σ, cropped where the mask is below 0.1 — the kernel size is learned;
- CCNN (Romero, Knigge, Gu, Bekkers, Gavves, Tomczak, Hoogendoorn 2022, "Towards a General Purpose CNN
  for Long Range Dependencies in ND", arXiv:2206.03398): the same separable FlexConv in 1-D or 2-D
  (an anisotropic mask, one σ per dimension), one architecture for sequences and images.

All three are depthwise (one continuous filter per channel) followed by GELU and a pointwise linear
layer: the separable form CCNN uses. The math is ``trevo.ops.ckconv`` and ``trevo.ops.long_conv``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer, keep_init
from trevo.errors import IncompatibleError
from trevo.ops.ckconv import conv2d_direct, conv2d_fft, cropped_extent, gaussian_mask, relative_positions
from trevo.ops.long_conv import (
    bidirectional_conv_quadratic,
    causal_conv_quadratic,
    default_block,
    fft_bidirectional_conv,
    fft_causal_conv,
)
from trevo.registry import Paper, register


class SirenKernel(nn.Module):
    """k(p) = W_3 sin(ω₀ W_2 sin(ω₀ W_1 p + b_1) + b_2) (SIREN, CKConv §4), with SIREN's initialisation."""

    def __init__(self, n_dims: int, channels: int, hidden: int, omega: float) -> None:
        super().__init__()
        self.omega = omega
        self.fc1, self.fc2 = nn.Linear(n_dims, hidden), nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, channels)
        with torch.no_grad():
            self.fc1.weight.uniform_(-1 / n_dims, 1 / n_dims)
            bound = math.sqrt(6 / hidden) / omega
            self.fc2.weight.uniform_(-bound, bound)
        keep_init(self.fc1, self.fc2)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        h = torch.sin(self.omega * self.fc1(p))
        return self.fc3(torch.sin(self.omega * self.fc2(h)))


class MAGNetKernel(nn.Module):
    """A multiplicative anisotropic Gabor network (FlexConv §3.3): z_1 = g_1(p),
    z_{l+1} = (U_l z_l + c_l) ⊙ g_{l+1}(p), k = W z_L, with Gabor filters
    g_l(p) = exp(−½ Σ_d γ_{l,d}(p_d − μ_{l,d})²) ⊙ sin(W_l p + b_l)."""

    def __init__(self, n_dims: int, channels: int, hidden: int, omega: float, n_filters: int = 3) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.empty(n_filters, hidden, n_dims).uniform_(-1, 1))
        self.log_gamma = nn.Parameter(torch.empty(n_filters, hidden, n_dims).uniform_(0, math.log(50.0)))
        self.freq = nn.ModuleList(nn.Linear(n_dims, hidden) for _ in range(n_filters))
        self.mix = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_filters - 1))
        self.out = nn.Linear(hidden, channels)
        with torch.no_grad():
            for i, layer in enumerate(self.freq):  # frequencies scaled by each filter's envelope width
                layer.weight.normal_().mul_(omega * torch.exp(0.5 * self.log_gamma[i]))
                layer.bias.uniform_(-math.pi, math.pi)
        keep_init(*self.freq)

    def _gabor(self, i: int, p: torch.Tensor) -> torch.Tensor:
        envelope = torch.exp(-0.5 * (torch.exp(self.log_gamma[i]) * (p[..., None, :] - self.mu[i]) ** 2).sum(-1))
        return envelope * torch.sin(self.freq[i](p))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        z = self._gabor(0, p)
        for i, mix in enumerate(self.mix, start=1):
            z = mix(z) * self._gabor(i, p)
        return self.out(z)


class _ContinuousConv(TokenMixer):
    """Depthwise continuous convolution → GELU → pointwise linear; 1-D causal and bidirectional, and
    2-D where ``n_dims`` = 2. Subclasses give the kernel net and, for FlexConv, the mask."""

    forms = ("fft", "quadratic")
    n_dims = 1

    def __init__(self, d_model: int, *, causal: bool, max_len: int, kernel_net: nn.Module,
                 fft_chunk_size: int | None, form: str) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.max_len, self.fft_chunk_size = max_len, fft_chunk_size
        self.kernel_net = kernel_net
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.point_proj = nn.Linear(d_model, d_model)

    # The kernel on a grid of offsets, times the mask where there is one.
    def mask(self, positions: torch.Tensor) -> torch.Tensor | None:
        return None

    def extent(self, available: int, dim: int, scale: int) -> int:
        """How many lags (from 0) along ``dim`` the kernel has when ``available`` are present and
        positions are divided by ``scale``."""
        return available

    def _sample(self, positions: torch.Tensor) -> torch.Tensor:
        k = self.kernel_net(positions)
        m = self.mask(positions)
        return (k if m is None else k * m[..., None]).movedim(-1, 0)  # channels first

    def kernel_1d(self, length: int, two_sided: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(forward taps [D, length], backward taps [D, length] or None): lag l and lag −(l+1)."""
        K = min(length, self.extent(length, 0, self.max_len))
        p = relative_positions(K, self.max_len, two_sided=two_sided, device=self.bias.device, dtype=self.bias.dtype)
        k = self._sample(p[:, None])
        pad = length - K
        if not two_sided:
            return F.pad(k, (0, pad)), None
        return F.pad(k[:, K - 1:], (0, pad)), F.pad(k[:, :K - 1].flip(-1), (0, pad + 1))

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        return self.point_proj(F.gelu(y + self.bias))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        if padding_mask is not None:  # padded inputs must not reach real positions
            x = torch.where(padding_mask[..., None], x, torch.zeros_like(x))
        if self.n_dims == 2 and layout is not None and len(layout) == 2:
            return self._output(self._conv2d(x, *self.grid(x, layout)))
        T = x.shape[1]
        k, k_back = self.kernel_1d(T, two_sided=True)
        conv = fft_bidirectional_conv if self.form_for(T) == "fft" else bidirectional_conv_quadratic
        return self._output(conv(x.transpose(1, 2), k, k_back).transpose(1, 2))

    def _conv2d(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        # 2-D positions are divided by the side, so the filter spans the image whatever its size.
        dy = relative_positions(self.extent(H, 0, H), H, two_sided=True, device=x.device, dtype=x.dtype)
        dx = relative_positions(self.extent(W, 1, W), W, two_sided=True, device=x.device, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)  # [2R+1, 2S+1, 2]
        k = self._sample(grid)
        u = x.transpose(1, 2).unflatten(-1, (H, W))
        y = (conv2d_fft if self.form_for(H * W) == "fft" else conv2d_direct)(u, k)
        return y.flatten(-2).transpose(1, 2)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": torch.zeros(batch, self.history_len() or 0, self.d_model, device=device, dtype=dtype)}

    def history_len(self) -> int | None:
        """The inputs generation keeps: None for the whole history (a kernel as long as the input)."""
        return None

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        history = torch.cat([state["conv"].to(x.dtype), x], dim=1)
        n, T = history.shape[1], x.shape[1]
        k, _ = self.kernel_1d(n, two_sided=False)
        u = history.transpose(1, 2)
        if T == 1:  # one new token: a dot product with the flipped filter
            y = (u * k.flip(-1)).sum(-1, keepdim=True)
        elif self.form_for(n) == "fft":
            y = fft_causal_conv(u, k, self.fft_chunk_size or default_block(n))[..., n - T:]
        else:
            y = causal_conv_quadratic(u, k)[..., n - T:]
        keep = self.history_len()
        return self._output(y.transpose(1, 2)), {"conv": history if keep is None else history[:, n - keep:]}


@register("mixer", "ckconv", paper=Paper("CKConv: Continuous Kernel Convolution For Sequential Data", "2102.02611",
                                         2022),
          category="LongConv", family="ckconv", causal=True, bidirectional=True, recurrent=False,
          time="O(T log T·d) fft + O(T·hidden²) kernel net, O(T²·d) quadratic", memory="O(T·d) input history",
          test_options={"filter_hidden": 8, "fft_chunk_size": 8})
class CKConv(_ContinuousConv):
    """CKConv (Romero et al. 2022, §3-4): y = W_p GELU(k * x + b) with the depthwise filter
    k_c(l) = SIREN(l / max_len)_c defined at every lag, so the kernel is as long as the input. The
    paper's kernel mixes channels (C_in × C_out); here it is depthwise + pointwise (the separable
    form of CCNN). Forms: ``fft`` and ``quadratic``; generation keeps the whole input history."""

    def __init__(self, d_model: int, *, causal: bool = True, max_len: int = 2048, filter_hidden: int = 32,
                 omega: float = 30.0, fft_chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, fft_chunk_size=fft_chunk_size, form=form,
                         kernel_net=SirenKernel(1, d_model, filter_hidden, omega))


class _Masked(_ContinuousConv):
    """A MAGNet kernel under a Gaussian mask of learned widths σ (one per dimension), cropped."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int, filter_hidden: int, omega: float,
                 init_size: float, fft_chunk_size: int | None, form: str) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, fft_chunk_size=fft_chunk_size, form=form,
                         kernel_net=MAGNetKernel(self.n_dims, d_model, filter_hidden, omega))
        if not 0 < init_size <= 1:
            raise IncompatibleError(f"{type(self).__name__} init_size is the fraction of max_len the kernel covers "
                                    f"at the start, in (0, 1]; got {init_size}")
        sigma = init_size / math.sqrt(-2 * math.log(0.1))
        self.log_sigma = nn.Parameter(torch.full((self.n_dims,), math.log(sigma)))

    def mask(self, positions: torch.Tensor) -> torch.Tensor:
        return gaussian_mask(positions, torch.exp(self.log_sigma).to(positions.dtype))

    def extent(self, available: int, dim: int, scale: int) -> int:
        return cropped_extent(float(torch.exp(self.log_sigma[dim].detach())), scale, available)

    def history_len(self) -> int:
        return self.extent(self.max_len, 0, self.max_len) - 1


@register("mixer", "flexconv", paper=Paper("FlexConv: Continuous Kernel Convolutions with Differentiable Kernel "
                                           "Sizes", "2110.08059", 2022),
          category="LongConv", family="ckconv", causal=True, bidirectional=True, recurrent=True,
          time="O(T log T·d) fft + O(K·hidden²) kernel net, O(T·K·d) quadratic (K the learned kernel size)",
          memory="O(K·d) state", test_options={"filter_hidden": 8, "fft_chunk_size": 8, "init_size": 0.5})
class FlexConv(_Masked):
    """FlexConv (Romero et al. 2022, §3): the depthwise filter k_c(l) = MAGNet(l/max_len)_c ·
    exp(−½(l/(σ·max_len))²), cropped to the lags where the mask exceeds 0.1: its size K follows the
    learned σ (``init_size`` of max_len at the start). Then GELU and a pointwise linear layer.
    Forms: ``fft`` and ``quadratic``; generation keeps the last K − 1 inputs."""

    def __init__(self, d_model: int, *, causal: bool = True, max_len: int = 2048, filter_hidden: int = 32,
                 omega: float = 30.0, init_size: float = 0.1, fft_chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, filter_hidden=filter_hidden, omega=omega,
                         init_size=init_size, fft_chunk_size=fft_chunk_size, form=form)


@register("mixer", "ccnn", paper=Paper("Towards a General Purpose CNN for Long Range Dependencies in ND",
                                       "2206.03398", 2022),
          category="LongConv", family="ckconv", causal=True, bidirectional=True, recurrent=True,
          time="O(N log N·d) fft (N positions, 1-D or 2-D), O(N·K·d) quadratic", memory="O(K·d) state",
          test_options={"filter_hidden": 8, "fft_chunk_size": 8, "init_size": 0.5})
class CCNN(_Masked):
    """The CCNN's separable FlexConv in N-D (Romero et al. 2022, §3-4): on a 2-D layout the filter is
    k_c(dy, dx) = MAGNet(dy/H, dx/W)_c times an anisotropic Gaussian mask (σ_y, σ_x learned), cropped,
    and convolved in 2-D; on a sequence it is the 1-D FlexConv. Then GELU and a pointwise linear layer
    (the CCNN block's mixing part; its norms and residual are the backbone's). Causal use is 1-D
    (raster order). Forms: ``fft`` and ``quadratic`` (direct convolution)."""

    n_dims = 2

    def __init__(self, d_model: int, *, causal: bool = True, max_len: int = 2048, filter_hidden: int = 32,
                 omega: float = 30.0, init_size: float = 0.5, fft_chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, filter_hidden=filter_hidden, omega=omega,
                         init_size=init_size, fft_chunk_size=fft_chunk_size, form=form)

    def _sample(self, positions: torch.Tensor) -> torch.Tensor:
        if positions.shape[-1] == 1:  # a sequence: the second coordinate is 0
            positions = F.pad(positions, (0, 1))
        return super()._sample(positions)
