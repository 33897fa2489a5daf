"""DeLighT's DExTra, the deep-and-light expand-reduce transformation (Mehta et al., "DeLighT: Deep and
Light-weight Transformer", ICLR 2021, arXiv:2008.00623, §3.1), as a channel mixer.

N group linear transformations (GLTs): layer l splits its input into g_l groups and maps each with its
own weight (a block-diagonal weight, ``group_linear``), then shuffles the features across the groups
(ShuffleNet's channel shuffle, ``shuffle_groups``) so the next layer's groups see every previous group.
The first ⌈N/2⌉ layers expand the width linearly from d to w_m·d with g_l = min(2^l, g_max) groups, the
rest mirror them back (eq. 2-3); every layer after the first reads its predecessor's output mixed with
the block input X group by group (the input-mixer connection H, ``mix_groups``). A final linear maps the
last GLT output, mixed with X, back to d.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import ChannelMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, create, register


def group_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x ``[..., g·n]`` through ``weight`` ``[g, n, m]``: group i of n inputs to group i of m outputs,
    ``[..., g·m]`` (x times the block-diagonal matrix of the g blocks)."""
    g, n, m = weight.shape
    y = torch.einsum("...gn,gnm->...gm", x.unflatten(-1, (g, n)), weight).flatten(-2)
    return y if bias is None else y + bias


def shuffle_groups(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``[..., g·m]`` read as g × m, transposed, so that feature j of
    group i moves to position j·g + i (every group of the next split holds one feature of each)."""
    return x.unflatten(-1, (groups, -1)).transpose(-1, -2).flatten(-2)


def mix_groups(x: torch.Tensor, y: torch.Tensor, groups: int) -> torch.Tensor:
    """DeLighT's input mixer H(X, Y): both split into ``groups`` groups, group i of X followed by group i
    of Y, ``[..., dx + dy]``."""
    return torch.cat([x.unflatten(-1, (groups, -1)), y.unflatten(-1, (groups, -1))], dim=-1).flatten(-2)


def dextra_layout(d_model: int, expand: float, n_group_layers: int,
                  max_groups: int) -> list[tuple[int, int, int]]:
    """(inputs, outputs, groups) of each GLT: output widths linear from d to ``expand``·d over the first
    ⌈N/2⌉ layers and mirrored back to d (the reference implementation's schedule), groups
    min(2^l, ``max_groups``) mirrored the same way, each width rounded up to a multiple of the groups that
    read or write it."""
    if n_group_layers < 2:
        raise IncompatibleError(f"dextra expands then reduces, so n_group_layers must be at least 2; got "
                                f"{n_group_layers}")
    divides_d = d_model & -d_model  # the largest power of two dividing d: X splits into every layer's groups
    mid = math.ceil(n_group_layers / 2)
    groups = [min(2 ** (i + 1), max_groups, divides_d) for i in range(mid)]
    widths = [round(d_model + (expand * d_model - d_model) * i / max(mid - 1, 1)) for i in range(mid)]
    tail = slice(None, None, -1) if n_group_layers % 2 == 0 else slice(-2, None, -1)
    groups, widths = groups + groups[tail], widths + widths[tail]
    layout, n_in = [], d_model
    for i in range(n_group_layers):
        if i == n_group_layers - 1:
            n_out = d_model
        else:
            multiple = max(groups[i], groups[i + 1])
            n_out = math.ceil(widths[i] / multiple) * multiple
        layout.append((n_in, n_out, groups[i]))
        n_in = n_out + d_model  # the next layer reads X mixed in
    return layout


@register("channel", "dextra", category="FFN", family="dextra", time="O(T·d²·w_m/g)",
          paper=Paper("DeLighT: Deep and Light-weight Transformer", "2008.00623", 2021))
class DExTra(ChannelMixer):
    """DExTra (Mehta et al. 2021, §3.1, eq. 2-3): ``n_group_layers`` GLTs expanding d to ``expand``·d
    and reducing back, g_l = min(2^l, ``max_groups``) groups (capped by the largest power of two dividing
    d), feature shuffling after each GLT of several groups (``shuffle``), the input mixer H(X, Y^{l−1})
    before every layer after the first, the activation after each, and ``down`` mapping H(X, Y^N) to d.
    Deviations: no per-layer LayerNorm or dropout (trevo's block places the norm), no input projection
    (d_m = d_o = d, the channel mixer's contract)."""

    def __init__(self, d_model: int, expand: float = 2.0, n_group_layers: int = 4, max_groups: int = 8,
                 activation: str = "gelu", shuffle: bool = True) -> None:
        super().__init__(d_model)
        self.layout = dextra_layout(d_model, expand, n_group_layers, max_groups)
        self.shuffle = shuffle
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(g, n // g, m // g) * (n // g) ** -0.5)
                                        for n, m, g in self.layout)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(m)) for _, m, _ in self.layout)
        self.act = create("activation", activation)
        self.down = nn.Linear(d_model + d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i:
                y = mix_groups(x, y, self.layout[i][2])
            y = group_linear(y, weight, bias)
            if self.shuffle and self.layout[i][2] > 1:
                y = shuffle_groups(y, self.layout[i][2])
            y = self.act(y)
        return self.down(torch.cat([x, y], dim=-1))  # H with one group: X then Y^N
