"""Memformer (Wu et al. 2020, arXiv:2010.06891, §3): a fixed number of memory slots M_t ``[n_slots, d]``,
read by every layer through cross-attention and written once per segment.

Reading (§3.1): in every layer the tokens cross-attend to the memory, H ← H + MemAttn(norm(H), M_t),
beside the layer's own mixer. Writing (§3.2, the memory writer): each slot attends to itself and to
the last layer's outputs of the segment, but not to the other slots,

    M_{t+1}^i = norm(softmax(q_i [k_{M^i}; K_H]ᵀ/√d) [v_{M^i}; V_H]),  q_i = M_t^i W_q,

so slots do not mix. The first memory is learned. The gradient flows through the memory from segment
to segment (``train.bptt_segments``; the paper's memory replay back-propagation is a memory-saving way
to compute the same gradient, not used here), and its forgetting mechanism (biased normalisation) is
not implemented.

Option: ``n_slots`` (default 8).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.multihead import merge_heads, split_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.segment_memory import Memory, SegmentMemoryModel
from trevo.ops.attention import sdpa_attention
from trevo.registry import Paper, build, register
from trevo.tasks.base import TaskInfo


class MemoryRead(nn.Module):
    """Cross-attention from the tokens to the memory slots, projected into the residual width."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, h: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        k, v = (split_heads(t, self.n_heads) for t in self.kv_proj(memory).chunk(2, -1))
        q = split_heads(self.q_proj(h), self.n_heads)
        return self.out_proj(merge_heads(sdpa_attention(q, k, v, causal=False)))


class MemoryWriter(nn.Module):
    """Each slot attends to itself and the segment's outputs (not to the other slots), then a norm."""

    def __init__(self, d_model: int, n_heads: int, norm: nn.Module) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.norm = norm

    def forward(self, memory: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_proj(memory), self.n_heads)  # [B, H, S, D]
        k_m, v_m = (split_heads(t, self.n_heads) for t in self.kv_proj(memory).chunk(2, -1))
        k_h, v_h = (split_heads(t, self.n_heads) for t in self.kv_proj(h).chunk(2, -1))
        scale = 1 / math.sqrt(q.shape[-1])
        own = (q * k_m).sum(-1, keepdim=True) * scale  # slot i's score for its own key only
        tokens = q @ k_h.transpose(-1, -2) * scale
        weights = torch.cat([own, tokens], dim=-1).softmax(-1)
        out = weights[..., :1] * v_m + weights[..., 1:] @ v_h
        return self.norm(merge_heads(out))


@register("model", "memformer", paper=Paper("Memformer: A Memory-Augmented Transformer for Sequence Modeling",
                                             "2010.06891", 2020), category="Memory", family="memformer",
          causal=True, bidirectional=False)
class Memformer(SegmentMemoryModel):
    """Memory slots read by cross-attention in every layer and written by slot-wise attention once per
    segment (Wu et al. 2020, §3)."""

    arch = "memformer"
    defaults = {"n_slots": 8}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        n_slots, d = self.options["n_slots"], cfg.d_model
        n_heads = getattr(self.blocks[0].mixer, "n_heads", 4)
        if n_slots < 1 or d % n_heads:
            raise IncompatibleError(f"memformer needs n_slots >= 1 (got {n_slots}) and model.d_model ({d}) a "
                                    f"multiple of the mixer's n_heads ({n_heads})")
        self.initial = nn.Parameter(torch.randn(n_slots, d) * self.embed.weight.std().item())
        self.reads = nn.ModuleList([MemoryRead(d, n_heads) for _ in self.blocks])
        self.writer = MemoryWriter(d, n_heads, build("norm", cfg.norm.name, cfg.norm.options, d_model=d))

    def init_memory(self, batch: int, device, dtype) -> Memory:
        return {"memory": self.initial.to(device, dtype)[None].expand(batch, -1, -1)}

    def forward_memory(self, tokens: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, Memory]:
        self._reset_scores()
        x = self._embed(tokens)
        slots = memory["memory"]
        for block, read in zip(self.blocks, self.reads, strict=True):
            h = block.norm1(x)
            x = self.channel(block, x + block.drop(block.mixer(h) + read(h, slots)))
        return self._head(x, None), {"memory": self.writer(slots, x)}
