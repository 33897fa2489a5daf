"""Attention functions: what turns the scores s_ij = q_i·k_j/√d (+ a position bias) into the weights that
average the values — softmax and the alternatives that drop or change it (kind ``attention_fn``).

``softmax_attention`` (and its multi-query and grouped-query forms) takes ``attention_fn=NAME``; the
default ``softmax`` keeps its fused (sdpa) and chunked forms, the others compute their weights
directly, O(T²). An attention function is called as ``fn(q, k, v, causal=, bias=, key_padding_mask=)``
with q ``[B, H, Tq, D]`` and k, v ``[B, H, Tk, D]``, the queries at the last Tq of Tk positions (a
query chunk after a KV cache), ``bias`` an additive score bias (``[H|B, …, Tq, Tk]``) and
``key_padding_mask`` ``[B, Tk]`` True at real keys. The mixer calls ``attach(n_heads=, head_dim=,
causal=)`` once at build: a function with parameters per head makes them there, one defined in a single
direction refuses the other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.errors import IncompatibleError
from trevo.ops.attention import naive_softmax_attention
from trevo.registry import Paper, register


def visible_keys(tq: int, tk: int, *, causal: bool, key_padding_mask: torch.Tensor | None,
                 device: torch.device | None) -> torch.Tensor:
    """``[B|1, 1, Tq, Tk]`` True where query i may read key j (causal, aligned to the last Tq positions;
    and not padding)."""
    visible = torch.ones(tq, tk, dtype=torch.bool, device=device)
    if causal:
        visible = torch.arange(tk, device=device)[None, :] <= torch.arange(tk - tq, tk, device=device)[:, None]
    visible = visible[None, None]
    if key_padding_mask is not None:
        visible = visible & key_padding_mask.bool()[:, None, None, :]
    return visible


def scaled_scores(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """q kᵀ/√d plus the position bias."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return scores if bias is None else scores + bias


