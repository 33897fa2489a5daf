"""Luna: pack into a fixed-length sequence, unpack back (Ma et al. 2021); the math is in ``trevo.ops.luna``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.luna import causal_pack_weights, luna_causal, luna_pack, luna_unpack
from trevo.registry import Paper, register


@register("mixer", "luna", paper=Paper("Luna: Linear Unified Nested Attention", "2106.01540", 2021),
          category="MHA/SparseOrLowRank", family="luna", causal=True, bidirectional=True, recurrent=True,
          time="O(T·l·d)", memory="O(T·l) bidirectional; causal state O(l·d)", test_options={"low_rank_dim": 3})
class Luna(TokenMixer):
    """Luna attention (Ma et al. 2021, eq. 6-7): a learned fixed-length sequence P of l =
    ``low_rank_dim`` rows packs the input, Y_P = softmax(P_q Xᵀ/√d) X per head, and the input unpacks
    it, y = softmax(Q (Y_P W_K)ᵀ/√d) Y_P W_V. Causally, the paper's variant (section 3.4): pack weights
    a_j = elu(x_j·p_q) + 1 of each position alone and running-mean packed keys and values, a state of
    two l × d matrices per head. The paper carries the packed sequence up the stack as the next layer's
    P; a trevo mixer sees only its own input, so each layer learns its own P."""

    forms = ("prefix", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, low_rank_dim: int = 16,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if low_rank_dim < 1:
            raise IncompatibleError(f"luna needs low_rank_dim >= 1, got {low_rank_dim}")
        self.n_heads, self.head_dim, self.low_rank_dim = n_heads, head_dim_of(d_model, n_heads), low_rank_dim
        self.packed_seq = nn.Parameter(torch.randn(low_rank_dim, d_model) / d_model ** 0.5)
        self.pack_q = nn.Linear(d_model, d_model, bias=False)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _pack_queries(self, dtype: torch.dtype) -> torch.Tensor:
        return split_heads(self.pack_q(self.packed_seq.to(dtype))[None], self.n_heads)  # [1, H, l, D]

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        packed = merge_heads(luna_pack(self._pack_queries(x.dtype), split_heads(x, self.n_heads), padding_mask))
        k, v = (split_heads(t, self.n_heads) for t in self.kv_proj(packed).chunk(2, dim=-1))
        return self.out_proj(merge_heads(luna_unpack(split_heads(self.q_proj(x), self.n_heads), k, v)))

    def init_state(self, batch: int, device, dtype) -> State:
        h, d, l = self.n_heads, self.head_dim, self.low_rank_dim
        return {"S_k": torch.zeros(batch, h, d, l, device=device, dtype=dtype),
                "S_v": torch.zeros(batch, h, l, d, device=device, dtype=dtype),
                "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        a = causal_pack_weights(split_heads(x, self.n_heads), self._pack_queries(x.dtype))
        q = split_heads(self.q_proj(x), self.n_heads) / self.head_dim ** 0.5
        k, v = (split_heads(t, self.n_heads) for t in self.kv_proj(x).chunk(2, dim=-1))
        y, S_k, S_v = luna_causal(q, k, v, a, state["S_k"], state["S_v"], state["pos"],
                                  form=self.form_for(x.shape[1]))
        return self.out_proj(merge_heads(y)), {"S_k": S_k, "S_v": S_v, "pos": state["pos"] + x.shape[1]}
