"""LogSparse Transformer attention with convolutional queries and keys (Li et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.logsparse import logsparse_attention
from trevo.registry import Paper, register


@register("mixer", "logsparse_attention",
          paper=Paper("Enhancing the Locality and Breaking the Memory Bottleneck of Transformer on Time Series "
                      "Forecasting", "1907.00235", 2019),
          category="MHA/SparseOrLowRank", family="logsparse", causal=True, bidirectional=True,
          time="O(T·log T·d)", memory="O(T·log T); KV cache O(T·d)", test_options={"conv_size": 3})
class LogSparseAttention(TokenMixer):
    """LogSparse self-attention (Li et al. 2019, section 3.3) with convolutional self-attention
    (section 3.2): queries and keys come from a causal convolution of ``conv_size`` taps over the
    inputs (``conv_size=1`` is the usual linear projection), values from a linear map; query i attends
    itself and i − 2^k for k = 0 … ⌊log2 i⌋. Bidirectionally the pattern is mirrored (|i − j| = 0 or
    2^k), trevo's extension. Generation keeps the whole KV cache (any past key may be 2^k back) and
    the last ``conv_size − 1`` inputs."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, conv_size: int = 3) -> None:
        super().__init__(d_model, causal=causal)
        if conv_size < 1:
            raise IncompatibleError(f"logsparse_attention needs conv_size >= 1, got {conv_size}")
        self.n_heads, self.head_dim, self.conv_size = n_heads, head_dim_of(d_model, n_heads), conv_size
        self.qk_conv = nn.Conv1d(d_model, 2 * d_model, conv_size, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _project(self, x: torch.Tensor, history: torch.Tensor):
        """q, k, v heads of x after the ``conv_size − 1`` inputs of ``history`` (the causal padding)."""
        qk = F.conv1d(torch.cat([history, x], dim=1).transpose(1, 2), self.qk_conv.weight).transpose(1, 2)
        q, k = (split_heads(t, self.n_heads) for t in qk.chunk(2, dim=-1))
        return q, k, split_heads(self.value(x), self.n_heads)

    def _history(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.conv_size - 1, self.d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._project(x, self._history(x))
        return self.out_proj(merge_heads(logsparse_attention(q, k, v, causal=False, key_padding_mask=padding_mask)))

    def init_state(self, batch: int, device, dtype) -> State:
        empty = torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"k": empty, "v": empty.clone(),
                "conv": torch.zeros(batch, self.conv_size - 1, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._project(x, state["conv"])
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        history = torch.cat([state["conv"], x], dim=1)
        y = self.out_proj(merge_heads(logsparse_attention(q, k, v, causal=True)))
        return y, {"k": k, "v": v, "conv": history[:, history.shape[1] - (self.conv_size - 1):]}
