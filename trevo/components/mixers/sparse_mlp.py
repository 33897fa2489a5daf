"""sMLP, the sparse MLP for images: token mixing along the rows and along the columns of the grid, with
weights shared across the other axis and the channels (kind ``mixer``)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register


@register("mixer", "sparse_mlp", paper=Paper("Sparse MLP for Image Recognition: Is Self-Attention Really "
                                             "Necessary?", "2109.05422", 2022),
          category="FFN", family="sparse_mlp", causal=False, bidirectional=True, needs_2d=True, fixed_length=True,
          time="O(T·(H + W + d))", memory="O(T·d)")
class SparseMLP(TokenMixer):
    """sMLP (Tang et al. 2022, §3.2): x_H = W_H x mixes each column's H pixels, x_W = W_W x each row's W
    pixels, both shared across channels (each output pixel sees only its row and column: a sparse
    connection), and out = Fuse([x, x_H, x_W]) with a linear fuse of the 3·d channels. The grid is the
    task's ``layout`` (H, W), fixed at build."""

    def __init__(self, d_model: int, *, causal: bool = False, layout: tuple[int, ...] | None = None,
                 bias: bool = True) -> None:
        super().__init__(d_model, causal=causal)
        if layout is None or len(layout) != 2:
            raise IncompatibleError(f"sparse_mlp mixes along the rows and columns of an image, so it needs a 2-D "
                                    f"layout (H, W) at build; got {layout}")
        self.height, self.width = layout
        self.mix_h = nn.Linear(self.height, self.height, bias=bias)
        self.mix_w = nn.Linear(self.width, self.width, bias=bias)
        self.fuse = nn.Linear(3 * d_model, d_model, bias=bias)

    def bidirectional_forward(self, x, padding_mask, layout):
        h, w = self.grid(x, layout)
        if (h, w) != (self.height, self.width):
            raise IncompatibleError(f"sparse_mlp was built for a {self.height}×{self.width} grid and got {h}×{w}")
        if padding_mask is not None:  # padded pixels carry nothing into real ones
            x = torch.where(padding_mask[..., None], x, torch.zeros_like(x))
        grid = x.unflatten(1, (h, w))  # [B, H, W, C]
        along_h = self.mix_h(grid.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # mixes H for each (w, c)
        along_w = self.mix_w(grid.permute(0, 1, 3, 2)).permute(0, 1, 3, 2)  # mixes W for each (h, c)
        return self.fuse(torch.cat([grid, along_h, along_w], dim=-1)).flatten(1, 2)
