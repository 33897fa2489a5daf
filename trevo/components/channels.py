"""Position-wise channel mixers (FFNs): the MLP and the gated linear unit family.

GLU variants follow Shazeer, "GLU Variants Improve Transformer" (arXiv:2002.05202, eq. 5-6):
FFN(x) = (act(x W) ⊙ x V) W2, with the hidden width scaled by 2/3 so that the parameter count
equals the plain MLP of the same ``expand``.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import ChannelMixer
from trevo.registry import Paper, create, register

GLU_PAPER = Paper("GLU Variants Improve Transformer", "2002.05202", 2020)


def _round(n: float, multiple: int = 8) -> int:
    return max(multiple, int(round(n / multiple)) * multiple)


@register("channel", "mlp", category="FFN", family="mlp",
          paper=Paper("Attention Is All You Need", "1706.03762", 2017), time="O(T·d²)")
class MLP(ChannelMixer):
    """FFN(x) = act(x W1 + b1) W2 + b2 with hidden width ``expand``·d (GELU by default)."""

    def __init__(self, d_model: int, expand: float = 4.0, activation: str = "gelu", bias: bool = True) -> None:
        super().__init__(d_model)
        hidden = _round(expand * d_model)
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.act = create("activation", activation)
        self.down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class GatedMLP(ChannelMixer):
    """FFN_act(x) = (act(x W) ⊙ x V) W2 — the GLU family; the activation names the variant."""

    default_activation = "sigmoid"

    def __init__(self, d_model: int, expand: float = 4.0, activation: str | None = None,
                 bias: bool = False) -> None:
        super().__init__(d_model)
        hidden = _round(expand * d_model * 2 / 3)
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=bias)
        self.act = create("activation", activation or self.default_activation)
        self.down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.act(gate) * up)


def _glu_variant(name: str, activation: str, title_paper: Paper) -> type[GatedMLP]:
    cls = type(f"GatedMLP_{name}", (GatedMLP,), {
        "default_activation": activation,
        "__doc__": f"{name}: (({activation})(x W) ⊙ x V) W2 (GLU Variants, eq. 6).",
    })
    register("channel", name, category="FFN", family="glu", paper=title_paper, time="O(T·d²)")(cls)
    return cls


GLU = _glu_variant("glu", "sigmoid", Paper("Language Modeling with Gated Convolutional Networks",
                                          "1612.08083", 2016))
Bilinear = _glu_variant("bilinear", "identity", GLU_PAPER)
ReGLU = _glu_variant("reglu", "relu", GLU_PAPER)
GEGLU = _glu_variant("geglu", "gelu", GLU_PAPER)
SwiGLU = _glu_variant("swiglu", "silu", GLU_PAPER)


@register("channel", "none", category="FFN", family="mlp",
          paper=Paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces", "2312.00752", 2023),
          time="O(1)")
class NoChannel(ChannelMixer):
    """No channel mixer: the block is its token mixer alone (Mamba's homogeneous block, §3.4), so the
    block's channel step is the identity; the block skips it (no norm, no parameters)."""

    skip = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * x  # a residual branch that adds nothing (and still has a gradient, of zeros)
