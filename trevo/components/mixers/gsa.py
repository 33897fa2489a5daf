"""Bounded-memory attention: ABC and Gated Slot Attention, on ``trevo.ops.gsa`` (two engine passes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.rotary import apply_rotary
from trevo.ops.gsa import cumulative_softmax_gate, slot_attention
from trevo.registry import Paper, register

_TIME = "O(T·C·(d + H·M) + T·d·M) chunk, O(T·d·M) recurrent"


class _SlotMemory(TokenMixer):
    """What ABC and GSA share: heads, M slots per head, the two memories as the state."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, causal: bool, n_heads: int, d_k: int, n_slots: int, chunk_size: int,
                 form: str) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.n_slots, self.chunk_size = n_heads, n_slots, chunk_size
        self.dk = head_dim_of(d_k, n_heads, what="d_model·expand_k")
        self.dv = head_dim_of(d_model, n_heads)

    def init_state(self, batch: int, device, dtype) -> State:
        H, M = self.n_heads, self.n_slots
        return {"S_k": torch.zeros(batch, H, self.dk, M, device=device, dtype=dtype),
                "S_v": torch.zeros(batch, H, M, self.dv, device=device, dtype=dtype)}

    def read(self, q, k, v, s, log_gate, state, scale):
        o, K, V = slot_attention(q, k, v, s, log_gate, state_k=state["S_k"], state_v=state["S_v"], scale=scale,
                                 form=self.form_for(q.shape[2]), chunk_size=self.chunk_size)
        return o, {"S_k": K, "S_v": V}


@register("mixer", "gsa",
          paper=Paper("Gated Slot Attention for Efficient Linear-Time Sequence Modeling", "2409.07146", 2024),
          category="Rnn", family="gsa", causal=True, bidirectional=False, recurrent=True, time=_TIME,
          memory="O(H·M·(d_k + d_v)) state", test_options={"chunk_size": 8, "n_slots": 6})
class GatedSlotAttention(_SlotMemory):
    """GSA: the two-pass slot memory with a data-dependent forget gate per slot,
    α_t = σ(W_α x_t)^(1/τ) (τ = 8) and writes s_t = 1 − α_t; q, k through Swish, v through SiLU;
    output W_o RMSNorm(SiLU(o)). ``n_slots`` M = 64 as in the paper."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_slots: int = 64, tau: float = 8.0,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal, n_heads, d_model, n_slots, chunk_size, form)
        self.tau = tau
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))
        self.f_proj = nn.Linear(d_model, n_heads * n_slots, bias=False)
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        q, k = (split_heads(F.silu(p(x)), H) for p in (self.q_proj, self.k_proj))
        v = split_heads(F.silu(self.v_proj(x)), H)
        log_alpha = split_heads(F.logsigmoid(self.f_proj(x)) / self.tau, H)  # [B, H, T, M]
        o, state = self.read(q, k, v, -torch.expm1(log_alpha), log_alpha, state, scale=1.0)
        return self.out_proj(self.norm(F.silu(merge_heads(o)))), state


@register("mixer", "abc", paper=Paper("ABC: Attention with Bounded-memory Control", "2110.02488", 2021),
          category="MHA/SparseOrLowRank", family="gsa", causal=True, bidirectional=False, recurrent=True,
          time=_TIME, memory="O(H·M·(d_k + d_v)) state", test_options={"chunk_size": 8, "n_slots": 6})
class ABC(_SlotMemory):
    """ABC's bounded memory with a learned control: K̃_t[:, j] = Σ_{i<=t} softmax_{i<=t}(φ_{·, j})_i k_i for
    each of M slots, the slot logits φ = W_φ x (clamped to ±32), Ṽ likewise, o_t = Ṽ_tᵀ
    softmax(K̃_tᵀ q_t / √d_k); RoPE on q and k, keys of d/2 channels (``expand_k``), and the output
    gate RMSNorm(o) ⊙ SiLU(W_g x) per head (flash-linear-attention's ABC layer)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_slots: int = 64,
                 expand_k: float = 0.5, chunk_size: int = 64, form: str = "auto") -> None:
        d_k = int(d_model * expand_k)
        super().__init__(d_model, causal, n_heads, d_k, n_slots, chunk_size, form)
        self.q_proj, self.k_proj = nn.Linear(d_model, d_k, bias=False), nn.Linear(d_model, d_k, bias=False)
        self.v_proj, self.g_proj = nn.Linear(d_model, d_model, bias=False), nn.Linear(d_model, d_model, bias=False)
        self.s_proj = nn.Linear(d_model, n_heads * n_slots, bias=False)
        self.head_norm = nn.RMSNorm(self.dv, eps=1e-5)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        z = torch.full((batch, self.n_heads, self.n_slots), -torch.inf, device=device, dtype=dtype)
        return {**super().init_state(batch, device, dtype), "z": z,
                "pos": torch.zeros((), device=device, dtype=torch.long)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H, pos = self.n_heads, state["pos"]
        q, k = (apply_rotary(split_heads(p(x), H), offset=pos) for p in (self.q_proj, self.k_proj))
        v = split_heads(self.v_proj(x), H)
        s, log_alpha, z = cumulative_softmax_gate(split_heads(self.s_proj(x), H).clamp(-32, 32), state["z"])
        o, memories = self.read(q, k, v, s, log_alpha, state, scale=self.dk ** -0.5)
        y = self.head_norm(o) * F.silu(split_heads(self.g_proj(x), H))
        return self.out_proj(merge_heads(y)), {**memories, "z": z, "pos": pos + x.shape[1]}
