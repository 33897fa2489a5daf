"""What the models with a memory across segments share (Transformer-XL, RMT, Memorizing Transformer,
Block-Recurrent Transformer): a metaformer's embedding, blocks, final norm and head, and the memory
contract that ``trevo.segments`` trains them through.

A memory model implements ``init_memory(batch, device, dtype) -> Memory`` (a flat ``dict[str,
Tensor]``, what a checkpoint stores) and ``forward_memory(tokens, memory) -> (logits, memory)``: one
segment read after the context the memory holds. ``forward(tokens)`` is one segment from the empty
memory. Whether the gradient crosses segments is the model's (Transformer-XL stops it, RMT lets it
flow) and the training loop's (``train.bptt_segments``; the memory is detached between steps).
Options (``model.options``) are each model's own; ``memory_layers`` lists the layers that carry a
memory (default: each model's paper's choice).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import Block, model_options
from trevo.models.metaformer import MetaFormer
from trevo.tasks.base import TaskInfo

Memory = dict[str, torch.Tensor]


class SegmentMemoryModel(MetaFormer):
    """A metaformer read segment by segment through a memory; subclasses set ``arch`` and ``defaults``
    and implement ``init_memory`` and either ``mix_with_memory`` (a memory layer's token mixing, inside the
    shared pre-norm layer loop of ``forward_memory``) or ``forward_memory`` itself."""

    arch = ""
    defaults: dict[str, Any] = {}
    blocks: list[Block]

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        self.options = model_options(self.arch, self.defaults, cfg.options)
        if info.head != "lm":
            raise IncompatibleError(f"model {self.arch!r} is a causal language model over segments; this task's "
                                    f"head is {info.head!r}")
        super().__init__(self.base_config(dataclasses.replace(cfg, options={})), info)
        for i, block in enumerate(self.blocks):
            if block.residual.registry_entry.name != "prenorm" or block.channel is None:
                raise IncompatibleError(f"model {self.arch!r} reads its memory inside pre-norm blocks with a "
                                        f"channel mixer; layer {i} has residual {block.residual.registry_entry.name!r}"
                                        f" and channel {'none' if block.channel is None else 'set'}: use "
                                        f"model.residual=prenorm and a channel mixer")

    def base_config(self, cfg: ModelConfig) -> ModelConfig:
        """The metaformer config the model's blocks are built from (a subclass may set a position)."""
        return cfg

    def memory_layers(self) -> list[int]:
        """The layers that carry a memory: ``memory_layers`` if set, else the subclass's default."""
        layers = self.options.get("memory_layers")
        if layers is None:
            return self.default_memory_layers()
        bad = [i for i in layers if not 0 <= i < len(self.blocks)]
        if bad or not layers:
            raise IncompatibleError(f"model.options.memory_layers must list layers in 0 … {len(self.blocks) - 1}, "
                                    f"got {layers}")
        return sorted(set(layers))

    def default_memory_layers(self) -> list[int]:
        return list(range(len(self.blocks)))

    def init_memory(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> Memory:
        raise NotImplementedError

    def forward_memory(self, tokens: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, Memory]:
        """The logits of one segment and the memory after it. Every block is pre-norm; a layer with memory
        mixes through ``mix_with_memory``, the others through their own mixer."""
        self._reset_scores()
        x = self._embed(tokens)
        new: Memory = {}
        for i, block in enumerate(self.blocks):
            h = block.norm1(x)
            y = self.mix_with_memory(i, block, x, h, memory, new) if i in self.with_memory else block.mixer(h)
            x = self.channel(block, x + block.drop(y))
        return self._head(x, None), new

    def mix_with_memory(self, i: int, block: Block, x: torch.Tensor, h: torch.Tensor, memory: Memory,
                        new: Memory) -> torch.Tensor:
        """The token-mixing output of memory layer ``i`` (its input ``x``, normed ``h``), reading ``memory``
        and writing the layer's next memory into ``new``."""
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of one segment read from the empty memory."""
        if padding_mask is not None and not bool(padding_mask.all()):
            raise IncompatibleError(f"model {self.arch!r} reads unpadded segments; this batch has padding")
        memory = self.init_memory(tokens.shape[0], tokens.device, self.embed.weight.dtype)
        return self.forward_memory(tokens, memory)[0]

    def init_state(self, batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                   ) -> dict[str, Any]:
        """The generation state before a stream: ``layers`` the memory (what the arena's state column
        counts), ``segment`` the tokens read so far of the segment not yet full ``[B, t]``, t < seq_len."""
        return {"layers": self.init_memory(batch, device, dtype),
                "segment": torch.zeros(batch, 0, dtype=torch.long, device=device)}

    def prefill(self, tokens: torch.Tensor, state: dict[str, Any] | None = None
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Logits ``[B, T, vocab]`` of ``tokens`` read after ``state``, and the state after them: the tokens
        fill the current segment; when it holds ``seq_len`` tokens the memory is updated by
        ``forward_memory`` exactly as in training, and the next segment starts empty. A segment not yet
        full is re-read whole at every call (no cache within a segment: its logits are those of the
        causal segment's prefix)."""
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device, self.embed.weight.dtype)
        memory, segment = state["layers"], state["segment"]
        out, start = [], 0
        while start < tokens.shape[1]:
            take = min(self.info.seq_len - segment.shape[1], tokens.shape[1] - start)
            segment = torch.cat([segment, tokens[:, start:start + take]], dim=1)
            start += take
            logits, after = self.forward_memory(segment, memory)
            out.append(logits[:, -take:])
            if segment.shape[1] == self.info.seq_len:
                memory, segment = after, segment[:, :0]
        return torch.cat(out, dim=1), {"layers": memory, "segment": segment}

    def step(self, token: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """token ``[B]`` → logits ``[B, vocab]`` for the next position (``prefill`` of one token)."""
        logits, state = self.prefill(token[:, None], state)
        return logits[:, 0], state

    @staticmethod
    def channel(block: Block, x: torch.Tensor) -> torch.Tensor:
        """The block's second half: x + channel(norm2(x))."""
        return x + block.drop(block.channel(block.norm2(x)))
