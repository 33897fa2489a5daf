"""LaMemo: Transformer-XL's memory refreshed by look-ahead attention (Ji et al. 2022, arXiv:2204.07341, §3).

Transformer-XL's memory states were computed when they were the segment, so they saw only the tokens
on their left. LaMemo keeps the embeddings of the last M tokens (stop-gradient) and re-reads them
through every layer beside the segment: in layer n, the segment's tokens attend causally over
[memory; segment] as in Transformer-XL, and each memory position attends to the keys on its right
that it has not seen yet (look-ahead attention, ``trevo.ops.look_ahead_memory``: up to the segment's
first token, so nothing leaks); its output is interpolated with the output it kept from before by
their log-normalisers (memory interpolation, §3.3), which makes it attention over every key on both
sides. The refreshed memory goes through the layer's residual and channel mixer and is the next layer's
memory. Kept per layer for the next segment: the (interpolated) attention outputs of the last M
positions, per head, and their log-normalisers (stop-gradient).

The relative positions are the model's (Transformer-XL's by default: the paper's variant with the
relative position encoding of Transformer-XL, its "attn_type 31"; its disentangled encoding with a
separate bias for keys on the right is not implemented). With an empty memory (a one-segment stream)
it is the base model, as Transformer-XL is.

Option: ``memory_len`` (M, default the segment length). Mixers: softmax attention (and MQA/GQA).
"""

from __future__ import annotations

import math

import torch

from trevo.components.multihead import repeat_kv_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.segment_memory import Memory
from trevo.models.transformer_xl import TransformerXL
from trevo.ops.look_ahead_memory import look_ahead_mask, masked_attention, merge
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo


@register("model", "lamemo", paper=Paper("LaMemo: Language Modeling with Look-Ahead Memory", "2204.07341", 2022),
          category="Memory", family="transformer_xl", causal=True, bidirectional=False)
class LaMemo(TransformerXL):
    """Transformer-XL whose memory is re-read every segment, looking ahead to the keys on its right and
    interpolated with what it saw before (Ji et al. 2022, §3.2 look-ahead attention, §3.3 interpolation)."""

    arch = "lamemo"
    defaults = {"memory_len": None}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        for i, block in enumerate(self.blocks):
            if block.mixer.attention_fn is not None or block.mixer.score_carry is not None:
                raise IncompatibleError(f"model {self.arch!r} computes its softmax attention itself (it keeps each "
                                        f"output's log-normaliser); layer {i} sets an attention function or carries "
                                        f"scores: use plain softmax attention")

    def init_memory(self, batch: int, device, dtype) -> Memory:
        d = self.cfg.d_model
        memory = {"0.x": torch.zeros(batch, 0, d, device=device, dtype=dtype)}  # the embeddings of the last M tokens
        for i, block in enumerate(self.blocks):
            heads, head_dim = block.mixer.n_heads, block.mixer.head_dim
            memory[f"{i}.o"] = torch.zeros(batch, heads, 0, head_dim, device=device, dtype=dtype)
            memory[f"{i}.z"] = torch.zeros(batch, heads, 0, device=device, dtype=dtype)
        return memory

    def forward_memory(self, tokens: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, Memory]:
        self._reset_scores()
        x = self._embed(tokens)
        m = memory["0.x"].detach()  # SG: the memory is re-read from the embeddings of the tokens before
        n_mem, seg_len = m.shape[1], x.shape[1]
        causal = torch.ones(seg_len, n_mem + seg_len, dtype=torch.bool, device=x.device).tril(n_mem)
        # the memory advances by whole segments (a shorter one is generation's prefix of one, whose memory is
        # not kept), so the keys not yet seen are those of the last seq_len positions
        ahead = look_ahead_mask(n_mem, self.info.seq_len, x.device)
        new: Memory = {"0.x": torch.cat([m, x], dim=1)[:, -self.memory_len:].detach()}
        for i, block in enumerate(self.blocks):
            mixer = block.mixer
            h = block.norm1(torch.cat([m, x], dim=1))
            q, k, v = mixer._project(h, 0)
            groups = mixer.n_heads // mixer.n_kv_heads
            k, v = repeat_kv_heads(k, groups), repeat_kv_heads(v, groups)
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            bias = mixer.position_bias(q, k)
            scores = scores if bias is None else scores + bias
            out, z = masked_attention(scores[:, :, n_mem:], causal, v)  # the segment: causal over [memory; segment]
            if n_mem:
                looked, looked_z = masked_attention(scores[:, :, :n_mem, :n_mem + 1], ahead, v[:, :, :n_mem + 1])
                old, old_z = memory[f"{i}.o"].detach(), memory[f"{i}.z"].detach()
                refreshed, refreshed_z = merge(old, old_z, looked, looked_z)
                m = self.channel(block, m + block.drop(mixer._output(refreshed, h[:, :n_mem])))
                out_all, z_all = torch.cat([refreshed, out], dim=2), torch.cat([refreshed_z, z], dim=2)
            else:
                out_all, z_all = out, z
            new[f"{i}.o"] = out_all[:, :, -self.memory_len:].detach()
            new[f"{i}.z"] = z_all[:, :, -self.memory_len:].detach()
            x = self.channel(block, x + block.drop(mixer._output(out, h[:, n_mem:])))
        return self._head(x, None), new
