"""A small fully convolutional network for dense per-pixel regression: the convolutional baseline that
Perceiver IO's optical flow is compared with at an equal parameter count (``model.d_model`` channels,
``model.n_layers`` 3 × 3 convolutions; choose them to match the other model's parameters).

    h_0 = per-pixel features (the task's continuous input elements on its (H, W) grid)
    h_i = GELU(Conv3×3_i(h_{i−1}))     i = 1 … n_layers, dilation 2^((i−1) mod 3) (so the receptive field
                                          grows past the largest motion with few layers)
    y   = Conv1×1(h_L)                  (``info.output_dims`` numbers per pixel)

The plain encoder of FlowNetSimple (Dosovitskiy et al., "FlowNet: Learning Optical Flow with
Convolutional Networks", arXiv:1504.06852) without its striding and refinement, sized for small frames.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo


@register("model", "flow_cnn", paper=Paper("FlowNet: Learning Optical Flow with Convolutional Networks",
                                            "1504.06852", 2015), category="Arch", family="flow_cnn",
          causal=False, time="O(L·H·W·d²)", memory="O(H·W·d)")
class FlowCNN(nn.Module):
    """Per-pixel regression with 3 × 3 convolutions over the task's (H, W) grid of input features."""

    causal = False

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        self.features, self.outputs = getattr(info, "input_features", 0), getattr(info, "output_dims", 0)
        if info.head != "regress" or not self.features or not info.layout or len(info.layout) != 2:
            raise IncompatibleError(f"flow_cnn regresses numbers per pixel of an image of continuous features "
                                    f"(optical_flow); this task has head {info.head!r} and layout {info.layout}")
        if cfg.n_layers < 1:
            raise IncompatibleError(f"flow_cnn needs model.n_layers >= 1, got {cfg.n_layers}")
        self.layout = tuple(info.layout)
        layers, width = [], self.features
        for i in range(cfg.n_layers):
            dilation = 2 ** (i % 3)
            layers += [nn.Conv2d(width, cfg.d_model, 3, padding=dilation, dilation=dilation), nn.GELU()]
            width = cfg.d_model
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, self.outputs, 1)

    def forward(self, features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, H·W, F]`` → ``[B, H·W, output_dims]``."""
        h, w = self.layout
        if features.dim() != 3 or features.shape[1:] != (h * w, self.features):
            raise TrevoError(f"flow_cnn reads [batch, {h * w}, {self.features}] features, got {tuple(features.shape)}")
        x = features.to(self.head.weight.dtype).transpose(1, 2).reshape(-1, self.features, h, w)
        return self.head(self.body(x)).flatten(2).transpose(1, 2)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
