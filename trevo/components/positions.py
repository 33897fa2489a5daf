"""Position encodings.

Absolute encodings (``applies="absolute"``) map positions to vectors added to the token embeddings:
``forward(positions) -> [T, d_model]``. Relative encodings (``applies="relative"``) act inside the
mixers that accept them (see a mixer's ``relative_positions`` metadata): RoPE rotates queries and
keys (``rotate``), ALiBi adds a distance bias to the scores (``bias``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.rotary import apply_rotary
from trevo.errors import TrevoError
from trevo.registry import Paper, register


class AbsolutePosition(nn.Module):
    applies = "absolute"


class RelativePosition(nn.Module):
    applies = "relative"


@register("position", "none", category="Pe", family="position", applies="absolute",
          paper=Paper("Transformer Language Models without Positional Encodings Still Learn Positional "
                      "Information (NoPE)", "2203.16634", 2022))
class NoPosition(AbsolutePosition):
    """No position encoding (NoPE): causal masking alone carries order."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model

    def forward(self, positions: torch.Tensor) -> torch.Tensor | None:
        return None


@register("position", "sinusoidal", category="Pe", family="position", applies="absolute",
          paper=Paper("Attention Is All You Need", "1706.03762", 2017))
class SinusoidalPosition(AbsolutePosition):
    """PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(p / base^(2i/d)) (Vaswani et al., §3.5)."""

    def __init__(self, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        self.d_model = d_model
        inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions.to(torch.float64)[:, None] * self.inv_freq[None, :]
        pe = torch.zeros(positions.shape[0], self.d_model, dtype=torch.float64, device=positions.device)
        pe[:, 0::2] = torch.sin(angles)
        pe[:, 1::2] = torch.cos(angles[:, : self.d_model // 2])
        return pe.to(torch.get_default_dtype())


@register("position", "randomized_sinusoidal", category="Pe", family="position", applies="absolute",
          paper=Paper("Randomized Positional Encodings Boost Length Generalization of Transformers",
                      "2305.16843", 2023))
class RandomizedSinusoidalPosition(SinusoidalPosition):
    """Randomized positions (Ruoss et al. 2023) on the sinusoidal table: in training, a sequence of T
    tokens gets a sorted draw of T distinct positions from [0, ``max_positions``), so the positions of
    longer test sequences are in distribution. In evaluation (and generation) the positions are the
    consecutive ones given (trevo's choice: it keeps evaluation deterministic and prefill + steps equal
    to a forward)."""

    def __init__(self, d_model: int, max_positions: int = 2048, base: float = 10000.0) -> None:
        super().__init__(d_model, base)
        self.max_positions = max_positions

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if self.training:
            t = positions.shape[0]
            if t > self.max_positions:
                raise TrevoError(f"randomized_sinusoidal draws {t} distinct positions from max_positions="
                                 f"{self.max_positions}; raise max_positions to at least the sequence length")
            positions = torch.randperm(self.max_positions, device=positions.device)[:t].sort().values
        return super().forward(positions)


@register("position", "learned", category="Pe", family="position", applies="absolute", fixed_length=True,
          paper=Paper("BERT: Pre-training of Deep Bidirectional Transformers", "1810.04805", 2018))
class LearnedPosition(AbsolutePosition):
    """A learned vector per position index, up to ``max_len`` (no spatial structure at all)."""

    def __init__(self, d_model: int, max_len: int = 1024) -> None:
        super().__init__()
        self.max_len = max_len
        self.table = nn.Parameter(torch.randn(max_len, d_model))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise TrevoError(
                f"position {int(positions.max())} is past the learned position table of length "
                f"{self.max_len}; build the model with a larger max_len (model.max_len) or use a "
                f"length-free position (none, sinusoidal, rope, alibi)"
            )
        return self.table[positions]


@register("position", "rope", category="Pe", family="position", applies="relative",
          paper=Paper("RoFormer: Enhanced Transformer with Rotary Position Embedding", "2104.09864", 2021))
class RotaryPosition(RelativePosition):
    """RoPE: rotate each (x_i, x_{i+d/2}) pair of q and k by angle p·θ_i, θ_i = base^(-2i/d), so that
    q_m·k_n depends on m - n only (RoFormer eq. 34; the half-split pairing of GPT-NeoX)."""

    def __init__(self, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        self.base = base

    def rotate(self, x: torch.Tensor, offset: int = 0, *, key: bool = False) -> torch.Tensor:
        """x: ``[B, H, T, D]`` at positions offset .. offset+T-1 (queries and keys alike)."""
        return apply_rotary(x, offset, self.base)


@register("position", "xpos", category="Pe", family="position", applies="relative",
          paper=Paper("A Length-Extrapolatable Transformer", "2212.10554", 2022))
class XPosPosition(RelativePosition):
    """xPos: RoPE with an exponential decay per frequency, q_n scaled by ζ_i^(n/γ) and k_m by ζ_i^(−m/γ),
    ζ_i = (2i/D + 0.4)/1.4, γ = ``scale_base`` = 512 (Sun et al. 2022, eq. 7-8, the torchscale
    constants), so the score of q_n and k_m is a RoPE score with pair i weighted by ζ_i^((n−m)/γ):
    it depends on n − m only and decays with distance on the fast-rotating pairs. The scales are
    exact powers of absolute positions: past ~γ·70 tokens float32 under- or overflows."""

    def __init__(self, d_model: int, base: float = 10000.0, scale_base: float = 512.0) -> None:
        super().__init__()
        self.base, self.scale_base = base, scale_base

    def rotate(self, x: torch.Tensor, offset: int = 0, *, key: bool = False) -> torch.Tensor:
        d, t = x.shape[-1], x.shape[-2]
        zeta = (torch.arange(0, d, 2, device=x.device, dtype=torch.float64) / d + 0.4) / 1.4
        pos = offset + torch.arange(t, device=x.device, dtype=torch.float64)
        power = (-pos if key else pos)[:, None] / self.scale_base
        scale = zeta[None, :] ** power  # [T, D/2], one scale per rotated pair
        return apply_rotary(x, offset, self.base) * torch.cat([scale, scale], dim=-1).to(x.dtype)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes 2^(-8h/n) for h = 1..n; for n not a power of two, the closest power's slopes plus
    every other slope of the next power (Press et al., the reference implementation's rule)."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


@register("position", "alibi", category="Pe", family="position", applies="relative",
          paper=Paper("Train Short, Test Long: Attention with Linear Biases Enables Input Length "
                      "Extrapolation", "2108.12409", 2021))
class ALiBiPosition(RelativePosition):
    """ALiBi: add -m_h·(i - j) to the score of query i and key j (causal); -m_h·|i - j| when
    bidirectional. No position embedding at all."""

    def __init__(self, d_model: int) -> None:
        super().__init__()

    def bias(self, n_heads: int, tq: int, tk: int, *, device: torch.device | None = None) -> torch.Tensor:
        """``[H, Tq, Tk]`` with the queries at the last Tq of Tk positions."""
        i = torch.arange(tk - tq, tk, device=device)[:, None]
        j = torch.arange(tk, device=device)[None, :]
        distance = (i - j).abs().to(torch.float32)
        return -alibi_slopes(n_heads).to(device)[:, None, None] * distance[None]


def permutation_powers(permutation: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """π^p for p = start … start + count − 1 of permutations ``[H, m]`` (index maps), as ``[H, count, m]``:
    π^start by repeated squaring, then one composition per position."""
    heads, m = permutation.shape
    identity = torch.arange(m, device=permutation.device).expand(heads, m)
    power, base, e = identity, permutation, start
    while e:  # power = π^start
        if e & 1:
            power = power.gather(-1, base)
        base, e = base.gather(-1, base), e >> 1
    out = []
    for _ in range(count):
        out.append(power)
        power = power.gather(-1, permutation)
    return torch.stack(out, dim=1) if out else identity[:, :0]


@register("position", "permuteformer", category="Pe", family="position", applies="relative",
          paper=Paper("PermuteFormer: Efficient Relative Position Encoding for Long Sequences", "2109.02377", 2021))
class PermutePosition(RelativePosition):
    """PermuteFormer's position-aware permutation (Chen 2021): the random features of a query or key at
    position p are permuted by π^p, π a fixed random permutation per head, so that
    φ(q_i)[π^i]·φ(k_j)[π^j] = Σ_b φ(q_i)_b φ(k_j)_{π^{j−i}(b)} depends on j − i only, and linear
    attention keeps its O(T) cost and its recurrent state. Without the paper's optional r^i decay.
    The mixer calls ``attach(n_heads=, n_features=)`` once; ``seed`` fixes π."""

    def __init__(self, d_model: int, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def attach(self, *, n_heads: int, n_features: int) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        perms = torch.stack([torch.randperm(n_features, generator=generator) for _ in range(n_heads)])
        self.register_buffer("permutation", perms, persistent=False)

    def permute(self, features: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """features ``[B, H, T, m]`` at positions offset … offset + T − 1, each permuted by π^position."""
        index = permutation_powers(self.permutation.to(features.device), offset, features.shape[-2])
        return features.gather(-1, index.expand(features.shape[0], -1, -1, -1))
