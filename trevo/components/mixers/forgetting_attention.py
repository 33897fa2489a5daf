"""The Forgetting Transformer's attention (FoX): softmax attention with a data-dependent forget gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.forgetting_attention import forgetting_attention
from trevo.registry import Paper, register


@register("mixer", "forgetting_attention",
          paper=Paper("Forgetting Transformer: Softmax Attention with a Forget Gate", "2503.02130", 2025),
          category="MHA", family="forgetting_attention", causal=True, bidirectional=False,
          relative_positions=("rope",), time="O(T²·d)",
          memory="O(T·C) chunk, O(T²) quadratic; KV cache O(T·d) + one log-gate sum per cached token and head",
          test_options={"chunk_size": 8})
class ForgettingAttention(TokenMixer):
    """FoX attention (Lin et al. 2025, eq. 3-5): o_i = Σ_{j<=i} softmax_j(q_i·k_j/√d + F_i − F_j) v_j,
    F_i = Σ_{l<=i} log f_l, with a forget gate per head and token f_t = σ(w_fᵀ x_t + b_f).

    ``n_kv_heads`` < ``n_heads`` shares key/value heads (GQA); the gate is per query head. Forms:
    ``chunk`` (online softmax over key chunks, the bias built one chunk at a time: exact, O(T·C)
    memory) and ``quadratic`` (all scores at once). The generation state is the KV cache and F at
    every cached token (``forget``). FoX needs no position encoding; RoPE may be added."""

    forms = ("chunk", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_kv_heads: int | None = None,
                 head_dim: int | None = None, chunk_size: int = 256, position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise IncompatibleError(f"forgetting_attention: n_heads={n_heads} must be a multiple of "
                                    f"n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = head_dim_of(d_model, n_heads, head_dim)
        self.chunk_size = chunk_size
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_heads * self.head_dim, bias=False)
        self.forget_proj = nn.Linear(d_model, n_heads)  # the bias b_f of the gate
        self.out_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)
        self.position = position

    def init_state(self, batch: int, device, dtype) -> State:
        kv = torch.zeros(batch, self.n_kv_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"k": kv, "v": kv.clone(), "forget": torch.zeros(batch, self.n_heads, 0, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        offset = state["k"].shape[2]
        q = split_heads(self.q_proj(x), self.n_heads)
        k, v = (split_heads(t, self.n_kv_heads) for t in self.kv_proj(x).chunk(2, dim=-1))
        if self.position is not None and hasattr(self.position, "rotate"):
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset)
        log_f = F.logsigmoid(self.forget_proj(x)).transpose(1, 2)  # [B, H, T]
        last = state["forget"][..., -1:] if offset else torch.zeros_like(log_f[..., :1])
        forget = torch.cat([state["forget"], last + log_f.cumsum(-1)], dim=-1)
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        groups = self.n_heads // self.n_kv_heads
        k_all, v_all = (t.repeat_interleave(groups, dim=1) if groups > 1 else t for t in (k, v))
        o = forgetting_attention(q, k_all, v_all, forget, form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        return self.out_proj(merge_heads(o)), {"k": k, "v": v, "forget": forget}
