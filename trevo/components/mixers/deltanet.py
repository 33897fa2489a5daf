"""The delta-rule family of linear attention: DeltaNet, Gated DeltaNet, Kimi Delta Attention (KDA) and
Gated DeltaNet-2, each a special case of the next, on one chunked WY / UT engine (``trevo.ops.delta_rule``).

``negative_eigenvalues=True`` (Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative
Eigenvalues", arXiv:2411.12537) doubles the write strength: β ∈ (0, 2), so the transition I − β k kᵀ has
the eigenvalue 1 − β ∈ (−1, 1) along k — a reflection, which a diagonal linear RNN with positive
decays cannot express and parity needs.
"""

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
TIME = "O(T·C·d + T·d²/H) chunk (UT transform), O(T·d²/H) recurrent"


class DeltaRuleMixer(TokenMixer):
    """The layer shared by the family: q, k, v through short causal convolutions and SiLU; L2-normalised
    q and k per head; β_t = σ(W_β x_t) per head (2σ with ``negative_eigenvalues``); o_t = S_tᵀ q_t / √d_k;
    a per-head RMSNorm on the output. Subclasses choose the decay, the gates and the output gate."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, negative_eigenvalues: bool = False, form: str = "auto",
                 writes_per_token: int = 1) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.beta_scale = 2.0 if negative_eigenvalues else 1.0
        n = writes_per_token  # keys, values and β's per token (Gated DeltaProduct's n_householder)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj, self.v_proj = (nn.Linear(d_model, n * d_model, bias=False) for _ in range(2))
        self.q_conv = ShortConv(d_model, conv_size)
        self.k_conv, self.v_conv = (ShortConv(n * d_model, conv_size) for _ in range(2))
        self.b_proj = nn.Linear(d_model, n * n_heads, bias=True)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        state = {"S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)}
        for name in ("q", "k", "v"):
            state[f"conv_{name}"] = getattr(self, f"{name}_conv").init_state(batch, device, dtype)
        return state

    def log_decay(self, x: torch.Tensor) -> torch.Tensor | None:
        """log D_t: None (no decay), ``[B, H, T]`` or ``[B, H, T, Dk]``."""
        return None

    def gates(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(the queries read with, β ``[B, H, T]``, the erase key p or None for k, the values written)."""
        return q, self.beta_scale * torch.sigmoid(self.b_proj(x)).transpose(1, 2), None, v

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(merge_heads(self.o_norm(o)))

    def qkv(self, x: torch.Tensor, state: State, new: State) -> list[torch.Tensor]:
        """q, k, v ``[B, H, T, D]`` after the short convolutions and SiLU (q and k L2-normalised)."""
        branches = []
        for name in ("q", "k", "v"):
            y, new[f"conv_{name}"] = getattr(self, f"{name}_conv")(getattr(self, f"{name}_proj")(x),
                                                                   state[f"conv_{name}"])
            branches.append(split_heads(F.silu(y), self.n_heads))
        q, k, v = branches
        return [F.normalize(q, dim=-1), F.normalize(k, dim=-1), v]

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new: State = {}
        q, k, v = self.qkv(x, state, new)
        q, beta, erase_key, v = self.gates(x, q, k, v)
        o, new["S"] = delta_rule(q, k, v, beta, log_decay=self.log_decay(x), erase_key=erase_key,
                                 initial_state=state["S"], scale=self.head_dim ** -0.5,
                                 form=self.form_for(x.shape[1]), chunk_size=self.chunk_size_for(x.shape[1]))
        return self.output(o, x), new


