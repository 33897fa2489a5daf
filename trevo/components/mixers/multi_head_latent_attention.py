"""Multi-head latent attention (MLA, DeepSeek-V2): low-rank key/value compression with decoupled RoPE."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.norms import RMSNorm
from trevo.components.rotary import apply_rotary
from trevo.errors import IncompatibleError
from trevo.ops.attention import chunked_softmax_attention, scaled_sdpa_attention, sdpa_attention
from trevo.registry import Paper, register


@register("mixer", "multi_head_latent_attention",
          paper=Paper("DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model",
                      "2405.04434", 2024),
          category="MHA", family="multi_head_latent_attention", causal=True, bidirectional=True,
          time="O(T²·d) naive forms, O(T²·H·(d_c + d_R)) absorbed",
          memory="KV cache O(T·(d_c + d_R)): the latent and one shared RoPE key per token",
          test_options={"kv_low_rank_dim": 6, "q_low_rank_dim": 5, "chunk_size": 8})
class MultiHeadLatentAttention(TokenMixer):
    """MLA (DeepSeek-AI 2024, eq. 9-19): c_KV = RMSNorm(W_DKV h) ∈ R^{d_c}; per head k^C = W_UK c_KV,
    v^C = W_UV c_KV; queries q^C = W_UQ c_Q from c_Q = RMSNorm(W_DQ h) (or W_Q h without
    ``q_low_rank_dim``); decoupled RoPE: q^R = RoPE(W_QR c_Q) per head, k^R = RoPE(W_KR h) shared by
    every head; q = [q^C; q^R], k = [k^C; k^R], o = softmax(q kᵀ / √(d_h + d_R)) v^C, u = W_O o.

    Generation caches only c_KV and k^R: d_c + d_R numbers per token instead of 2·H·d_h. Forms:
    ``sdpa`` and ``chunk`` decompress the latent into per-head keys and values (the naive form);
    ``absorbed`` folds W_UK into the queries and W_UV into the output and attends in the latent space
    (keys [c_KV; k^R] and values c_KV shared by all heads), the decoding form; ``auto`` uses it for a
    one-token step. Defaults follow the paper's ratios: d_c = 4·d_h, d_R = d_h / 2."""

    forms = ("sdpa", "chunk", "absorbed")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, head_dim: int | None = None,
                 kv_low_rank_dim: int | None = None, q_low_rank_dim: int | None = None,
                 rope_head_dim: int | None = None, chunk_size: int = 128, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads = n_heads
        self.head_dim = d_h = head_dim_of(d_model, n_heads, head_dim)
        self.kv_low_rank_dim = d_c = 4 * d_h if kv_low_rank_dim is None else kv_low_rank_dim
        self.rope_head_dim = d_r = max(2, d_h // 2 // 2 * 2) if rope_head_dim is None else rope_head_dim
        if d_c < 1 or d_r < 2 or d_r % 2:
            raise IncompatibleError(f"multi_head_latent_attention needs kv_low_rank_dim >= 1 and an even "
                                    f"rope_head_dim >= 2, got kv_low_rank_dim={d_c}, rope_head_dim={d_r}")
        self.chunk_size = chunk_size
        self.kv_down = nn.Linear(d_model, d_c + d_r, bias=False)  # [W_DKV; W_KR]
        self.kv_norm = RMSNorm(d_c)
        self.kv_up = nn.Linear(d_c, n_heads * 2 * d_h, bias=False)  # [W_UK; W_UV], head by head
        q_width = n_heads * (d_h + d_r)
        if q_low_rank_dim is None:
            self.q_proj = nn.Linear(d_model, q_width, bias=False)
        else:
            self.q_proj = nn.Sequential(nn.Linear(d_model, q_low_rank_dim, bias=False), RMSNorm(q_low_rank_dim),
                                        nn.Linear(q_low_rank_dim, q_width, bias=False))
        self.out_proj = nn.Linear(n_heads * d_h, d_model, bias=False)

    def form_for(self, seq_len: int) -> str:
        if self.form == "auto" and self.causal and seq_len == 1:
            return "absorbed"
        return super().form_for(seq_len)

    def _latent(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_KV ``[B, T, d_c]``, the rotated shared key k^R ``[B, T, d_R]``): what the cache holds."""
        c, k_rope = self.kv_down(x).split([self.kv_low_rank_dim, self.rope_head_dim], dim=-1)
        return self.kv_norm(c), apply_rotary(k_rope, offset)

    def _attend(self, x: torch.Tensor, c: torch.Tensor, k_rope: torch.Tensor, offset: int,
                padding_mask: torch.Tensor | None) -> torch.Tensor:
        d_h, d_c = self.head_dim, self.kv_low_rank_dim
        q_nope, q_rope = split_heads(self.q_proj(x), self.n_heads).split([d_h, self.rope_head_dim], dim=-1)
        q_rope = apply_rotary(q_rope, offset)
        w_uk, w_uv = self.kv_up.weight.view(self.n_heads, 2, d_h, d_c).unbind(1)  # [H, d_h, d_c] each
        form = self.form_for(x.shape[1])
        if form == "absorbed":
            q = torch.cat([q_nope @ w_uk, q_rope], dim=-1)  # q^Cᵀ W_UK c = (W_UKᵀ q^C)ᵀ c
            kv = torch.cat([c, k_rope], dim=-1)[:, None].expand(-1, self.n_heads, -1, -1)
            o_latent = scaled_sdpa_attention(q, kv, kv[..., :d_c], causal=self.causal, scale=(d_h + self.rope_head_dim)
                                             ** -0.5, key_padding_mask=padding_mask)
            o = o_latent @ w_uv.transpose(-1, -2)
        else:
            k_nope, v = split_heads(self.kv_up(c), self.n_heads).split([d_h, d_h], dim=-1)
            q = torch.cat([q_nope, q_rope], dim=-1)
            k = torch.cat([k_nope, k_rope[:, None].expand(-1, self.n_heads, -1, -1)], dim=-1)
            if form == "chunk":
                o = chunked_softmax_attention(q, k, v, causal=self.causal, key_padding_mask=padding_mask,
                                              chunk_size=self.chunk_size)
            else:
                o = sdpa_attention(q, k, v, causal=self.causal, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._attend(x, *self._latent(x, 0), 0, padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"c_kv": torch.zeros(batch, 0, self.kv_low_rank_dim, device=device, dtype=dtype),
                "k_rope": torch.zeros(batch, 0, self.rope_head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        offset = state["c_kv"].shape[1]
        c, k_rope = self._latent(x, offset)
        c, k_rope = torch.cat([state["c_kv"], c], dim=1), torch.cat([state["k_rope"], k_rope], dim=1)
        return self._attend(x, c, k_rope, offset, None), {"c_kv": c, "k_rope": k_rope}
