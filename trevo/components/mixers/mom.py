"""Mixture of Memories (Du et al., "MoM: Linear Sequence Modeling with Mixture-of-Memories",
arXiv:2502.13685): a router sends each token to its top-k of several gated-delta-rule memories."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import dt_bias_init
from trevo.errors import IncompatibleError
from trevo.ops.delta_rule import delta_rule
from trevo.registry import Paper, register


def route(logits: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(a mask of each token's top-k memories, their weights: the softmax scores renormalised over the
    top k, zero elsewhere), both ``[B, T, M]``."""
    scores = torch.softmax(logits, dim=-1)
    top = scores.topk(topk, dim=-1).indices
    mask = torch.zeros_like(scores).scatter(-1, top, 1.0)
    weights = scores * mask
    return mask, weights / weights.sum(-1, keepdim=True)


@register("mixer", "mom",
          paper=Paper("MoM: Linear Sequence Modeling with Mixture-of-Memories", "2502.13685", 2025),
          category="Rnn", family="mom", causal=True, bidirectional=False, recurrent=True,
          time="O((k+s)·(T·C·d + T·d²/H)) chunk (UT transform) on each memory's routed tokens",
          memory="O((M+s)·d²/H) state",
          test_options={"chunk_size": 4, "n_memories": 3, "topk": 2})
class MixtureOfMemories(TokenMixer):
    """MoM: router scores softmax(W_r x_t) over M memories, each token written only into
    its top-k (``topk``) memories; each memory m has its own k, v, β, decay projections and is a gated
    delta rule S^m_t = α^m_t (I − β^m_t k^m_t k^mᵀ_t) S^m_{t−1} + β^m_t k^m_t v^mᵀ_t, left unchanged (no
    write, no decay) by the tokens not routed to it; the output mixes the routed memories,
    o_t = Σ_m w_{t,m} S^mᵀ_t q_t, with a ``shared_memory`` every token uses; then RMSNorm ⊙ SiLU(W_g x).

    Each memory's recurrence runs on its routed tokens alone, T·k/M of them on average. Unlike the authors'
    code, the short convolutions run over the whole sequence (theirs run over each memory's routed tokens),
    and no token is dropped: with a capacity below 1 theirs keep only a memory's latest ⌈T·capacity⌉ tokens,
    so whether an early token is kept depends on how many come after it."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_memories: int = 4, topk: int = 2,
                 shared_memory: bool = True, conv_size: int = 4, chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if not 1 <= topk <= n_memories:
            raise IncompatibleError(f"mom needs 1 <= topk <= n_memories, got topk={topk}, n_memories={n_memories}")
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.n_memories, self.topk, self.shared = n_memories, topk, shared_memory
        M = n_memories + int(shared_memory)  # the shared memory is the last
        self.router = nn.Linear(d_model, n_memories, bias=False)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * M * d_model, bias=False)
        self.q_conv, self.kv_conv = ShortConv(d_model, conv_size), ShortConv(2 * M * d_model, conv_size)
        self.b_proj = nn.Linear(d_model, M * n_heads)
        self.a_proj = nn.Linear(d_model, M * n_heads, bias=False)
        self.A_log = nn.Parameter(torch.empty(M * n_heads).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(dt_bias_init(M * n_heads, 1e-3, 0.1))
        self.g_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        M, D = self.n_memories + int(self.shared), self.head_dim
        return {"S": torch.zeros(batch, M * self.n_heads, D, D, device=device, dtype=dtype),
                "conv_q": self.q_conv.init_state(batch, device, dtype),
                "conv_kv": self.kv_conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, _ = x.shape
        H, M = self.n_heads, self.n_memories + int(self.shared)
        mask, weights = route(self.router(x), self.topk)
        q, conv_q = self.q_conv(self.q_proj(x), state["conv_q"])
        kv, conv_kv = self.kv_conv(self.kv_proj(x), state["conv_kv"])
        q = F.normalize(split_heads(F.silu(q), H), dim=-1)
        k, v = (split_heads(F.silu(t), M * H) for t in kv.chunk(2, dim=-1))  # memory-major heads
        k = F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)
        log_decay = (-self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)).transpose(1, 2)
        R = self.n_memories * H  # the routed memories' heads; the shared memory's are the last H
        o, S = self._routed_memories(q, k[:, :R], v[:, :R], beta[:, :R], log_decay[:, :R], mask, weights,
                                     state["S"][:, :R])
        if self.shared:
            o_shared, S_shared = self._delta_rule(q, k[:, R:], v[:, R:], beta[:, R:], log_decay[:, R:],
                                                  state["S"][:, R:])
            o, S = o + o_shared, torch.cat([S, S_shared], dim=1)
        y = merge_heads(self.o_norm(o)) * F.silu(self.g_proj(x))
        return self.out_proj(y), {"S": S, "conv_q": conv_q, "conv_kv": conv_kv}

    def _delta_rule(self, q, k, v, beta, log_decay, S0):
        T = q.shape[2]
        return delta_rule(q, k, v, beta, log_decay=log_decay, initial_state=S0, scale=self.head_dim ** -0.5,
                          form=self.form_for(T), chunk_size=self.chunk_size_for(T))

    def _routed_memories(self, q, k, v, beta, log_decay, mask, weights, S0):
        """Σ_m w_{t,m} o^m_t over the routed memories, each run on the subsequence of the tokens routed to it
        (the tokens it skips neither write nor decay it, so dropping them is exact): T·topk/M tokens a memory
        instead of T. Rows are padded to the longest subsequence with β = 0 and no decay, which leave the
        memory unchanged, and the padding's outputs carry weight 0."""
        B, H, T, D = q.shape
        M = self.n_memories
        mask = mask.transpose(1, 2)  # [B, M, T]
        counts = mask.sum(-1)
        L = max(int(counts.max()), 1)
        index = torch.sort(1.0 - mask, dim=-1, stable=True).indices[..., :L]  # routed positions first, in order
        valid = (torch.arange(L, device=q.device) < counts[..., None]).to(q.dtype)  # [B, M, L]

        def gather(t: torch.Tensor) -> torch.Tensor:  # [B, M·H, T, ...] or, shared by the memories, [B, H, T, ...]
            t = t.unflatten(1, (M, H)) if t.shape[1] == M * H else t[:, None].expand(B, M, *t.shape[1:])
            i = index[:, :, None].expand(B, M, H, L)
            return t.gather(3, i if t.dim() == 4 else i[..., None].expand(B, M, H, L, D)).flatten(1, 2)

        gate = valid[:, :, None].expand(B, M, H, L).flatten(1, 2)
        o, S = self._delta_rule(gather(q), gather(k), gather(v), gather(beta) * gate, gather(log_decay) * gate, S0)
        w = weights.transpose(1, 2).gather(2, index) * valid  # [B, M, L]; zero on the padding
        o = (o.unflatten(1, (M, H)) * w[:, :, None, :, None]).transpose(1, 2).flatten(2, 3)  # [B, H, M·L, D]
        i = index[:, None].expand(B, H, M, L).flatten(2)[..., None].expand(B, H, M * L, D)
        return o.new_zeros(B, H, T, D).scatter_add(2, i, o), S
