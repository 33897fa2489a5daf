"""SRU and SRU++: the simple recurrent unit and its attention-fed variant.

SRU (Lei et al. 2018, "Simple Recurrent Units for Highly Parallelizable Recurrence",
arXiv:1709.02755): one matrix product per position for all of (W x, W_f x, W_r x), then the
element-wise recurrence of ``trevo.ops.sru`` with a highway connection to the input.

SRU++ (Lei 2021, "When Attention Meets Fast Recurrence: Training Language Models with Reduced
Compute", arXiv:2102.12459, §3.1): the product W x is replaced by a small attention,
Q = W^q x (width d' ≪ d), K = W^k Q, V = W^v Q, A = softmax(QKᵀ/√d')V (causal),
U = W^o LayerNorm(Q + α·A) ∈ R^{3d}, whose three parts feed the same recurrence.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.attention import sdpa_attention
from trevo.ops.sru import sru_recurrence
from trevo.registry import Paper, register


class _SRUCell(TokenMixer):
    """The recurrence's own parameters (v_f, v_r, b_f, b_r) and its state c."""

    def __init__(self, d_model: int, *, causal: bool) -> None:
        super().__init__(d_model, causal=causal)
        self.v = nn.Parameter(torch.empty(2, d_model).uniform_(-0.5, 0.5))  # v_f, v_r
        self.b = nn.Parameter(torch.zeros(2, d_model))  # b_f, b_r

    def recur(self, u: torch.Tensor, x: torch.Tensor, c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_x, u_f, u_r = u.chunk(3, dim=-1)
        return sru_recurrence(u_x, u_f, u_r, x, self.v[0], self.v[1], self.b[0], self.b[1], c0)


@register("mixer", "sru", paper=Paper("Simple Recurrent Units for Highly Parallelizable Recurrence", "1709.02755",
                                      2018),
          category="Rnn", family="sru", causal=True, bidirectional=False, recurrent=True,
          time="O(T·d²) projection + O(T·d) element-wise recurrence (serial in T)", memory="O(d) state")
class SRU(_SRUCell):
    """SRU (Lei et al. 2018, eq. 3-7): [u^x, u^f, u^r] = W x_t for every t at once, then
    f_t = σ(u^f_t + v_f ⊙ c_{t−1} + b_f), r_t = σ(u^r_t + v_r ⊙ c_{t−1} + b_r),
    c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ u^x_t, h_t = r_t ⊙ c_t + (1 − r_t) ⊙ x_t. The v ⊙ c_{t−1} terms
    (the paper's final version) make the recurrence non-linear: one form, serial in time."""

    def __init__(self, d_model: int, *, causal: bool = True) -> None:
        super().__init__(d_model, causal=causal)
        self.proj = nn.Linear(d_model, 3 * d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"h": torch.zeros(batch, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = self.recur(self.proj(x), x, state["h"])
        return h, {"h": c}


@register("mixer", "sru_pp", paper=Paper("When Attention Meets Fast Recurrence: Training Language Models with "
                                         "Reduced Compute", "2102.12459", 2021),
          category="Rnn", family="sru", causal=True, bidirectional=False, recurrent=False,
          time="O(T²·d') attention + O(T·d·d') projections + O(T·d) recurrence", memory="O(T·d') KV cache",
          test_options={"expand_k": 0.5})
class SRUPlusPlus(_SRUCell):
    """SRU++ (Lei 2021, §3.1, eq. 5-6): Q = W^q x, K = W^k Q, V = W^v Q at width d' = expand_k·d,
    A = softmax(QKᵀ/√d')V causally, U = W^o LayerNorm(Q + α·A) (α a learned scalar), and U's three
    parts drive the SRU recurrence. Single-head attention by default, as in the paper. Generation
    keeps the KV cache of the attention and the recurrence's c."""

    def __init__(self, d_model: int, *, causal: bool = True, expand_k: float = 0.25, n_heads: int = 1) -> None:
        super().__init__(d_model, causal=causal)
        width = int(round(expand_k * d_model))
        if width < 1:
            raise IncompatibleError(f"SRU++ expand_k={expand_k} leaves no attention width for d_model={d_model}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(width, n_heads, what="expand_k · d_model")
        self.q_proj = nn.Linear(d_model, width, bias=False)
        self.kv_proj = nn.Linear(width, 2 * width, bias=False)
        self.alpha = nn.Parameter(torch.ones(()))
        self.norm = nn.LayerNorm(width)
        self.out_proj = nn.Linear(width, 3 * d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        state = empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)
        state["h"] = torch.zeros(batch, self.d_model, device=device, dtype=dtype)
        return state

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q = self.q_proj(x)
        k, v = self.kv_proj(q).chunk(2, dim=-1)
        H = self.n_heads
        k, v = extend_kv_cache(state, split_heads(k, H), split_heads(v, H), dim=2)
        attended = merge_heads(sdpa_attention(split_heads(q, H), k, v, causal=True))
        u = self.out_proj(self.norm(q + self.alpha * attended))
        h, c = self.recur(u, x, state["h"])
        return h, {"k": k, "v": v, "h": c}

