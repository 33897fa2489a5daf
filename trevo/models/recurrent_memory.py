"""Memory tokens: learned vectors read beside the segment by every layer (Memory Transformer), their
recurrent form, read/write memory tokens carried from segment to segment (Recurrent Memory
Transformer), and summary vectors accumulated over segments (AutoCompressor).

Memory Transformer (Burtsev et al. 2020, arXiv:2006.11527, §2, "MemTransformer"): m learned memory
tokens are prepended to the input, [mem; H⁰], and processed by every layer like the others; in a
causal model every token sees them. They are parameters: no state crosses segments.

Recurrent Memory Transformer (Bulatov et al. 2022, arXiv:2207.06881, §3, decoder form): the segment τ
is read as H̃⁰_τ = [H^mem_τ ∘ H⁰_τ ∘ H^mem_τ] under the causal mask: the first m tokens are read
memory (every token sees them), the last m are write memory (they see the whole segment), and the
write positions' outputs of the last layer are the next segment's memory, H^mem_{τ+1} = H^{N, write}_τ;
H^mem_0 is learned. The gradient flows through the memory from segment to segment: trained with
``train.bptt_segments`` > 1, back-propagation runs through that many segments (the paper's BPTT over
the unrolled segments), and the memory is detached between optimizer steps.

AutoCompressor (Chevalier et al. 2023, arXiv:2305.14788, §3.1): m learned summary tokens are appended
to each segment, and the last layer's outputs at them are the segment's summary vectors σ_τ; segment τ
reads the summary vectors of every segment before it as a soft prompt, [σ_1 … σ_{τ−1} ∘ H⁰_τ ∘ κ], so
the memory grows by m vectors a segment (and is not overwritten). The gradient flows through the
summaries, as through RMT's memory (the paper's BPTT over two segments: ``train.bptt_segments=2``).

Option: ``n_memory_tokens`` (m, default 4). Any causal mixer serves (it sees 2m + T tokens, or
m·τ + T + m for the AutoCompressor).
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.segment_memory import Memory, SegmentMemoryModel
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo

MEMORY_TRANSFORMER = Paper("Memory Transformer", "2006.11527", 2020)
RMT = Paper("Recurrent Memory Transformer", "2207.06881", 2022)


class MemoryTokenModel(SegmentMemoryModel):
    """m learned memory tokens beside each segment; ``recurrent``: written at the end and carried on."""

    defaults = {"n_memory_tokens": 4}
    recurrent = False

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        self.n_memory = self.options["n_memory_tokens"]
        if self.n_memory < 1:
            raise IncompatibleError(f"model.options.n_memory_tokens must be at least 1, got {self.n_memory}")
        # the scale of the unit-scale token embeddings (trevo.models.init), so memory and tokens start alike
        self.memory_init = nn.Parameter(torch.randn(self.n_memory, cfg.d_model) * self.embed.weight.std().item())

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, None, (x.shape[1],))
        return x

    def init_memory(self, batch: int, device, dtype) -> Memory:
        if not self.recurrent:
            return {}
        return {"memory": self.memory_init.to(device, dtype)[None].expand(batch, -1, -1)}

    def forward_memory(self, tokens: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, Memory]:
        self._reset_scores()
        m, t = self.n_memory, tokens.shape[1]
        x = self._embed(tokens)
        if not self.recurrent:
            read = self.memory_init.to(x.dtype)[None].expand(x.shape[0], -1, -1)
            return self._head(self._blocks(torch.cat([read, x], dim=1))[:, m:], None), memory
        read = memory["memory"]
        out = self._blocks(torch.cat([read, x, self.write_tokens(read)], dim=1))
        r = read.shape[1]
        return self._head(out[:, r:r + t], None), {"memory": self.next_memory(read, out[:, r + t:])}

    def write_tokens(self, read: torch.Tensor) -> torch.Tensor:
        """What the write positions read in (RMT: the memory itself)."""
        return read

    def next_memory(self, read: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """The memory after the segment from the write positions' outputs (RMT: those outputs)."""
        return written


@register("model", "memory_transformer", paper=MEMORY_TRANSFORMER, category="Memory", family="recurrent_memory",
          causal=True, bidirectional=False)
class MemoryTransformer(MemoryTokenModel):
    """Memory Transformer: m learned memory tokens prepended to every segment (Burtsev et al. 2020, §2)."""

    arch = "memory_transformer"


@register("model", "rmt", paper=RMT, category="Memory", family="recurrent_memory", causal=True, bidirectional=False)
class RecurrentMemoryTransformer(MemoryTokenModel):
    """RMT: read/write memory tokens, [mem; H; mem], the write outputs carried to the next segment with
    BPTT over ``train.bptt_segments`` segments (Bulatov et al. 2022, §3)."""

    arch = "rmt"
    recurrent = True


@register("model", "autocompressor", category="Memory", family="recurrent_memory", causal=True, bidirectional=False,
          paper=Paper("Adapting Language Models to Compress Contexts (AutoCompressor)", "2305.14788", 2023))
class AutoCompressor(MemoryTokenModel):
    """AutoCompressor: m summary tokens per segment; every earlier segment's summary vectors are read as a
    soft prompt, accumulated (Chevalier et al. 2023, §3.1)."""

    arch = "autocompressor"
    recurrent = True

    def init_memory(self, batch: int, device, dtype) -> Memory:
        return {"memory": torch.zeros(batch, 0, self.cfg.d_model, device=device, dtype=dtype)}

    def write_tokens(self, read: torch.Tensor) -> torch.Tensor:
        return self.memory_init.to(read.dtype)[None].expand(read.shape[0], -1, -1)  # the summary tokens κ

    def next_memory(self, read: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        return torch.cat([read, written], dim=1)