@register("mixer", "deltanet", paper=DELTANET_PAPER, category="Rnn", family="deltanet", causal=True,
          bidirectional=False, recurrent=True, time=TIME, memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class DeltaNet(DeltaRuleMixer):
    """DeltaNet (Schlag et al. 2021, eq. 17-20; chunked by Yang et al. 2024):
    S_t = S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ, o_t = S_t q_t, keys L2-normalised, short
    convolutions on q, k, v (the 2024 paper's architecture); β ∈ (0, 2) with ``negative_eigenvalues``."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, negative_eigenvalues: bool = False, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         negative_eigenvalues=negative_eigenvalues, form=form)


class MambaDecay(nn.Module):
    """The Mamba-2-style log decay −exp(A_log) · softplus(W_a x + dt_bias), per head or per channel."""

    def __init__(self, d_model: int, n_heads: int, per_channel: bool = False,
                 low_rank_dim: int | None = None) -> None:
        super().__init__()
        self.n_heads, self.per_channel = n_heads, per_channel
        width = d_model if per_channel else n_heads
        if low_rank_dim is None:
            self.proj = nn.Linear(d_model, width, bias=False)
        else:
            self.proj = nn.Sequential(nn.Linear(d_model, low_rank_dim, bias=False),
                                      nn.Linear(low_rank_dim, width, bias=False))
        self.A_log = nn.Parameter(torch.empty(n_heads).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(dt_bias_init(width, 1e-3, 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rate = F.softplus(self.proj(x) + self.dt_bias)  # [B, T, width]
        if self.per_channel:
            return -self.A_log.exp()[:, None, None] * split_heads(rate, self.n_heads)  # [B, H, T, Dk]
        return (-self.A_log.exp() * rate).transpose(1, 2)  # [B, H, T]


@register("mixer", "gated_deltanet",
          paper=Paper("Gated Delta Networks: Improving Mamba2 with Delta Rule", "2412.06464", 2024),
          category="Rnn", family="deltanet", causal=True, bidirectional=False, recurrent=True,
          time=TIME, memory="O(d²/H) state", test_options={"chunk_size": 4})
class GatedDeltaNet(DeltaRuleMixer):
    """Gated DeltaNet (eq. 10): S_t = S_{t−1}(α_t(I − β_t k_t k_tᵀ)) + β_t v_t k_tᵀ with the
    Mamba-2-style decay α_t = exp(−exp(A_log) · softplus(W_a x_t + dt_bias)) per head, and the output
    gate RMSNorm(o) ⊙ SiLU(W_g x); β ∈ (0, 2) with ``negative_eigenvalues``."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, negative_eigenvalues: bool = False, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         negative_eigenvalues=negative_eigenvalues, form=form)
        self.decay = MambaDecay(d_model, n_heads)
        self.g_proj = nn.Linear(d_model, d_model, bias=False)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        return self.decay(x)

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(merge_heads(self.o_norm(o)) * F.silu(self.g_proj(x)))


@register("mixer", "kda",
          paper=Paper("Kimi Linear: An Expressive, Efficient Attention Architecture", "2510.26692", 2025),
          category="Rnn", family="deltanet", causal=True, bidirectional=False, recurrent=True,
          time=TIME + " (per-channel decays: sub-chunked)", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class KimiDeltaAttention(DeltaRuleMixer):
    """Kimi Delta Attention (KDA): the gated delta rule with a per-channel decay,
    S_t = (I − β_t k_t k_tᵀ) Diag(α_t) S_{t−1} + β_t k_t v_tᵀ, α_t = exp(−exp(A_log) ·
    softplus(W_f↑ W_f↓ x_t + dt_bias)) over the key channels (W_f of rank ``decay_low_rank_dim``, default
    head_dim); output RMSNorm(o) ⊙ σ(W_g↑ W_g↓ x) (rank ``gate_low_rank_dim``, default head_dim)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, decay_low_rank_dim: int | None = None,
                 gate_low_rank_dim: int | None = None, negative_eigenvalues: bool = False, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         negative_eigenvalues=negative_eigenvalues, form=form)
        self.decay = MambaDecay(d_model, n_heads, per_channel=True, low_rank_dim=decay_low_rank_dim or self.head_dim)
        rank = gate_low_rank_dim or self.head_dim
        self.g_proj = nn.Sequential(nn.Linear(d_model, rank, bias=False), nn.Linear(rank, d_model, bias=True))

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        return self.decay(x)

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(merge_heads(self.o_norm(o)) * torch.sigmoid(self.g_proj(x)))


@register("mixer", "gated_deltanet2",
          paper=Paper("Gated DeltaNet-2: Decoupling Erase and Write in Linear Attention", "2605.22791", 2026),
          category="Rnn", family="deltanet", causal=True, bidirectional=False, recurrent=True,
          time=TIME + " (per-channel decays: sub-chunked)", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class GatedDeltaNet2(KimiDeltaAttention):
    """Gated DeltaNet-2 (the Gated Delta Rule-2): S_t = (I − k_t (b_t ⊙ k_t)ᵀ) Diag(α_t) S_{t−1}
    + k_t (w_t ⊙ v_t)ᵀ with a channel-wise erase gate b_t = σ(W_b x_t) on the keys (2σ with
    ``negative_eigenvalues``) and a channel-wise write gate w_t = σ(W_w x_t) on the values, KDA's decay
    and output gate; b = w = β recovers KDA."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, decay_low_rank_dim: int | None = None,
                 gate_low_rank_dim: int | None = None, negative_eigenvalues: bool = False, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         decay_low_rank_dim=decay_low_rank_dim, gate_low_rank_dim=gate_low_rank_dim,
                         negative_eigenvalues=negative_eigenvalues, form=form)
        self.b_proj = nn.Linear(d_model, d_model, bias=False)  # the erase gate, per key channel
        self.w_proj = nn.Linear(d_model, d_model, bias=False)  # the write gate, per value channel

    def gates(self, x, q, k, v):
        erase = self.beta_scale * split_heads(torch.sigmoid(self.b_proj(x)), self.n_heads)
        write = split_heads(torch.sigmoid(self.w_proj(x)), self.n_heads)
        return q, k.new_ones(k.shape[:3]), erase * k, write * v
