"""ETSformer's exponential smoothing attention (Woo et al. 2022), on trevo's linear scan."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError
from trevo.ops.scan import linear_scan
from trevo.registry import Paper, register


@register("mixer", "exponential_smoothing_attention",
          paper=Paper("ETSformer: Exponential Smoothing Transformers for Time-series Forecasting", "2202.01381", 2022),
          category="MHA/Others", family="etsformer", causal=True, bidirectional=False, recurrent=True,
          time="O(T·d)", memory="O(d) state", test_options={"chunk_size": 4})
class ExponentialSmoothingAttention(TokenMixer):
    """Exponential smoothing attention (ESA, Woo et al. 2022, section 3.2, eq. 3): an attention whose
    weights depend only on the relative time lag, y_t = α v_t + (1 − α) y_{t−1} with y_0 = v_0, i.e.

        ESA(V)_t = (1 − α)^t v_0 + Σ_{j=1}^{t} α (1 − α)^{t−j} v_j,

    the fixed matrix A_ES applied to [v_0; V], with a learned smoothing parameter α ∈ (0, 1) and a learned
    initial state v_0 per head, V = X W_v and y = W_o ESA(V). Causal (a smoothing of the past).
    Forms: ``chunk``, ``scan`` and ``recurrent`` of ``trevo.ops.scan.linear_scan``."""

    forms = ("chunk", "scan", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int = 64,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if chunk_size < 1:
            raise IncompatibleError(f"exponential_smoothing_attention needs chunk_size >= 1, got {chunk_size}")
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.alpha_logit = nn.Parameter(torch.linspace(-2.0, 2.0, n_heads))  # α from slow to fast smoothing
        self.initial = nn.Parameter(torch.zeros(n_heads, self.head_dim))  # v_0

    def alpha(self) -> torch.Tensor:
        """α per channel ``[d]`` (each head's α over its channels)."""
        return torch.sigmoid(self.alpha_logit).repeat_interleave(self.head_dim)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"h": self.initial.flatten().to(device=device, dtype=dtype).expand(batch, -1)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        alpha = self.alpha().to(x.dtype)
        h, last = linear_scan(torch.log1p(-alpha), alpha * self.value(x), state["h"],
                              form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        return self.out_proj(h), {"h": last}
