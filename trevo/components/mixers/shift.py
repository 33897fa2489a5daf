"""The shift operation of ShiftViT: a parameter-free token mixer for images (kind ``mixer``)."""

from __future__ import annotations

import torch

from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register


def partial_shift(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` ``[B, H, W, C]`` with four groups of ``n`` channels moved one step left, right, up and down,
    zeros filling what a shift leaves empty, and the other C − 4n channels unchanged."""
    out = x.clone()
    groups = [(2, -1), (2, 1), (1, -1), (1, 1)]  # (axis, step): left, right, up, down
    for g, (axis, step) in enumerate(groups):
        chans = slice(g * n, (g + 1) * n)
        group = x[..., chans]
        moved = torch.zeros_like(group)
        size = x.shape[axis]
        keep, into = (slice(1, size), slice(0, size - 1)) if step < 0 else (slice(0, size - 1), slice(1, size))
        dst, src = [slice(None)] * 4, [slice(None)] * 4
        dst[axis], src[axis] = into, keep
        moved[tuple(dst)] = group[tuple(src)]
        out[..., chans] = moved
    return out


@register("mixer", "shift", paper=Paper("When Shift Operation Meets Vision Transformer: An Extremely Simple "
                                        "Alternative to Attention Mechanism (ShiftViT)", "2201.10801", 2022),
          category="Others", family="shift", causal=False, bidirectional=True, needs_2d=True, time="O(T·d)",
          memory="O(T·d)")
class ShiftMixer(TokenMixer):
    """ShiftViT's shift operation (Wang et al. 2022, §3.1): a fraction γ of the channels is moved one pixel
    in each of the four directions (γ·C channels per direction, zero-filled at the border), the rest
    are left in place; no parameters and no arithmetic. γ = ``shift_ratio`` = 1/12 as in the paper."""

    def __init__(self, d_model: int, *, causal: bool = False, shift_ratio: float = 1 / 12) -> None:
        super().__init__(d_model, causal=causal)
        self.n_shifted = int(shift_ratio * d_model)
        if not 0 < shift_ratio <= 0.25 or self.n_shifted < 1:
            raise IncompatibleError(f"shift moves shift_ratio·d_model channels in each of four directions: need "
                                    f"0 < shift_ratio <= 1/4 and at least one channel, got shift_ratio={shift_ratio} "
                                    f"at d_model={d_model}")

    def bidirectional_forward(self, x, padding_mask, layout):
        h, w = self.grid(x, layout)
        if padding_mask is not None:  # padded pixels carry nothing into real ones
            x = torch.where(padding_mask[..., None], x, torch.zeros_like(x))
        return partial_shift(x.unflatten(1, (h, w)), self.n_shifted).flatten(1, 2)
