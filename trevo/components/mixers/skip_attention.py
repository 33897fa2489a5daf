"""Skip-Attention (SkipAt): a layer that computes no attention of its own and reuses an earlier layer's.

Venkataramanan et al., "Skip-Attention: Improving Vision Transformers by Paying Less Attention"
(arXiv:2301.02240, ICLR 2024), eq. 7: Z^MSA_l = Φ(Z^MSA_{l−1}), the parametric function of
``trevo.ops.skip_attention`` applied to the previous layer's self-attention output. Consecutive
skipping layers chain (each applies its own Φ to the one before's output), as in the authors' code.

The model wires it (``trevo.models.layers.share_attention``): the layer before a ``skip_attention``
layer hands its mixer output on through an ``AttentionCarry`` and this mixer maps it, ignoring its own
input. A stack whose first layer skips has nothing to reuse and is refused. Outside a metaformer stack
(the registry's contract suite, ``trevo bench``) no layer hands anything on and Φ is applied to the
mixer's own input: the same computation and cost, with the input standing for the reused output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.short_conv import ShortConv
from trevo.errors import IncompatibleError, TrevoError
from trevo.ops.skip_attention import ECA_TAPS, eca_weights, masked_mean, running_mean
from trevo.registry import Paper, register

SKIPAT_PAPER = Paper("Skip-Attention: Improving Vision Transformers by Paying Less Attention", "2301.02240", 2023)


class AttentionCarry:
    """The mixer output one layer hands to the ``skip_attention`` layer after it (read once, then cleared)."""

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None


@register("mixer", "skip_attention", paper=SKIPAT_PAPER, category="MHA/Others", family="skip_attention",
          causal=True, bidirectional=True, recurrent=True,
          time="O(T·expand·d·(d + conv_size)) — no QKᵀ", memory="O(conv_size·expand·d + d) state in generation",
          test_options={"expand": 2, "conv_size": 3})
class SkipAttention(TokenMixer):
    """SkipAt (eq. 7): Φ(Z) = ECA(FC₂(GELU(DwConv(GELU(FC₁(Z)))))) of the previous layer's attention output Z.

    DwConv: ``conv_size`` taps (odd) over the sequence, or conv_size × conv_size over a 2-D ``layout`` as in
    the paper's 5 × 5; causally the past ``conv_size`` positions, with ECA's token mean a running mean (a
    trevo adaptation: the paper's ViT is bidirectional). The paper keeps the class token's attention output
    apart; trevo's models have no class token, so every position goes through Φ."""

    reuses_attention = True  # the model hands it the previous layer's mixer output (trevo.models.layers)
    attention_carry: AttentionCarry | None = None

    def __init__(self, d_model: int, *, causal: bool, layout: tuple[int, ...] | None = None, expand: int = 2,
                 conv_size: int = 5) -> None:
        super().__init__(d_model, causal=causal)
        if expand < 1:
            raise IncompatibleError(f"skip_attention needs expand >= 1, got {expand}")
        if conv_size < 1 or (not causal and conv_size % 2 == 0):
            raise IncompatibleError(f"skip_attention needs an odd conv_size >= 1 (a centred depthwise convolution), "
                                    f"got {conv_size}")
        hidden = expand * d_model
        self.conv_size = conv_size
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)
        self.eca = nn.Parameter(torch.empty(1, 1, ECA_TAPS))
        nn.init.kaiming_uniform_(self.eca, a=5 ** 0.5)  # nn.Conv1d's default, as the authors' Conv1d
        self.image = not causal and layout is not None and len(layout) == 2
        if causal:
            self.conv = ShortConv(hidden, conv_size)
        elif self.image:
            self.conv = nn.Conv2d(hidden, hidden, conv_size, padding=conv_size // 2, groups=hidden)
        else:
            self.conv = nn.Conv1d(hidden, hidden, conv_size, padding=conv_size // 2, groups=hidden)

    def _source(self, x: torch.Tensor) -> torch.Tensor:
        """The reused attention output: the carried one in a model (read once), else the input."""
        carry = self.attention_carry
        if carry is None:
            return x
        if carry.output is None:
            raise TrevoError("skip_attention reuses the attention output of the layer before it, and none was "
                             "handed on: put a mixer that computes attention before each skip_attention layer")
        z, carry.output = carry.output, None
        return z.reshape(x.shape)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        z = self._source(x)
        h = F.gelu(self.fc1(z))
        if padding_mask is not None:  # padded positions enter the convolution as its zero padding does
            h = h * padding_mask.to(h.dtype)[..., None]
        if self.image:
            rows, cols = self.grid(x, layout)
            grid = h.transpose(1, 2).unflatten(-1, (rows, cols))
            h = self.conv(grid).flatten(-2).transpose(1, 2)
        else:
            h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        y = self.fc2(F.gelu(h))
        return eca_weights(y, masked_mean(y, padding_mask), self.eca)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": self.conv.init_state(batch, device, dtype),
                "total": torch.zeros(batch, self.d_model, device=device, dtype=dtype),
                "count": torch.zeros((), device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        z = self._source(x)
        h, conv = self.conv(F.gelu(self.fc1(z)), state["conv"])
        y = self.fc2(F.gelu(h))
        means, total = running_mean(y, state["total"], state["count"])
        return eca_weights(y, means, self.eca), {"conv": conv, "total": total, "count": state["count"] + x.shape[1]}
