"""CrossFormer's long/short distance attention with the dynamic position bias (Wang et al.,
"CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention", arXiv:2108.00154, §3.2)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError
from trevo.ops.grid_partition import check_divides, group_coordinates, grouped_attention, merge, partition
from trevo.registry import Paper, register


class DynamicPositionBias(nn.Module):
    """DPB (§3.2.2): an MLP from the relative coordinates (Δx, Δy) to one bias per head,
    Linear → (LayerNorm → ReLU → Linear) × 3, hidden width d/4."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        hidden = max(d_model // 4, 4)

        def stage(d_out: int) -> nn.Sequential:
            return nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, d_out))

        self.net = nn.Sequential(nn.Linear(2, hidden), stage(hidden), stage(hidden), stage(n_heads))

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` ``[n, n, 2]`` → bias ``[heads, n, n]``."""
        return self.net(delta).permute(2, 0, 1)


@register("mixer", "crossformer_attention",
          paper=Paper("CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention", "2108.00154",
                      2021),
          category="MHA/LocalGlobal", family="crossformer", causal=False, bidirectional=True, needs_2d=True,
          time="O(T·G²·d) short, O(T·(T/I²)·d) long", memory="O(T·G²) or O(T²/I²) scores",
          test_options={"window": 2, "stride": 2})
class CrossFormerAttention(TokenMixer):
    """LSDA (§3.2.1): short distance attention (SDA) groups every ``window`` × ``window`` adjacent
    patches; long distance attention (LDA) groups the patches sampled at a fixed interval
    I = ``stride`` (all (i, j) with the same (i mod I, j mod I)); softmax attention inside each group,
    plus the dynamic position bias of the members' relative coordinates (in patches for SDA, in
    lattice steps for LDA, as in the paper's code). CrossFormer alternates them: with
    ``distance="auto"`` even layers (``layer_idx``) are SDA and odd ones LDA; "short" or "long" fixes one."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, window: int = 4, stride: int = 4,
                 distance: str = "auto", layer_idx: int = 0) -> None:
        super().__init__(d_model, causal=causal)
        if distance not in ("auto", "short", "long"):
            raise IncompatibleError(f"crossformer_attention: distance must be auto, short or long, got {distance!r}")
        self.distance = ("short" if layer_idx % 2 == 0 else "long") if distance == "auto" else distance
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.window, self.stride = window, stride
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.position_bias = DynamicPositionBias(d_model, n_heads)

    def groups(self) -> tuple[int, str]:
        """(step, partition kind) of this layer's grouping."""
        return (self.window, "window") if self.distance == "short" else (self.stride, "dilated")

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        size = self.grid(x, layout)
        step, kind = self.groups()
        check_divides(size, step, f"crossformer_attention: {'window' if kind == 'window' else 'stride'}")
        qkv = partition(self.qkv(x), size, step, kind)  # [B, G, n, 3d]
        q, k, v = (t.unflatten(-1, (self.n_heads, self.head_dim)).transpose(2, 3) for t in qkv.chunk(3, dim=-1))
        coords = group_coordinates(size, step, kind)[0].to(x.device)  # every group has the same shape
        local = coords % step if kind == "window" else coords // step
        delta = (local[:, None, :] - local[None, :, :]).to(x.dtype)
        bias = self.position_bias(delta)[None, None]  # [1, 1, heads, n, n]
        real = None if padding_mask is None else partition(padding_mask, size, step, kind)
        o = grouped_attention(q, k, v, bias=bias, key_padding_mask=real).transpose(2, 3).flatten(-2)
        return self.out_proj(merge(o, size, step, kind))
