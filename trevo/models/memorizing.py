"""Memorizing Transformer (Wu et al. 2022, arXiv:2203.08913, §3): one attention layer near the top is
kNN-augmented. Its queries attend to the local context as usual (V_c) and to the ``topk`` nearest of
the (key, value) pairs of past segments kept in an external memory (V_m, ``trevo.ops.knn_memory``,
exact top-k by brute force); a learned gate per head mixes them,

    V_a = V_m ⊙ g + V_c ⊙ (1 − g),   g = σ(b_g).

The memory is not differentiable: the keys and values are stored detached after each segment, the
oldest dropped past ``memory_len`` tokens (a FIFO). With an empty memory (the first segment) nothing is
retrieved and the layer is the base model's attention. This version has no Transformer-XL cache for
the local context and does not normalise the memory's keys and queries (§3.2's fix for stale keys).

Options: ``memory_len`` (stored tokens, default 4 × the segment), ``topk`` (default 8),
``memory_layers`` (default the layer before the last, as the paper's layer 9 of 12 is near the top).
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.components.multihead import repeat_kv_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import Block
from trevo.models.segment_memory import Memory, SegmentMemoryModel
from trevo.ops.knn_memory import knn_attention
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo


@register("model", "memorizing_transformer", paper=Paper("Memorizing Transformers", "2203.08913", 2022),
          category="Memory", family="memorizing", causal=True, bidirectional=False)
class MemorizingTransformer(SegmentMemoryModel):
    """A kNN memory of past (key, value) pairs, exact top-k, gated with local attention (Wu et al. 2022, §3)."""

    arch = "memorizing_transformer"
    defaults = {"memory_len": None, "topk": 8, "memory_layers": None}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        self.memory_len = self.options["memory_len"] or 4 * info.seq_len
        self.topk = self.options["topk"]
        if self.memory_len < 1 or self.topk < 1:
            raise IncompatibleError(f"model.options.memory_len and topk must be at least 1, got {self.memory_len} "
                                    f"and {self.topk}")
        self.with_memory = self.memory_layers()
        for i in self.with_memory:
            if not isinstance(self.blocks[i].mixer, SoftmaxAttention):
                raise IncompatibleError(f"model {self.arch!r}: the kNN layer {i} must be softmax attention, got "
                                        f"{self.blocks[i].mixer.registry_entry.name!r}")
        # b_g per head and memory layer; σ(0) = ½ mixes memory and local context evenly at the start
        self.gate = nn.ParameterDict({str(i): nn.Parameter(torch.zeros(self.blocks[i].mixer.n_heads))
                                      for i in self.with_memory})

    def default_memory_layers(self) -> list[int]:
        return [max(0, len(self.blocks) - 2)]

    def init_memory(self, batch: int, device, dtype) -> Memory:
        memory = {}
        for i in self.with_memory:
            mixer = self.blocks[i].mixer
            for name in ("k", "v"):
                memory[f"{i}.{name}"] = torch.zeros(batch, mixer.n_kv_heads, 0, mixer.head_dim, device=device,
                                                    dtype=dtype)
        return memory

    def mix_with_memory(self, i: int, block: Block, x: torch.Tensor, h: torch.Tensor, memory: Memory,
                        new: Memory) -> torch.Tensor:
        mixer = block.mixer
        q, k, v = mixer._project(h, 0)
        local = mixer._attend(q, k, v, None)  # V_c
        mem_k, mem_v = memory[f"{i}.k"].detach(), memory[f"{i}.v"].detach()  # a non-differentiable memory
        if mem_k.shape[2] > 0:
            groups = mixer.n_heads // mixer.n_kv_heads
            retrieved = knn_attention(q, repeat_kv_heads(mem_k, groups), repeat_kv_heads(mem_v, groups), self.topk)
            g = torch.sigmoid(self.gate[str(i)])[None, :, None, None]
            local = retrieved * g + local * (1 - g)  # V_a
        new[f"{i}.k"] = torch.cat([mem_k, k.detach()], dim=2)[:, :, -self.memory_len:]
        new[f"{i}.v"] = torch.cat([mem_v, v.detach()], dim=2)[:, :, -self.memory_len:]
        return mixer._output(local, h)
