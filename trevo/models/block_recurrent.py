"""Block-Recurrent Transformer (Hutchins et al. 2022, arXiv:2203.07852, §3): one recurrent layer keeps a
state of ``n_slots`` vectors that it updates once per block with LSTM-style gates.

In the recurrent layer, the tokens (vertical direction) attend causally to themselves (the layer's
own mixer) and to the current state (cross-attention); the two results are projected and summed into
the residual stream, then the channel mixer follows as in any block. The state (horizontal direction)
attends to itself and to every token of the block; the projected result z updates it through a gate,
and a state MLP's output through a second gate (§3.2, "LSTM gate"):

    z' = tanh(W_z z + b_z),  i = σ(W_i z + b_i − 1),  f = σ(W_f z + b_f + 1),  c ← c ⊙ f + z' ⊙ i.

The first state is learned, and learned state IDs (a position per slot) are added before the state's
queries and keys. Here a block is one segment (the paper slides a window over blocks of a longer
segment); the state's keys and values have their own projections (the paper shares them with the
tokens'). The next segment reads the updated state, so a segment never sees its own block's update.

Options: ``n_slots`` (default 8), ``memory_layers`` (the recurrent layers; default the layer before
the last, as the paper's layer 10 of 12).
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.multihead import merge_heads, split_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import Block
from trevo.models.segment_memory import Memory, SegmentMemoryModel
from trevo.ops.attention import sdpa_attention
from trevo.registry import Paper, build, register
from trevo.tasks.base import TaskInfo


class LSTMGate(nn.Module):
    """c ← c ⊙ σ(W_f z + b_f + 1) + tanh(W_z z + b_z) ⊙ σ(W_i z + b_i − 1) (Hutchins et al. 2022, §3.2)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, 3 * d_model)  # W_z, W_i, W_f with their biases

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        candidate, i, f = self.proj(z).chunk(3, dim=-1)
        return c * torch.sigmoid(f + 1) + torch.tanh(candidate) * torch.sigmoid(i - 1)


class RecurrentState(nn.Module):
    """The state side of a recurrent layer and the tokens' cross-attention to the state."""

    def __init__(self, d_model: int, n_slots: int, n_heads: int, make_norm, make_channel, scale: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.initial = nn.Parameter(torch.randn(n_slots, d_model) * scale)
        self.ids = nn.Parameter(torch.randn(n_slots, d_model) * scale)  # learned state IDs
        self.norm, self.channel_norm = make_norm(), make_norm()
        self.state_kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.token_kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.token_q = nn.Linear(d_model, d_model, bias=False)  # tokens → state
        self.state_q = nn.Linear(d_model, 2 * d_model, bias=False)  # state → state, state → tokens
        self.token_out = nn.Linear(d_model, d_model, bias=False)
        self.state_out = nn.Linear(2 * d_model, d_model, bias=False)
        self.channel = make_channel()
        self.attention_gate, self.channel_gate = LSTMGate(d_model), LSTMGate(d_model)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return split_heads(t, self.n_heads)

    def read(self, h: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The tokens' cross-attention to the state (h normed), projected into the residual width."""
        s = self.norm(state) + self.ids
        k, v = (self._heads(t) for t in self.state_kv(s).chunk(2, -1))
        return self.token_out(merge_heads(sdpa_attention(self._heads(self.token_q(h)), k, v, causal=False)))

    def update(self, h: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The state after a block whose normed layer inputs are ``h``."""
        s = self.norm(state) + self.ids
        k_s, v_s = (self._heads(t) for t in self.state_kv(s).chunk(2, -1))
        k_x, v_x = (self._heads(t) for t in self.token_kv(h).chunk(2, -1))
        q_self, q_cross = (self._heads(t) for t in self.state_q(s).chunk(2, -1))
        z = self.state_out(torch.cat([merge_heads(sdpa_attention(q_self, k_s, v_s, causal=False)),
                                      merge_heads(sdpa_attention(q_cross, k_x, v_x, causal=False))], -1))
        state = self.attention_gate(state, z)
        return self.channel_gate(state, self.channel(self.channel_norm(state)))


@register("model", "block_recurrent_transformer",
          paper=Paper("Block-Recurrent Transformers", "2203.07852", 2022), category="Memory",
          family="block_recurrent", causal=True, bidirectional=False)
class BlockRecurrentTransformer(SegmentMemoryModel):
    """Recurrent state cells updated once per block with LSTM-style gates (Hutchins et al. 2022, §3)."""

    arch = "block_recurrent_transformer"
    defaults = {"n_slots": 8, "memory_layers": None}

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__(cfg, info)
        n_slots = self.options["n_slots"]
        if n_slots < 1:
            raise IncompatibleError(f"model.options.n_slots must be at least 1, got {n_slots}")
        d, scale = cfg.d_model, self.embed.weight.std().item()
        n_heads = getattr(self.blocks[0].mixer, "n_heads", 4)
        if d % n_heads:
            raise IncompatibleError(f"model.d_model={d} must be a multiple of the mixer's n_heads={n_heads}")
        self.with_memory = self.memory_layers()
        self.states = nn.ModuleDict({
            str(i): RecurrentState(d, n_slots, n_heads, lambda: build("norm", cfg.norm.name, cfg.norm.options,
                                                                      d_model=d),
                                   lambda: build("channel", cfg.channel.name, cfg.channel.options, d_model=d,
                                                 causal=True), scale)
            for i in self.with_memory})

    def default_memory_layers(self) -> list[int]:
        return [max(0, len(self.blocks) - 2)]

    def init_memory(self, batch: int, device, dtype) -> Memory:
        return {f"{i}.h": self.states[str(i)].initial.to(device, dtype)[None].expand(batch, -1, -1)
                for i in self.with_memory}

    def mix_with_memory(self, i: int, block: Block, x: torch.Tensor, h: torch.Tensor, memory: Memory,
                        new: Memory) -> torch.Tensor:
        cell, state = self.states[str(i)], memory[f"{i}.h"]
        new[f"{i}.h"] = cell.update(h, state)
        return block.mixer(h) + cell.read(h, state)
