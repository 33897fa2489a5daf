"""PaTH attention: softmax attention with data-dependent Householder-product positions (and PaTH-FoX)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.short_conv import ShortConv
from trevo.errors import IncompatibleError
from trevo.ops.path_attention import path_attention
from trevo.registry import Paper, register


@register("mixer", "path_attention",
          paper=Paper("PaTH Attention: Position Encoding via Accumulating Householder Transformations",
                      "2505.16381", 2025),
          category="MHA", family="path_attention", causal=True, bidirectional=False,
          time="O(T²·d) chunk and quadratic, O(T·d) per generated token",
          memory="O(T·C) chunk; KV cache O(T·d) (keys kept carried to the latest token)",
          test_options={"chunk_size": 5, "w_low_rank_dim": 4})
class PaTHAttention(TokenMixer):
    """PaTH (Yang et al. 2025): the score of query i and key j <= i is q_iᵀ H_i ⋯ H_{j+1} k_j / √d with
    H_t = I − β_t w_t w_tᵀ, w_t = L2Norm(ShortConv(x_t W_w)) (a low-rank W_w), β_t = 2σ(x_t W_β) ∈ (0, 2):
    a position encoding that depends on the tokens between query and key. ``forget_gate=True`` adds
    FoX's F_i − F_j (PaTH-FoX).

    Forms: ``chunk`` (UT/WY products inside chunks, queries carried back chunk by chunk),
    ``quadratic`` (queries carried back token by token) and ``recurrent`` (the paper's decoding: the
    cached keys are multiplied by each new H_t, so a step scores them directly). The generation state
    holds those carried keys, the values, the convolution's last inputs and, with the gate, F."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, head_dim: int | None = None,
                 w_low_rank_dim: int = 32, conv_size: int = 3, forget_gate: bool = False, chunk_size: int = 64,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if conv_size < 1 or w_low_rank_dim < 1:
            raise IncompatibleError(f"path_attention needs conv_size >= 1 and w_low_rank_dim >= 1, got "
                                    f"conv_size={conv_size}, w_low_rank_dim={w_low_rank_dim}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads, head_dim)
        width = n_heads * self.head_dim
        self.chunk_size, self.forget_gate = chunk_size, forget_gate
        self.qkv_proj = nn.Linear(d_model, 3 * width, bias=False)
        self.w_proj = nn.Sequential(nn.Linear(d_model, w_low_rank_dim, bias=False),
                                    nn.Linear(w_low_rank_dim, width, bias=False))
        self.w_conv = ShortConv(width, conv_size)
        self.beta_proj = nn.Linear(d_model, n_heads)
        self.forget_proj = nn.Linear(d_model, n_heads) if forget_gate else None
        self.out_proj = nn.Linear(width, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        kv = torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        state = {"k": kv, "v": kv.clone(), "conv": self.w_conv.init_state(batch, device, dtype)}
        if self.forget_gate:
            state["forget"] = torch.zeros(batch, self.n_heads, 0, device=device, dtype=dtype)
        return state

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv_proj(x).chunk(3, dim=-1))
        w, conv = self.w_conv(self.w_proj(x), state["conv"])
        w = F.normalize(split_heads(w, self.n_heads), dim=-1)
        beta = 2 * torch.sigmoid(self.beta_proj(x)).transpose(1, 2)  # [B, H, T]
        v = torch.cat([state["v"], v], dim=2)
        new: State = {"v": v, "conv": conv}
        forget = None
        if self.forget_proj is not None:
            log_f = F.logsigmoid(self.forget_proj(x)).transpose(1, 2)
            last = state["forget"][..., -1:] if state["forget"].shape[-1] else torch.zeros_like(log_f[..., :1])
            forget = new["forget"] = torch.cat([state["forget"], last + log_f.cumsum(-1)], dim=-1)
        o, new["k"] = path_attention(q, k, v, w, beta, state["k"], forget=forget, form=self.form_for(x.shape[1]),
                                     chunk_size=self.chunk_size)
        return self.out_proj(merge_heads(o)), new
