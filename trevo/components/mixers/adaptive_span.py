"""Adaptive attention span (Sukhbaatar et al., "Adaptive Attention Span in Transformers",
arXiv:1905.07799): every head learns how far back it looks, and pays for it in the loss."""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import extend_kv_cache
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.banded_attention import banded_attention
from trevo.registry import Paper, register


def soft_span_mask(distance: torch.Tensor, span: torch.Tensor, ramp: float) -> torch.Tensor:
    """m_z(x) = min(max((R + z − x) / R, 0), 1) (eq. 3) for distances x ``[n]`` and spans z ``[H]``: ``[H, n]``."""
    return ((ramp + span[:, None] - distance[None, :]) / ramp).clamp(0, 1)


@register("mixer", "adaptive_span", paper=Paper("Adaptive Attention Span in Transformers", "1905.07799", 2019),
          category="MHA/LocalGlobal", family="adaptive_span", causal=True, bidirectional=False, recurrent=True,
          time="O(T·S·d), S = window (the largest span)", memory="O(S·d) window cache in generation",
          test_options={"window": 6, "ramp": 2.0, "span_init": 0.4})
class AdaptiveSpanAttention(FusedQKVHeads, TokenMixer):
    """Causal softmax attention with a learned soft span per head (eq. 2-3):
    a_tr = m_z(t − r) exp(s_tr) / Σ_q m_z(t − q) exp(s_tq), m_z(x) = clamp((R + z − x)/R, 0, 1),
    z ∈ (0, S) learned per head, R = ``ramp``, S = ``window`` (no key farther than S is looked at).

    The span penalty of §3.2, L = −log P + λ·(1/M) Σ_i z_i, is ``auxiliary_loss()`` = λ · mean z
    (λ = ``span_penalty``, the paper's 2·10⁻⁶ for character LMs); ``trevo train`` adds every module's
    ``auxiliary_loss()`` to the task loss (``trevo.train.auxiliary_loss``). ``spans()`` reads z in tokens.
    The paper keeps z in [0, S] by clamping its parameter after each optimiser step; here
    z = S·σ(p), which stays inside without a trainer hook. Generation keeps the last S − 1 keys."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, window: int = 256,
                 ramp: float = 32.0, span_init: float = 0.1, span_penalty: float = 2e-6) -> None:
        super().__init__(d_model, causal=causal)
        if window < 1 or ramp <= 0:
            raise IncompatibleError(f"adaptive_span needs window >= 1 and ramp > 0, got window={window}, ramp={ramp}")
        if not 0 < span_init < 1:
            raise IncompatibleError(f"adaptive_span: span_init is the initial span as a fraction of window, "
                                    f"in (0, 1); got {span_init}")
        self.window, self.ramp, self.span_penalty = window, float(ramp), span_penalty
        self.init_heads(d_model, n_heads)
        self.span_logit = nn.Parameter(torch.full((n_heads,), math.log(span_init / (1 - span_init))))

    def spans(self) -> torch.Tensor:
        """z per head, in tokens: S·σ(p)."""
        return self.window * torch.sigmoid(self.span_logit)

    def auxiliary_loss(self) -> torch.Tensor:
        """λ · mean_i z_i, the span penalty the training loss adds (§3.2)."""
        return self.span_penalty * self.spans().mean()

    def init_state(self, batch: int, device, dtype) -> State:
        return self.init_kv_cache(batch, device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self.qkv_heads(x)
        kc, vc = extend_kv_cache(state, k, v, dim=2)
        distance = torch.arange(self.window - 1, -1, -1, device=x.device, dtype=x.dtype)  # offset o ↦ S − 1 − o
        mask = soft_span_mask(distance, self.spans().to(x.dtype), self.ramp)
        o = banded_attention(q, kc, vc, window=self.window, causal=True, offset_weight=mask)
        keep = self.window - 1
        return self.project_out(o), {"k": kc[:, :, kc.shape[2] - keep:], "v": vc[:, :, vc.shape[2] - keep:]}
