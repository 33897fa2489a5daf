"""Transformer-XL's segment-level recurrence (Dai et al. 2019, arXiv:1901.02860, §3.2, eq. 1 of the
recurrence): each layer n keeps the hidden states it received in the previous segment(s),
m^{n−1}_τ, and attends from the current segment over both,

    h̃^{n−1}_{τ+1} = [SG(m^{n−1}_τ) ∘ h^{n−1}_{τ+1}],
    q = h^{n−1}_{τ+1} W_q,  k = h̃^{n−1}_{τ+1} W_k,  v = h̃^{n−1}_{τ+1} W_v,

with SG the stop-gradient: the memory's keys and values are recomputed with the current weights, and
no gradient reaches the segments before. Its relative positions (§3.3, A_ij with u, v and W_R R_{i−j})
are ``trevo.components.position_biases.TransformerXLRelative``, the model's position unless another
relative one is given. The effective context grows with depth: N layers reach N · ``memory_len``
tokens back. ``memory_layers`` keeps a memory in some layers only (Rae & Razavi 2020, "Do
Transformers Need Deep Long-Range Memory?": the preset ``deep_long_range_memory``).

Options: ``memory_len`` (M, the cached tokens per layer; default the segment length),
``memory_layers`` (default every layer). Mixers: softmax attention and its MQA/GQA variants.
"""

from __future__ import annotations

import dataclasses

import torch

from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import Block
from trevo.models.segment_memory import Memory, SegmentMemoryModel
from trevo.registry import Paper, get, register
from trevo.tasks.base import TaskInfo

PAPER = Paper("Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context", "1901.02860", 2019)


def attend_with_memory(mixer: SoftmaxAttention, h: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Softmax attention from ``h`` ``[B, T, d]`` (normed) over ``[memory; h]``: every memory position
    and the causal past of the segment. ``memory`` ``[B, M, d]`` is normed too and carries no gradient."""
    full = torch.cat([memory, h], dim=1)
    q, k, v = mixer._project(full, 0)
    return mixer._output(mixer._attend(q[:, :, memory.shape[1]:], k, v, None), h)


@register("model", "transformer_xl", paper=PAPER, category="Memory", family="transformer_xl", causal=True,
          bidirectional=False)
class TransformerXL(SegmentMemoryModel):
    """Transformer-XL: cached previous-segment hidden states per layer, stop-gradient, relative positions
    (Dai et al. 2019, §3.2 eq. 1 and §3.3)."""

    arch = "transformer_xl"
    defaults = {"memory_len": None, "memory_layers": None}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        self.memory_len = self.options["memory_len"] or info.seq_len
        if self.memory_len < 1:
            raise IncompatibleError(f"model.options.memory_len must be at least 1, got {self.memory_len}")
        for i, block in enumerate(self.blocks):
            if not isinstance(block.mixer, SoftmaxAttention):
                raise IncompatibleError(f"model {self.arch!r} attends over cached hidden states with softmax "
                                        f"attention; layer {i}'s mixer is {block.mixer.registry_entry.name!r}: use "
                                        f"softmax_attention (or multi_query / grouped_query attention)")
        self.memory_lengths = self.layer_memory_lengths()  # layer → cached tokens
        self.with_memory = sorted(self.memory_lengths)

    def layer_memory_lengths(self) -> dict[int, int]:
        return {i: self.memory_len for i in self.memory_layers()}

    def base_config(self, cfg: ModelConfig) -> ModelConfig:
        if get("position", cfg.position.name).applies != "relative":
            if cfg.position.name != "none":
                raise IncompatibleError(f"model {self.arch!r} needs relative positions (its memory sits before "
                                        f"the segment); model.position={cfg.position.name!r} is absolute: use "
                                        f"transformer_xl (the default) or rope")
            cfg = dataclasses.replace(cfg, position=ComponentSpec("transformer_xl"))
        return cfg

    def init_memory(self, batch: int, device, dtype) -> Memory:
        d = self.cfg.d_model
        return {f"{i}.x": torch.zeros(batch, 0, d, device=device, dtype=dtype) for i in self.with_memory}

    def mix_with_memory(self, i: int, block: Block, x: torch.Tensor, h: torch.Tensor, memory: Memory,
                        new: Memory) -> torch.Tensor:
        cached = memory[f"{i}.x"].detach()  # SG(m^{n−1}_τ): the layer inputs of the segments before
        new[f"{i}.x"] = torch.cat([cached, x], dim=1)[:, -self.memory_lengths[i]:].detach()
        return attend_with_memory(block.mixer, h, block.norm1(cached))


@register("model", "deep_long_range_memory", category="Memory", family="transformer_xl", causal=True,
          bidirectional=False, paper=Paper("Do Transformers Need Deep Long-Range Memory?", "2007.03356", 2020))
class DeepLongRangeMemory(TransformerXL):
    """Transformer-XL with a long memory in a few layers only (Rae & Razavi 2020, §4): the layers of
    ``memory_layers`` (default the last, where the paper finds long memory helps most) keep
    ``memory_len`` tokens (default 4 × the segment), the others ``short_memory_len`` (default a quarter
    of the segment; 0: none)."""

    arch = "deep_long_range_memory"
    defaults = {"memory_len": None, "short_memory_len": None, "memory_layers": None}

    def default_memory_layers(self) -> list[int]:
        return [len(self.blocks) - 1]

    def layer_memory_lengths(self) -> dict[int, int]:
        long = self.options["memory_len"] or 4 * self.info.seq_len
        short = self.options["short_memory_len"]
        short = max(1, self.info.seq_len // 4) if short is None else short
        if short < 0:
            raise IncompatibleError(f"model.options.short_memory_len must be at least 0, got {short}")
        deep = self.memory_layers()
        lengths = {i: long if i in deep else short for i in range(len(self.blocks))}
        return {i: n for i, n in lengths.items() if n > 0}
