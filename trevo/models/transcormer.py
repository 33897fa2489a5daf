"""Transcormer's triple-stream self-attention for the sliding language model (Song et al.
2022, "Transcormer: Transformer for Sentence Scoring with Sliding Language Modeling", arXiv:2205.12986).

Three streams share one set of weights in every layer: the forward stream (position i sees forward
positions j ≤ i), the backward stream (it sees backward positions j ≥ i) and the query stream, which
predicts token i from the forward stream before it (j < i) and the backward stream after it (j > i), and
never from token i itself. One pass gives p(x_i | x_{≠i}) at every position — the probability a masked
LM needs T passes for (the pseudo-log-likelihood of a sentence). ``forward`` returns the query stream's
logits; ``trevo.objectives.sliding_lm`` trains them.

Deviations: learned absolute positions; the query stream starts from a learned vector plus the position
(the paper's query stream input is the position embedding); pre-norm layers (LayerNorm), a GELU FFN.
"""

from __future__ import annotations

import torch

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.xlnet import StreamLayer, StreamModel
from trevo.ops.two_stream import masked_attention
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo

TRANSCORMER = Paper("Transcormer: Transformer for Sentence Scoring with Sliding Language Modeling", "2205.12986",
                    2022)


def sliding_masks(length: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(forward, backward, query) visibility ``[T, 2T]`` over the keys [forward stream; backward stream]:
    forward j ≤ i in the first half, backward j ≥ i in the second, query j < i first and j > i second."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    none = torch.zeros(length, length, dtype=torch.bool, device=device)
    return (torch.cat([j <= i, none], 1), torch.cat([none, j >= i], 1), torch.cat([j < i, j > i], 1))


class TriStreamLayer(StreamLayer):
    """One pre-norm layer (attention, then FFN) applied to the three streams with shared weights; the keys and
    values are the forward and backward streams'."""

    def forward(self, streams: tuple[torch.Tensor, ...], masks: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        qkv = [[self._heads(t) for t in self.qkv(self.norm1(s)).chunk(3, dim=-1)] for s in streams]
        k = torch.cat([qkv[0][1], qkv[1][1]], dim=2)
        v = torch.cat([qkv[0][2], qkv[1][2]], dim=2)
        out = []
        for s, (q, _, _), mask in zip(streams, qkv, masks, strict=True):
            s = s + self._merge(masked_attention(q, k, v, mask))
            out.append(s + self.ffn(self.norm2(s)))
        return tuple(out)


@register("model", "transcormer", paper=TRANSCORMER, category="Pretrain", family="transcormer")
class Transcormer(StreamModel):
    """Triple-stream self-attention (Transcormer): ``forward`` gives p(x_i | x_{≠i}) at every position in one
    pass. model.options: n_heads, expand (model.mixer, channel, norm and position are not read)."""

    arch, layer = "transcormer", TriStreamLayer

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        if info.causal == "required" or info.head == "classify":
            raise IncompatibleError("model.arch=transcormer scores every token from both sides (the sliding LM, "
                                    "train.objective=sliding_lm) on a masked-LM task (mlm, token_mlm)")
        super().__init__(cfg, info)

    def streams(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The last layer's (forward, backward, query) streams ``[B, T, d]``."""
        pos = self._positions(tokens)
        B, T = tokens.shape
        h = self.embed(tokens) + pos
        streams = (h, h, (self.query_start + pos).expand(B, T, -1))
        masks = [m[None].expand(B, T, 2 * T) for m in sliding_masks(T, tokens.device)]
        if padding_mask is not None:  # padded keys are never seen
            keys = padding_mask.bool().repeat(1, 2)[:, None, :]
            masks = [m & keys for m in masks]
        for layer in self.layers:
            streams = layer(streams, masks)
        return streams

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` of the query stream: position i's from every token but x_i."""
        return self.head(self.norm(self.streams(tokens, padding_mask)[2]))
