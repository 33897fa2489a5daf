"""Based and ReBased: linear attention through polynomial feature maps (``trevo.ops.based``), on the engine.

Based's architecture interleaves these layers with sliding-window softmax attention (window 64) and
short convolutions: in trevo that is a genome, e.g. ``model.layers: [based, {mixer: {name:
sliding_window_attention, window: 64}}]``; this module is its linear-attention layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.based import rebased_features, taylor_features
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


class _FeatureMapAttention(TokenMixer):
    """o_t = φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ / (φ(q_t)ᵀ Σ_{i<=t} φ(k_i) + ε): one engine call, the value
    extended by a constant 1 so that the state's last column is the normaliser z = Σ φ(k_i)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, causal: bool, n_heads: int, feature_dim: int, n_features: int, eps: float,
                 chunk_size: int, form: str) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.feature_dim, self.n_features, self.eps, self.chunk_size = feature_dim, n_features, eps, chunk_size
        self.q_proj = nn.Linear(d_model, n_heads * feature_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_state(self, batch: int, device, dtype) -> State:
        H, F_ = self.n_heads, self.n_features
        return {"S": torch.zeros(batch, H, F_, self.head_dim, device=device, dtype=dtype),
                "z": torch.zeros(batch, H, F_, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        q, k = (self.features(split_heads(p(x), H)) for p in (self.q_proj, self.k_proj))
        v = split_heads(self.v_proj(x), H)
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        S0 = torch.cat([state["S"], state["z"][..., None]], dim=-1)
        o, S = linear_recurrence(q, k, v1, initial_state=S0, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size)
        o = o[..., :-1] / (o[..., -1:] + self.eps)
        return self.out_proj(merge_heads(o)), {"S": S[..., :-1], "z": S[..., -1]}


@register("mixer", "based",
          paper=Paper("Simple linear attention language models balance the recall-throughput tradeoff",
                      "2402.18668", 2024),
          category="MHA/RightProduct", family="based", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·f² + T·f²·d/H) chunk with f = feature_dim", memory="O(f²·d) state",
          test_options={"chunk_size": 8, "feature_dim": 4})
class Based(_FeatureMapAttention):
    """Based's linear attention: q, k projected to ``feature_dim`` (16) per head, φ the
    2nd-order Taylor map of exp, φ(q)·φ(k) = 1 + q·k/√f + (q·k)²/(2f) > 0; normalised output."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, feature_dim: int = 16,
                 eps: float = 1e-6, chunk_size: int = 64, form: str = "auto") -> None:
        n_features = 1 + feature_dim + feature_dim * (feature_dim + 1) // 2
        super().__init__(d_model, causal, n_heads, feature_dim, n_features, eps, chunk_size, form)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return taylor_features(x)


@register("mixer", "rebased",
          paper=Paper("Linear Transformers with Learnable Kernel Functions are Better In-Context Models",
                      "2402.10644", 2024),
          category="MHA/RightProduct", family="based", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·f² + T·f²·d/H) chunk with f = feature_dim", memory="O(f²·d) state",
          test_options={"chunk_size": 8, "feature_dim": 4})
class ReBased(_FeatureMapAttention):
    """ReBased: Based with the kernel φ(x) = (γ ⊙ LayerNorm(x) + β)² — the feature map of
    φ(q)·φ(k) = (q̂·k̂)²/f for the normalised q̂, k̂ with learnable γ, β; no constant or linear term."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, feature_dim: int = 16,
                 eps: float = 1e-5, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal, n_heads, feature_dim, feature_dim * (feature_dim + 1) // 2, eps,
                         chunk_size, form)
        self.gamma = nn.Parameter(torch.ones(feature_dim))
        self.beta = nn.Parameter(torch.zeros(feature_dim))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.feature_dim,), self.gamma, self.beta)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return rebased_features(self.normalise(x))
