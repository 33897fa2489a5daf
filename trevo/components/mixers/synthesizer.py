"""Synthesizer (Tay et al. 2020): dense and random synthetic attention. Math in ``trevo.ops.synthesizer``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.ops.synthesizer import synthetic_attention
from trevo.registry import IncompatibleError, Paper, TrevoError, register

SYNTH_PAPER = Paper("Synthesizer: Rethinking Self-Attention in Transformer Models", "2005.00743", 2020)
_META = dict(paper=SYNTH_PAPER, category="MHA/Others", family="synthesizer", causal=True, bidirectional=True,
             fixed_length=True, forms=("parallel",), test_options={"max_len": 19})


class _Synthesizer(TokenMixer):
    """Shared parts: values G(X) = XW_v per head, the output projection and the value cache."""

    forms = ("parallel",)

    def __init__(self, d_model: int, *, causal: bool, max_len: int, n_heads: int, impl: str) -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        if d_model % n_heads:
            raise IncompatibleError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.max_len, self.n_heads, self.head_dim = max_len, n_heads, d_model // n_heads
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def logits(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """``[B|1, H, Tq, Tk]`` for query positions start:stop (x holds their inputs) and keys :stop."""
        raise NotImplementedError

    def _mix(self, x: torch.Tensor, v: torch.Tensor, start: int, padding_mask=None) -> torch.Tensor:
        stop = v.shape[2]
        if stop > self.max_len:
            raise TrevoError(f"{type(self).__name__} synthesises attention over {self.max_len} positions "
                             f"(model.max_len) but got position {stop - 1}; raise model.max_len")
        o = synthetic_attention(self.logits(x, start, stop).to(v.dtype), v, causal=self.causal,
                                key_padding_mask=padding_mask)
        return self.out_proj(o.transpose(1, 2).flatten(2))

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x).unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        return self._mix(x, self._values(x), 0, None if self.causal else padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"v": torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)}

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        self._require_causal("prefill")
        self.check_input(x)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        v = torch.cat([state["v"], self._values(x)], dim=2)
        return self._mix(x, v, state["v"].shape[2]), {"v": v}


@register("mixer", "synthesizer_dense", **_META, time="O(T·d·ℓ + T²·d)", memory="O(T²); value cache O(T·d)")
class DenseSynthesizer(_Synthesizer):
    """Dense Synthesizer (eq. 1-2): per token and head, logits B_i = W_2 ReLU(W_1 X_i + b_1) + b_2 over
    the ℓ = max_len positions (the first T used); Y = softmax(B) X W_v."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, n_heads: int = 4,
                 impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, n_heads=n_heads, impl=impl)
        self.synth = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_heads * max_len))

    def logits(self, x, start, stop):
        b = self.synth(x).unflatten(-1, (self.n_heads, self.max_len)).transpose(1, 2)  # [B, H, Tq, ℓ]
        return b[..., :stop]


@register("mixer", "synthesizer_random", **_META, time="O(T²·d)", memory="O(ℓ²) logits; value cache O(T·d)")
class RandomSynthesizer(_Synthesizer):
    """Random Synthesizer (eq. 3): a learned matrix R ∈ R^{H×ℓ×ℓ}, randomly initialised and independent
    of the input; Y = softmax(R) X W_v."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, n_heads: int = 4,
                 impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, n_heads=n_heads, impl=impl)
        self.random_logits = nn.Parameter(torch.randn(n_heads, max_len, max_len))

    def logits(self, x, start, stop):
        return self.random_logits[None, :, start:stop, :stop]
