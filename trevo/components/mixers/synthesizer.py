"""Synthesizer (Tay et al. 2020): dense, random and factorized synthetic attention (math: ``trevo.ops.synthesizer``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import TrevoError
from trevo.ops.synthesizer import synthetic_attention
from trevo.registry import Paper, register

SYNTH_PAPER = Paper("Synthesizer: Rethinking Self-Attention in Transformer Models", "2005.00743", 2020)
_META = dict(paper=SYNTH_PAPER, category="MHA/Others", family="synthesizer", causal=True, bidirectional=True,
             fixed_length=True)


class _Synthesizer(TokenMixer):
    """Shared parts: values G(X) = XW_v per head, the output projection and the value cache."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int, n_heads: int) -> None:
        super().__init__(d_model, causal=causal)
        self.max_len, self.n_heads, self.head_dim = max_len, n_heads, head_dim_of(d_model, n_heads)
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
        return self.out_proj(merge_heads(o))

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(self.value(x), self.n_heads)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._mix(x, self._values(x), 0, padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"v": torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        v = torch.cat([state["v"], self._values(x)], dim=2)
        return self._mix(x, v, state["v"].shape[2]), {"v": v}


@register("mixer", "synthesizer_dense", **_META, time="O(T·d·ℓ + T²·d)", memory="O(T²); value cache O(T·d)")
class DenseSynthesizer(_Synthesizer):
    """Dense Synthesizer (eq. 1-2): per token and head, logits B_i = W_2 ReLU(W_1 X_i + b_1) + b_2 over
    the ℓ = max_len positions (the first T used); Y = softmax(B) X W_v."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, n_heads: int = 4) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, n_heads=n_heads)
        self.synth = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_heads * max_len))

    def logits(self, x, start, stop):
        b = self.synth(x).unflatten(-1, (self.n_heads, self.max_len)).transpose(1, 2)  # [B, H, Tq, ℓ]
        return b[..., :stop]


@register("mixer", "synthesizer_random", **_META, time="O(T²·d)", memory="O(ℓ²) logits; value cache O(T·d)")
class RandomSynthesizer(_Synthesizer):
    """Random Synthesizer (eq. 3): a learned matrix R ∈ R^{H×ℓ×ℓ}, randomly initialised and independent
    of the input; Y = softmax(R) X W_v."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, n_heads: int = 4) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, n_heads=n_heads)
        self.random_logits = nn.Parameter(torch.randn(n_heads, max_len, max_len))

    def logits(self, x, start, stop):
        return self.random_logits[None, :, start:stop, :stop]


def _mlp(d_model: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, out))


@register("mixer", "synthesizer_factorized_dense", **_META, time="O(T·d·(a + b) + T²·d)",
          memory="O(T²); value cache O(T·d)")
class FactorizedDenseSynthesizer(_Synthesizer):
    """Factorized Dense Synthesizer (section 3.1, "Factorized Dense"): per token and head two short
    vectors A_i = F_A(X_i) ∈ R^a and B_i = F_B(X_i) ∈ R^b with a·b >= ℓ, tiled to length ℓ and multiplied,
    C_ij = A_i[j mod a] · B_i[⌊j / a⌋] (H_A repeats A b times, H_B repeats each entry of B a times);
    Y = softmax(C) X W_v. ``factor`` is a (default ⌈√ℓ⌉), b = ⌈ℓ / a⌉."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, n_heads: int = 4,
                 factor: int | None = None) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, n_heads=n_heads)
        self.factor_a = factor or math.ceil(math.sqrt(max_len))
        if not 1 <= self.factor_a <= max_len:
            raise TrevoError(f"synthesizer_factorized_dense needs 1 <= factor <= max_len={max_len}, got {factor}")
        self.factor_b = math.ceil(max_len / self.factor_a)
        self.synth_a = _mlp(d_model, n_heads * self.factor_a)
        self.synth_b = _mlp(d_model, n_heads * self.factor_b)

    def logits(self, x, start, stop):
        a = self.synth_a(x).unflatten(-1, (self.n_heads, self.factor_a)).transpose(1, 2)  # [B, H, Tq, a]
        b = self.synth_b(x).unflatten(-1, (self.n_heads, self.factor_b)).transpose(1, 2)  # [B, H, Tq, b]
        j = torch.arange(stop, device=x.device)
        return a[..., j % self.factor_a] * b[..., j // self.factor_a]


@register("mixer", "synthesizer_factorized_random", **_META, time="O(ℓ²·k + T²·d)",
          memory="O(ℓ·k) parameters; value cache O(T·d)")
class FactorizedRandomSynthesizer(_Synthesizer):
    """Factorized Random Synthesizer (section 3.1, "Factorized Random"): the random logits are low rank,
    R = R_1 R_2ᵀ with R_1, R_2 ∈ R^{ℓ×k} (k = ``low_rank_dim``) per head, learned and independent of the
    input; Y = softmax(R) X W_v."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, n_heads: int = 4,
                 low_rank_dim: int = 8) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, n_heads=n_heads)
        if low_rank_dim < 1:
            raise TrevoError(f"synthesizer_factorized_random needs low_rank_dim >= 1, got {low_rank_dim}")
        self.random_left = nn.Parameter(torch.randn(n_heads, max_len, low_rank_dim) / low_rank_dim ** 0.25)
        self.random_right = nn.Parameter(torch.randn(n_heads, max_len, low_rank_dim) / low_rank_dim ** 0.25)

    def logits(self, x, start, stop):
        return (self.random_left[:, start:stop] @ self.random_right[:, :stop].transpose(-1, -2))[None]
