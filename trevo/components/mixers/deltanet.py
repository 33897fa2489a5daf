"""DeltaNet and Gated DeltaNet: linear attention whose write is the delta rule, chunked with the
WY / UT transform (``trevo.ops.delta_rule``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import dt_bias_init
from trevo.ops.delta_rule import delta_rule
from trevo.registry import Paper, register

DELTANET_PAPER = Paper("Parallelizing Linear Transformers with the Delta Rule over Sequence Length",
                       "2406.06484", 2024)


class _DeltaBase(TokenMixer):
    """q, k, v through short causal convolutions and SiLU; L2-normalised q and k per head;
    β_t = σ(W_β x_t) per head; o_t = S_tᵀ q_t / √d_k; a per-head RMSNorm on the output."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))
        self.q_conv, self.k_conv, self.v_conv = (ShortConv(d_model, conv_size) for _ in range(3))
        self.b_proj = nn.Linear(d_model, n_heads, bias=True)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        state = {"S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)}
        for name in ("q", "k", "v"):
            state[f"conv_{name}"] = getattr(self, f"{name}_conv").init_state(batch, device, dtype)
        return state

    def log_decay(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(merge_heads(self.o_norm(o)))

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new: State = {}
        branches = []
        for name in ("q", "k", "v"):
            y, new[f"conv_{name}"] = getattr(self, f"{name}_conv")(getattr(self, f"{name}_proj")(x),
                                                                   state[f"conv_{name}"])
            branches.append(split_heads(F.silu(y), self.n_heads))
        q, k, v = branches
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)
        o, new["S"] = delta_rule(q, k, v, beta, log_decay=self.log_decay(x), initial_state=state["S"],
                                 scale=self.head_dim ** -0.5, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size)
        return self.output(o, x), new


@register("mixer", "deltanet", paper=DELTANET_PAPER, category="Rnn", family="deltanet", causal=True,
          bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk (UT transform), O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class DeltaNet(_DeltaBase):
    """DeltaNet (Schlag et al. 2021, eq. 17-20; chunked by Yang et al. 2024):
    S_t = S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ, o_t = S_t q_t, keys L2-normalised, short
    convolutions on q, k, v (the 2024 paper's architecture)."""


@register("mixer", "gated_deltanet",
          paper=Paper("Gated Delta Networks: Improving Mamba2 with Delta Rule", "2412.06464", 2024),
          category="Rnn", family="deltanet", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk (UT transform), O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class GatedDeltaNet(_DeltaBase):
    """Gated DeltaNet (eq. 10): S_t = S_{t−1}(α_t(I − β_t k_t k_tᵀ)) + β_t v_t k_tᵀ with the
    Mamba-2-style decay α_t = exp(−exp(A_log) · softplus(W_a x_t + dt_bias)) per head, and the output
    gate RMSNorm(o) ⊙ SiLU(W_g x)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         form=form)
        self.a_proj = nn.Linear(d_model, n_heads, bias=False)
        self.A_log = nn.Parameter(torch.empty(n_heads).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(dt_bias_init(n_heads, 1e-3, 0.1))
        self.g_proj = nn.Linear(d_model, d_model, bias=False)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        return (-self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)).transpose(1, 2)

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(merge_heads(self.o_norm(o)) * F.silu(self.g_proj(x)))
