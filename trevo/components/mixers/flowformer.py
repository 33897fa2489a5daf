"""Flowformer's flow attention (Wu et al. 2022); the math is in ``trevo.ops.flowformer``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.flowformer import causal_flow_attention, flow_attention
from trevo.registry import Paper, register


@register("mixer", "flowformer",
          paper=Paper("Flowformer: Linearizing Transformers with Conservation Flows", "2202.06258", 2022),
          category="MHA/Others", family="flowformer", causal=True, bidirectional=True, recurrent=True,
          time="O(T·d²/H)", memory="O(T·d²/H) prefix form; state O(d²/H)")
class Flowformer(TokenMixer):
    """Flow-Attention (Wu et al. 2022, eq. 5-10): linear attention with φ = sigmoid read as a flow
    network; fixing every source's outgoing and every sink's incoming flow (flow conservation) yields
    the conserved flows Ô, Î, which drive a competition among sources (softmax(Ô) reweights the values)
    and an allocation to sinks (sigmoid(Î) gates the outputs). The causal version is the paper's:
    prefix sums normalised by the prefix length, a constant-size state. Forms: ``prefix`` (cumulative
    sums over the input) and ``recurrent`` (one token at a time)."""

    forms = ("prefix", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor):
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return torch.sigmoid(q), torch.sigmoid(k), v

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self.out_proj(merge_heads(flow_attention(*self._heads(x), key_padding_mask=padding_mask)))

    def init_state(self, batch: int, device, dtype) -> State:
        h, d = self.n_heads, self.head_dim
        z = lambda *s: torch.zeros(batch, h, *s, device=device, dtype=dtype)  # noqa: E731
        return {"q_sum": z(d), "k_sum": z(d), "k_out_sum": z(d), "q_in_sum": z(d), "exp_sum": z(),
                "S": z(d, d), "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        pos = state["pos"]
        if self.form_for(x.shape[1]) == "recurrent":
            ys = []
            for i in range(x.shape[1]):
                y, sums = causal_flow_attention(q[:, :, i:i + 1], k[:, :, i:i + 1], v[:, :, i:i + 1], state, pos + i)
                state = {**sums, "pos": pos}
                ys.append(y)
            y = torch.cat(ys, dim=2)
        else:
            y, sums = causal_flow_attention(q, k, v, state, pos)
        return self.out_proj(merge_heads(y)), {**sums, "pos": pos + x.shape[1]}
