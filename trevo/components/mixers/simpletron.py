"""SimpleTRON (Yorsh et al., "SimpleTRON: Simple Transformer with O(N) Complexity", arXiv:2111.15588):
attention with the softmax removed, computed right to left."""

from __future__ import annotations

import torch

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "simpletron", paper=Paper("SimpleTRON: Simple Transformer with O(N) Complexity", "2111.15588", 2021),
          category="MHA/RightProduct", family="simpletron", causal=True, bidirectional=True, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T²·d) quadratic, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class SimpleTRON(FusedQKVHeads, TokenMixer):
    """Softmax-free attention: Y = (Q Kᵀ / (N √d)) V computed as Q (Kᵀ V) / (N √d), N the number of
    keys a query sees (all real tokens; t causally), no feature map and no approximation. The
    1/(N √d) scale is trevo's reading of the paper (its text was not at hand): without it the sums
    grow with the length. Causal generation keeps Σ k vᵀ and the count. Forms (causal): ``chunk``,
    ``quadratic``, ``recurrent``."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, chunk_size: int = 64,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        self.init_heads(d_model, n_heads)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        n = torch.full((x.shape[0],), x.shape[1], dtype=x.dtype, device=x.device)
        if padding_mask is not None:
            k = k * padding_mask[:, None, :, None].to(k.dtype)
            n = padding_mask.sum(dim=1).to(x.dtype).clamp_min(1)
        y = q @ (k.transpose(-1, -2) @ v) / (n[:, None, None, None] * self.head_dim ** 0.5)
        return self.project_out(y)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype),
                "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self.qkv_heads(x)
        o, S = linear_recurrence(q, k, v, initial_state=state["S"], scale=self.head_dim ** -0.5,
                                 form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        seen = state["pos"] + torch.arange(1, x.shape[1] + 1, device=x.device)
        y = o / seen.to(o.dtype)[:, None]
        return self.project_out(y), {"S": S, "pos": state["pos"] + x.shape[1]}
