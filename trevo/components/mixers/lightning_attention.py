"""Lightning attention: TransNormerLLM's decayed linear attention, computed blockwise.

Qin et al., "Lightning Attention-2: A Free Lunch for Handling Unlimited Sequence Lengths in Large
Language Models" (arXiv:2401.04658): inside a block the masked "left product" (Q Kᵀ ⊙ M) V,
between blocks the "right product" through the carried KV state — which is the engine's ``chunk``
form with a fixed scalar decay per head. The layer is TransNormerLLM's gated linear attention
(Qin et al., arXiv:2307.14995).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


def lightning_log_decays(n_heads: int, layer_idx: int, n_layers: int) -> torch.Tensor:
    """log λ_h = −(8h/H)(1 − l/L) for heads h = 0 … H−1 of layer l of L (TransNormerLLM; head 0
    does not decay, and the decays weaken with depth)."""
    return -(8 / n_heads) * (1 - layer_idx / max(n_layers, 1)) * torch.arange(n_heads, dtype=torch.float64)


@register("mixer", "lightning_attention",
          paper=Paper("Lightning Attention-2: A Free Lunch for Handling Unlimited Sequence Lengths in Large "
                      "Language Models", "2401.04658", 2024),
          category="MHA/RightProduct", family="lightning_attention", causal=True, bidirectional=False,
          recurrent=True, time="O(T·C·d + T·d²/H) chunk (blockwise), O(T²·d) quadratic, O(T·d²/H) recurrent",
          memory="O(d²/H) state", test_options={"chunk_size": 8})
class LightningAttention(TokenMixer):
    """o_t = q_tᵀ Σ_{i<=t} λ_h^{t−i} k_i v_iᵀ with q, k = SiLU(W x) and the fixed per-head decay of
    ``lightning_log_decays``; output W_o (SRMSNorm(o) ⊙ W_u x), SRMSNorm an RMSNorm without gain
    (TransNormerLLM's gated linear attention; its LRPE-d position encoding is not included)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, layer_idx: int = 0, n_layers: int = 1,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.qkvu = nn.Linear(d_model, 4 * d_model, bias=False)
        self.norm = nn.RMSNorm(d_model, eps=1e-6, elementwise_affine=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.layer_idx, self.n_layers = layer_idx, n_layers

    def init_state(self, batch: int, device, dtype) -> State:
        D = self.head_dim
        return {"S": torch.zeros(batch, self.n_heads, D, D, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v, u = self.qkvu(x).chunk(4, dim=-1)
        H, B, T = self.n_heads, x.shape[0], x.shape[1]
        q, k, v = split_heads(F.silu(q), H), split_heads(F.silu(k), H), split_heads(v, H)
        # fixed, so computed in float64 each call (a float32 buffer would round them for float64 runs)
        log_decay = lightning_log_decays(H, self.layer_idx, self.n_layers).to(x.device, x.dtype)
        log_decay = log_decay[None, :, None].expand(B, H, T)
        o, S = linear_recurrence(q, k, v, log_decay=log_decay, initial_state=state["S"], form=self.form_for(T),
                                 chunk_size=self.chunk_size)
        return self.out_proj(self.norm(merge_heads(o)) * u), {"S": S}
