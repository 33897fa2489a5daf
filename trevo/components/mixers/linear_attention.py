"""Linear attention with the φ = elu + 1 feature map (Katharopoulos et al. 2020), on the engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.ops.linear_attention import linear_attention_quadratic, normalised_linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "linear_attention",
          paper=Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
                      "2006.16236", 2020),
          category="MHA/RightProduct", family="linear_attention", causal=True, bidirectional=True,
          recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T²·d) quadratic, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class LinearAttention(FusedQKVHeads, TokenMixer):
    """o_t = φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ / φ(q_t)ᵀ Σ_{i<=t} φ(k_i), φ(x) = elu(x) + 1 (eq. 6-9).

    Numerator and denominator are one engine call: the value gets a constant 1 appended, so the
    state's last column is z = Σ φ(k_i). Bidirectional: the sums run over all real tokens."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, eps: float = 1e-6,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.eps, self.chunk_size = eps, chunk_size
        self.init_heads(d_model, n_heads)

    def _qkv(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None):
        q, k, v = self.qkv_heads(x)
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if padding_mask is not None:  # padded keys add nothing to the sums
            k = k * padding_mask[:, None, :, None].to(k.dtype)
        return q, k, v

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._qkv(x, padding_mask)
        return self.project_out(linear_attention_quadratic(q, k, v, causal=False, eps=self.eps))

    def init_state(self, batch: int, device, dtype) -> State:
        S = torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)
        z = torch.zeros(batch, self.n_heads, self.head_dim, device=device, dtype=dtype)
        return {"S": S, "z": z}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._qkv(x)
        num, den, S, z = normalised_linear_recurrence(q, k, v, state["S"], state["z"], form=self.form_for(x.shape[1]),
                                                      chunk_size=self.chunk_size)
        return self.project_out(num / (den + self.eps)), {"S": S, "z": z}
