"""Compressive Transformer (Rae et al. 2019, arXiv:1911.05507, §3): Transformer-XL's memory of the last
n_m layer inputs, plus a compressed memory of n_cm older ones. When a segment of n_s tokens arrives,
the n_s oldest memories drop out of the memory and are compressed at rate c by a compression function
f_c (``compression``: ``conv``, a 1-D convolution of kernel and stride c, the paper's best; ``mean`` or
``max`` pooling) into n_s / c compressed memories, appended to the compressed memory (a FIFO of
n_cm). Attention reads [SG(cm); SG(m); h].

The compression network is trained by the attention-reconstruction loss (Algorithm 2): in every
layer, ‖attn(h, old) − attn(h, f_c(old))‖² with the attention's weights and h held constant (so it
trains f_c alone), ``auxiliary_loss()`` of each layer's compressor, which ``trevo train`` adds to the
task loss. Here the loss uses content attention (q·k, without the relative terms).

Options: ``memory_len`` (n_m, default the segment; a multiple of it), ``compressed_len`` (n_cm,
default n_m), ``compression_rate`` (c, default 2; it divides the segment), ``compression``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.multihead import repeat_kv_heads, split_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import Block
from trevo.models.segment_memory import Memory
from trevo.models.transformer_xl import TransformerXL, attend_with_memory
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo

COMPRESSIONS = ("conv", "mean", "max")


class Compressor(nn.Module):
    """f_c: ``[B, L, d]`` → ``[B, L / c, d]``, and the attention-reconstruction loss it is trained by."""

    def __init__(self, d_model: int, rate: int, kind: str) -> None:
        super().__init__()
        self.rate, self.kind = rate, kind
        self.conv = nn.Conv1d(d_model, d_model, rate, stride=rate) if kind == "conv" else None
        self.pending: list[torch.Tensor] = []  # reconstruction losses of the segments since the last step

    def forward(self, old: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.conv(old.transpose(1, 2)).transpose(1, 2)
        pool = F.avg_pool1d if self.kind == "mean" else F.max_pool1d
        return pool(old.transpose(1, 2), self.rate).transpose(1, 2)

    def reconstruction_loss(self, mixer: nn.Module, h: torch.Tensor, old: torch.Tensor,
                            compressed: torch.Tensor) -> torch.Tensor:
        """‖attn(h, old) − attn(h, compressed)‖², mean over elements; only ``compressed`` carries a gradient."""
        q_w, kv_w = mixer.q_proj.weight.detach(), mixer.kv_proj.weight.detach()
        q = split_heads(F.linear(h.detach(), q_w), mixer.n_heads)
        groups = mixer.n_heads // mixer.n_kv_heads

        def attend(memory: torch.Tensor) -> torch.Tensor:
            k, v = (repeat_kv_heads(split_heads(t, mixer.n_kv_heads), groups)
                    for t in F.linear(memory, kv_w).chunk(2, dim=-1))
            return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v

        return (attend(old.detach()) - attend(compressed)).pow(2).mean()

    def auxiliary_loss(self) -> torch.Tensor:
        terms, self.pending = self.pending, []
        if not terms:
            return torch.zeros((), device=next(self.parameters(), torch.zeros(())).device)
        return torch.stack(terms).sum()


@register("model", "compressive_transformer", category="Memory", family="compressive", causal=True,
          bidirectional=False, paper=Paper("Compressive Transformers for Long-Range Sequence Modelling",
                                           "1911.05507", 2019))
class CompressiveTransformer(TransformerXL):
    """Transformer-XL's memory plus a compressed memory f_c(old memories), trained by attention
    reconstruction (Rae et al. 2019, §3, Algorithms 1 and 2)."""

    arch = "compressive_transformer"
    defaults = {"memory_len": None, "compressed_len": None, "compression_rate": 2, "compression": "conv",
                "memory_layers": None}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        rate, kind = self.options["compression_rate"], self.options["compression"]
        self.compressed_len = self.options["compressed_len"] or self.memory_len
        if kind not in COMPRESSIONS:
            raise IncompatibleError(f"model.options.compression must be one of {', '.join(COMPRESSIONS)}, "
                                    f"got {kind!r}")
        if rate < 1 or info.seq_len % rate or self.memory_len % info.seq_len or self.compressed_len < 1:
            raise IncompatibleError(f"compressive_transformer needs compression_rate ({rate}) to divide the segment "
                                    f"length ({info.seq_len}), memory_len ({self.memory_len}) to be a multiple of "
                                    f"it, and compressed_len >= 1; change model.options or task.seq_len")
        self.compressors = nn.ModuleDict({str(i): Compressor(cfg.d_model, rate, kind) for i in self.with_memory})

    def init_memory(self, batch: int, device, dtype) -> Memory:
        memory = super().init_memory(batch, device, dtype)
        for i in self.with_memory:
            memory[f"{i}.compressed"] = torch.zeros(batch, 0, self.cfg.d_model, device=device, dtype=dtype)
        return memory

    def mix_with_memory(self, i: int, block: Block, x: torch.Tensor, h: torch.Tensor, memory: Memory,
                        new: Memory) -> torch.Tensor:
        cached, compressed = memory[f"{i}.x"].detach(), memory[f"{i}.compressed"].detach()
        context = block.norm1(torch.cat([compressed, cached], dim=1))
        full = torch.cat([cached, x], dim=1)
        old, new[f"{i}.x"] = full[:, :-self.memory_len], full[:, -self.memory_len:].detach()
        # a segment not yet full (generation's prefix of one) leaves a remainder of the rate: its memory is
        # never kept (``SegmentMemoryModel.prefill`` keeps the memory of full segments only), so it skips f_c
        if old.shape[1] and old.shape[1] % self.compressors[str(i)].rate == 0:
            compressor = self.compressors[str(i)]
            squeezed = compressor(old.detach())
            if self.training and torch.is_grad_enabled():
                frozen_norm = {k: v.detach() for k, v in block.norm1.named_parameters()}
                normed = torch.func.functional_call(block.norm1, frozen_norm, (squeezed,))
                compressor.pending.append(compressor.reconstruction_loss(block.mixer, h, block.norm1(old), normed))
            compressed = torch.cat([compressed, squeezed.detach()], dim=1)
        new[f"{i}.compressed"] = compressed[:, -self.compressed_len:]
        return attend_with_memory(block.mixer, h, context)
