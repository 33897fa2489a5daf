"""GMAT: global memory augmentation of a sparse Transformer (Gupta & Berant 2020, arXiv:2006.03274, §3),
read segment by segment as a causal language model.

GMAT prepends M global memory tokens to a sequence whose tokens attend to each other sparsely; the
memory attends densely to every position and every position attends to the whole memory, so each
token gets an aggregate view of the sequence at a cost of O(M·(L + M)) beside its sparse attention.
Here the sparse pattern is causal local attention (each token sees the ``window`` tokens up to
itself), and the memory is made causal the way RMT makes memory tokens causal (``rmt``, the layout
[read memory; segment; write memory]): every token attends to the M read-memory tokens, which attend
among themselves; the M write-memory tokens attend to everything, read memory, the whole segment and
each other; the last layer's write outputs are the next segment's memory (the first is learned), the
gradient flowing through it over ``train.bptt_segments`` segments. The dense masked attention this
equals is ``gmat_mask`` (what the tests compare with); the layers compute only its O(M·(T + M) + T·w)
allowed scores. The bidirectional GMAT of the paper (masked LM, reading comprehension) is not built.

Options: ``n_memory_tokens`` (M, default 4), ``window`` (w, default 8). Mixers: softmax attention (and
MQA/GQA) with no position or RoPE (a relative score bias would need the dense score matrix).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.components.multihead import repeat_kv_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.recurrent_memory import RecurrentMemoryTransformer
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo


def gmat_mask(n_memory: int, seg_len: int, window: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[N, N]`` over [read memory (M); segment (T); write memory (M)], N = 2M + T: which key each query
    attends to. Read memory: the read memory; a token t: the read memory and tokens t − w + 1 … t; write
    memory: everything."""
    n = 2 * n_memory + seg_len
    i, j = torch.arange(n, device=device)[:, None], torch.arange(n, device=device)[None, :]
    read_key = j < n_memory
    token_q, token_k = (i >= n_memory) & (i < n_memory + seg_len), (j >= n_memory) & (j < n_memory + seg_len)
    local = token_q & token_k & (j <= i) & (j > i - window)
    return (read_key & (i < n_memory + seg_len)) | local | (i >= n_memory + seg_len)


def _softmax_rows(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return scores.softmax(-1) @ values


def gmat_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_memory: int, window: int) -> torch.Tensor:
    """Attention under ``gmat_mask`` for q, k, v ``[B, H, N, D]`` laid out [read; segment; write], from the
    allowed scores only: read × read, tokens × (read, their window), write × all."""
    m, d = n_memory, q.shape[-1]
    t = q.shape[2] - 2 * m
    scale = 1 / math.sqrt(d)
    read = _softmax_rows(q[:, :, :m] @ k[:, :, :m].transpose(-1, -2) * scale, v[:, :, :m])
    write = _softmax_rows(q[:, :, m + t:] @ k.transpose(-1, -2) * scale, v)
    qx, kx, vx = q[:, :, m:m + t], k[:, :, m:m + t], v[:, :, m:m + t]
    # each token's window of keys t − w + 1 … t, the positions before the segment padded and masked
    kw = F.pad(kx, (0, 0, window - 1, 0)).unfold(2, window, 1)  # [B, H, T, D, w]
    vw = F.pad(vx, (0, 0, window - 1, 0)).unfold(2, window, 1)
    band = torch.einsum("bhtd,bhtdw->bhtw", qx, kw) * scale
    before = torch.arange(t, device=q.device)[:, None] - window + 1 + torch.arange(window, device=q.device) < 0
    band = band.masked_fill(before, -math.inf)
    weights = torch.cat([qx @ k[:, :, :m].transpose(-1, -2) * scale, band], dim=-1).softmax(-1)
    tokens = weights[..., :m] @ v[:, :, :m] + torch.einsum("bhtw,bhtdw->bhtd", weights[..., m:], vw)
    return torch.cat([read, tokens, write], dim=2)


@register("model", "gmat", paper=Paper("GMAT: Global Memory Augmentation for Transformers", "2006.03274", 2020),
          category="Memory", family="recurrent_memory", causal=True, bidirectional=False)
class GMAT(RecurrentMemoryTransformer):
    """Global memory tokens beside local attention: every token reads the memory, the memory's write side
    reads everything, carried from segment to segment (Gupta & Berant 2020, §3; causal as in RMT)."""

    arch = "gmat"
    defaults = {"n_memory_tokens": 4, "window": 8}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        self.window = self.options["window"]
        if self.window < 1:
            raise IncompatibleError(f"model.options.window must be at least 1, got {self.window}")
        for i, block in enumerate(self.blocks):
            mixer = block.mixer
            if (not isinstance(mixer, SoftmaxAttention) or mixer.attention_fn is not None
                    or mixer.score_carry is not None):
                raise IncompatibleError(f"model {self.arch!r} computes its global-memory and local attention itself; "
                                        f"layer {i}'s mixer is {mixer.registry_entry.name!r}: use softmax_attention "
                                        f"(or multi_query / grouped_query attention)")
            if mixer.position is not None and not hasattr(mixer.position, "rotate"):
                raise IncompatibleError(f"model {self.arch!r} computes only the scores its mask allows, so it takes no "
                                        f"relative score bias; layer {i} has position "
                                        f"{mixer.position.registry_entry.name!r}: use model.position=none or rope")

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            mixer, h = block.mixer, block.norm1(x)
            q, k, v = mixer._project(h, 0)
            groups = mixer.n_heads // mixer.n_kv_heads
            out = gmat_attention(q, repeat_kv_heads(k, groups), repeat_kv_heads(v, groups), self.n_memory, self.window)
            x = self.channel(block, x + block.drop(mixer._output(out, h)))
        return x