class AttentionFunction(nn.Module):
    """Base of the attention functions (see the module docstring for the call)."""

    bidirectional = True  # whether it is defined when every key is visible

    def attach(self, *, n_heads: int, head_dim: int, causal: bool) -> None:
        if not causal and not self.bidirectional:
            name = self.registry_entry.name
            raise IncompatibleError(f"attention_fn {name!r} is defined for causal attention only (it orders the "
                                    f"keys by distance to the query); use it in a causal model, or softmax")
        self.n_heads = n_heads

    def weights(self, scores: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The attention weights from the scaled scores (every entry, the invisible ones included)."""
        raise NotImplementedError

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                bias: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        visible = visible_keys(q.shape[-2], k.shape[-2], causal=causal, key_padding_mask=key_padding_mask,
                               device=q.device)
        weights = self.weights(scaled_scores(q, k, bias), visible)
        return weights.masked_fill(~visible, 0.0) @ v


def _count(visible: torch.Tensor) -> torch.Tensor:
    """Visible keys per query, at least 1 (a query with none gets weight 0 everywhere anyway)."""
    return visible.sum(dim=-1, keepdim=True).clamp(min=1)


@register("attention_fn", "softmax", category="Softmax", family="attention_functions",
          paper=Paper("Attention Is All You Need", "1706.03762", 2017))
class SoftmaxFunction(AttentionFunction):
    """softmax_j(s_ij): the rows are probabilities (Vaswani et al., eq. 1). In ``softmax_attention`` this
    name selects the mixer's own fused and chunked forms; called directly it is the naive reference."""

    def forward(self, q, k, v, *, causal, bias=None, key_padding_mask=None):
        return naive_softmax_attention(q, k, v, causal=causal, bias=bias, key_padding_mask=key_padding_mask)


@register("attention_fn", "relu", category="Softmax", family="attention_functions",
          paper=Paper("Replacing softmax with ReLU in Vision Transformers", "2309.08586", 2023))
class ReLUFunction(AttentionFunction):
    """ReLU attention: w_ij = ReLU(s_ij) / L (Wortsman et al. 2023), with L the number of keys the query
    sees (the sequence length when bidirectional; i + 1 for query i in a causal layer)."""

    def weights(self, scores, visible):
        return F.relu(scores) / _count(visible)


@register("attention_fn", "sigmoid", category="Softmax", family="attention_functions",
          paper=Paper("Theory, Analysis, and Best Practices for Sigmoid Self-Attention", "2409.04431", 2024))
class SigmoidFunction(AttentionFunction):
    """Sigmoid attention: w_ij = σ(s_ij + b), b = −log n (Ramapuram et al. 2024), with n the number of keys
    the query sees, so the weights start near 1/n; each weight is independent and rows need not sum
    to 1."""

    def weights(self, scores, visible):
        return torch.sigmoid(scores - torch.log(_count(visible).to(scores.dtype)))


@register("attention_fn", "softpick", category="Softmax", family="attention_functions",
          paper=Paper("Softpick: No Attention Sink, No Massive Activations with Rectified Softmax", "2504.20966",
                      2025))
class SoftpickFunction(AttentionFunction):
    """Softpick, a rectified softmax: w_ij = ReLU(e^{s_ij} − 1) / (Σ_j' |e^{s_ij'} − 1| + ε) over the visible
    keys (Zuhri et al. 2025). Scores ≤ 0 get exactly 0 and a row sums to at most 1, so a head can
    attend to nothing without a sink token. Computed with both terms scaled by e^{−m}, m = max(0, max_j s_ij)."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def weights(self, scores, visible):
        m = scores.masked_fill(~visible, float("-inf")).amax(dim=-1, keepdim=True).clamp(min=0).detach()
        shifted = torch.exp(scores - m) - torch.exp(-m)  # (e^s − 1)·e^{−m}
        denominator = shifted.abs().masked_fill(~visible, 0.0).sum(dim=-1, keepdim=True) + self.eps * torch.exp(-m)
        return F.relu(shifted) / denominator


@register("attention_fn", "stick_breaking", category="Softmax", family="attention_functions", bidirectional=False,
          paper=Paper("Scaling Stick-Breaking Attention: An Efficient Implementation and In-depth Study",
                      "2410.17980", 2024))
class StickBreakingFunction(AttentionFunction):
    """Stick-breaking attention (Tan et al. 2024): β_ij = σ(s_ij), and query i breaks its stick from the
    nearest key back, w_ij = β_ij ∏_{j<k<i} (1 − β_ik) (``attend_current``: the query's own key is the
    first, j ≤ k ≤ i). The weights sum to 1 − ∏(1 − β) ≤ 1 and favour recent keys, so the layer needs no
    position encoding. Computed in log space: log w_ij = log σ(s_ij) + Σ_{j<k} log σ(−s_ik). Causal only."""

    bidirectional = False

    def __init__(self, attend_current: bool = False) -> None:
        super().__init__()
        self.attend_current = attend_current

    def weights(self, scores, visible):
        if not self.attend_current:  # the query's own key takes no part: neither weight nor stick
            tq, tk = scores.shape[-2:]
            own = torch.arange(tk, device=scores.device)[None, :] == torch.arange(tk - tq, tk,
                                                                                 device=scores.device)[:, None]
            visible = visible & ~own
        log_keep = F.logsigmoid(-scores).masked_fill(~visible, 0.0)
        # Σ over the visible keys after j: a reversed cumulative sum, less the key's own term
        after = log_keep.flip(-1).cumsum(-1).flip(-1) - log_keep
        return torch.exp(F.logsigmoid(scores) + after).masked_fill(~visible, 0.0)


@register("attention_fn", "cosine", category="Softmax", family="attention_functions",
          paper=Paper("Swin Transformer V2: Scaling Up Capacity and Resolution", "2111.09883", 2021))
class ScaledCosineFunction(AttentionFunction):
    """Swin V2's scaled cosine attention: softmax_j(cos(q_i, k_j)/τ + B_ij), with a learned temperature
    τ per head, τ ≥ 0.01 (Liu et al. 2021, eq. 2; initialised at τ = 0.1 as the reference code's
    logit scale of 10). The logits are bounded by 1/τ whatever the scale of q and k."""

    def attach(self, *, n_heads: int, head_dim: int, causal: bool) -> None:
        super().attach(n_heads=n_heads, head_dim=head_dim, causal=causal)
        self.log_scale = nn.Parameter(torch.full((n_heads, 1, 1), math.log(10.0)))  # log(1/τ)

    def forward(self, q, k, v, *, causal, bias=None, key_padding_mask=None):
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        cosine = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
        scores = cosine * scale if bias is None else cosine * scale + bias
        visible = visible_keys(q.shape[-2], k.shape[-2], causal=causal, key_padding_mask=key_padding_mask,
                               device=q.device)
        weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        return torch.nan_to_num(weights).masked_fill(~visible, 0.0) @ v


@register("attention_fn", "normalized", category="Softmax", family="attention_functions",
          paper=Paper("Normalized Attention Without Probability Cage", "2005.09561", 2020))
class NormalizedFunction(AttentionFunction):
    """Normalized attention without the probability cage (Richter & Wattenhofer 2020): the softmax is
    replaced by a normalisation of each query's scores over the keys it sees, w_ij = (s_ij − μ_i)/σ_i
    (zero mean, unit variance; ε = 1e-6 in the variance). Weights may be negative: the output leaves the
    convex hull of the values."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def weights(self, scores, visible):
        n = _count(visible).to(scores.dtype)
        scores = scores.masked_fill(~visible, 0.0)
        mean = scores.sum(dim=-1, keepdim=True) / n
        centred = (scores - mean).masked_fill(~visible, 0.0)
        variance = centred.square().sum(dim=-1, keepdim=True) / n
        return centred * torch.rsqrt(variance + self.eps)
