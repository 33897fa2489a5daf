"""Log-linear Mamba-2 and Gated DeltaNet (Guo et al., "Log-Linear Attention", arXiv:2506.04761): the single
state becomes a Fenwick-tree hierarchy of O(log T) states with per-level weights (``trevo.ops.log_linear``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, n_heads_of, split_heads
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import dt_bias_init
from trevo.ops.log_linear import log_linear_attention
from trevo.registry import Paper, register

LOG_LINEAR = Paper("Log-Linear Attention", "2506.04761", 2025)


@register("mixer", "log_linear_mamba2", paper=LOG_LINEAR,
          category="LongConv", family="log_linear", causal=True, bidirectional=False, recurrent=False,
          time="O(T·C·e·d + T·log T·e·d·N) chunk, O(T·log T·e·d·N) recurrent",
          memory="O(log T·e·d·N) state (one matrix per level)",
          test_options={"chunk_size": 4, "head_dim": 8, "d_state": 4, "n_levels": 8})
class LogLinearMamba2(TokenMixer):
    """The Mamba-2 block (see ``mamba2``: [z, x, B, C, Δ] = W_in u, short convolution, SiLU, scalar decay
    exp(Δ_t A_h), D skip, W_out RMSNorm(y ⊙ SiLU(z))) with the log-linear read:
    y_t = Σ_ℓ λ_t^(ℓ) C_tᵀ S_t^(ℓ) over the Fenwick buckets of the prefix, λ_t^(ℓ) = softplus(L_{h,ℓ} ·
    (W_λ u_t)_{h,ℓ}) per head and level (``n_levels`` 16: up to 32767 positions). Its state grows as
    log T, so it is not a constant-size recurrence."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, expand: int = 2, head_dim: int = 64, d_state: int = 64,
                 n_levels: int = 16, conv_size: int = 4, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        d_inner = expand * d_model
        self.n_heads, self.n_levels = n_heads_of(d_inner, head_dim), n_levels
        self.d_inner, self.head_dim, self.d_state, self.chunk_size = d_inner, head_dim, d_state, chunk_size
        H = self.n_heads
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * d_state + H + H * n_levels, bias=False)
        self.conv = ShortConv(d_inner + 2 * d_state, conv_size)
        self.A_log = nn.Parameter(torch.empty(H).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(dt_bias_init(H, 1e-3, 0.1))
        self.level_scale = nn.Parameter(torch.ones(H, n_levels))
        self.D = nn.Parameter(torch.ones(H))
        self.norm = nn.RMSNorm(d_inner, eps=1e-5)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, 0, self.d_state, self.head_dim, device=device, dtype=dtype),
                "conv": self.conv.init_state(batch, device, dtype),
                "pos": torch.zeros((), device=device, dtype=torch.long)}

    def causal_forward(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        Bsz, T, _ = u.shape
        H, N = self.n_heads, self.d_state
        z, xBC, dt, dl = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * N, H, H * self.n_levels], dim=-1)
        xBC, conv = self.conv(xBC, state["conv"])
        x, Bm, Cm = F.silu(xBC).split([self.d_inner, N, N], dim=-1)
        dt = F.softplus(dt + self.dt_bias).transpose(1, 2)  # [B, H, T]
        lam = F.softplus(self.level_scale * dl.unflatten(-1, (H, self.n_levels))).transpose(1, 2)  # [B, H, T, L]
        xh = split_heads(x, H)
        k, q = Bm[:, None].expand(Bsz, H, T, N), Cm[:, None].expand(Bsz, H, T, N)
        y, S = log_linear_attention(q, k, xh * dt[..., None], -self.A_log.exp()[:, None] * dt, lam, state=state["S"],
                                    pos=int(state["pos"]), form=self.form_for(T), chunk_size=self.chunk_size)
        y = merge_heads(y + self.D[:, None, None] * xh)
        return self.out_proj(self.norm(y * F.silu(z))), {"S": S, "conv": conv, "pos": state["pos"] + T}


@register("mixer", "log_linear_gated_deltanet", paper=LOG_LINEAR, category="Rnn", family="log_linear", causal=True,
          bidirectional=False, recurrent=False, time="O(T·C·d + T·log T·d²/H) chunk, O(T·log T·d²/H) recurrent",
          memory="O(log T·d²/H) state (one matrix per level)", test_options={"n_levels": 8, "chunk_size": 4})
class LogLinearGatedDeltaNet(TokenMixer):
    """Gated DeltaNet (see ``gated_deltanet``: short convolutions and SiLU on q, k, v, ℓ2-normalised q, k,
    β = σ(W_β x), Mamba-2 decay, output RMSNorm(o) ⊙ SiLU(W_g x)) with the log-linear read: every
    Fenwick bucket evolves by α_t (I − β_t k_t k_tᵀ), o_t = Σ_ℓ λ_t^(ℓ) S_t^(ℓ)ᵀ q_t / √d_k. Forms: ``chunk``
    (blocks of ``chunk_size`` through the delta rule's UT transform), ``quadratic``, ``recurrent``."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_levels: int = 16,
                 conv_size: int = 4, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.n_levels = n_heads, head_dim_of(d_model, n_heads), n_levels
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = ShortConv(3 * d_model, conv_size)
        self.b_proj = nn.Linear(d_model, n_heads)
        self.a_proj = nn.Linear(d_model, n_heads, bias=False)
        self.l_proj = nn.Linear(d_model, n_heads * n_levels, bias=False)
        self.level_scale = nn.Parameter(torch.ones(n_heads, n_levels))
        self.A_log = nn.Parameter(torch.empty(n_heads).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(dt_bias_init(n_heads, 1e-3, 0.1))
        self.g_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        D = self.head_dim
        return {"S": torch.zeros(batch, self.n_heads, 0, D, D, device=device, dtype=dtype),
                "conv": self.conv.init_state(batch, device, dtype),
                "pos": torch.zeros((), device=device, dtype=torch.long)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        qkv, conv = self.conv(self.qkv(x), state["conv"])
        q, k, v = (split_heads(F.silu(t), H) for t in qkv.chunk(3, dim=-1))
        q, k = F.normalize(q, dim=-1) * self.head_dim ** -0.5, F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)
        log_decay = (-self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)).transpose(1, 2)
        lam = F.softplus(self.level_scale * self.l_proj(x).unflatten(-1, (H, self.n_levels))).transpose(1, 2)
        T = x.shape[1]
        o, S = log_linear_attention(q, k, v, log_decay, lam, state=state["S"], pos=int(state["pos"]),
                                    form=self.form_for(T), chunk_size=self.chunk_size, beta=beta)
        y = merge_heads(self.o_norm(o)) * F.silu(self.g_proj(x))
        return self.out_proj(y), {"S": S, "conv": conv, "pos": state["pos"] + x.shape[1]}
