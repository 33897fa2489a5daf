"""RWKV-7 "Goose" time-mix: the generalized delta rule with a diagonal-plus-rank-one transition
(``trevo.ops.generalized_delta_rule``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.token_shift import token_shift
from trevo.ops.generalized_delta_rule import generalized_delta_rule
from trevo.registry import Paper, register

TARGETS = ("r", "w", "k", "v", "a", "g")
# The token-shift exponents of RWKV-LM's initialisation: μ = 1 − (n/d)^(e·r1).
SHIFT_EXPONENTS = {"r": 0.2, "w": 0.9, "k": 0.7, "v": 0.7, "a": 0.9, "g": 0.2}


def _lora_rank(d_model: int, scale: float, factor: float = 1.0) -> int:
    """RWKV-7's default LoRA width: a multiple of 32 near scale·√d (at least 32)."""
    return max(32, int(round(scale * math.sqrt(d_model) * factor / 32) * 32))


class _LoRA(nn.Module):
    """λ + f(x A) B (RWKV-6/7's low-rank data dependence), A zero and B orthogonal·0.1 at init as in
    RWKV-LM, so the output starts at its bias λ."""

    def __init__(self, d_model: int, rank: int, activation, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.zeros(d_model, rank))
        self.B = nn.Parameter(nn.init.orthogonal_(torch.empty(rank, d_model), gain=0.1))
        self.bias = None if bias is None else nn.Parameter(bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.activation(x @ self.A) @ self.B
        return y if self.bias is None else y + self.bias


@register("mixer", "rwkv7", paper=Paper('RWKV-7 "Goose" with Expressive Dynamic State Evolution', "2503.14456", 2025),
          category="Rnn", family="rwkv7", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk (DPLR UT transform), O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4, "decay_low_rank_dim": 4, "a_low_rank_dim": 4, "gate_low_rank_dim": 4})
class RWKV7TimeMix(TokenMixer):
    """RWKV-7 time-mix: □_t = W_□ lerp(x_t, x_{t−1}, μ_□) for r, k, v; the decay
    w_t = exp(−e^{−0.5} σ(lora_w(x_w))) per channel; the in-context learning rate a_t = σ(lora_a(x_a)); the
    removal key κ̂_t = normalize(k_t ⊙ ξ) per head and the replacement key k̃_t = k_t ⊙ (1 + (a_t − 1) ⊙ α);
    the state S_t = S_{t−1}(diag(w_t) − κ̂_tᵀ(a_t ⊙ κ̂_t)) + v_tᵀ k̃_t, wkv_t = S_t r_t;
    out = W_o((GroupNorm_h(wkv_t) + (r_t ⊙ k̃_t ⊙ ρ)·1 v_t) ⊙ g_t), g_t = lora_g(x_g) (sigmoid inside).
    LoRA ranks ``decay_low_rank_dim``, ``a_low_rank_dim``, ``gate_low_rank_dim`` (default: RWKV-7's widths).
    RWKV-LM's layer-dependent initialisation. Not included: the value residual across layers (v mixed
    with the first layer's v), which needs state shared between blocks."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int | None = None,
                 decay_low_rank_dim: int | None = None, a_low_rank_dim: int | None = None,
                 gate_low_rank_dim: int | None = None, layer_idx: int = 0, n_layers: int = 1,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        D = self.head_dim
        r0 = layer_idx / max(1, n_layers - 1)
        r1 = 1.0 - layer_idx / max(1, n_layers)
        n = torch.arange(d_model, dtype=torch.float32)
        ddd = n / d_model
        linear = n / max(1, d_model - 1) - 0.5
        zig = ((n % D) - (D - 1) / 2) / max((D - 1) / 2, 1e-9)
        zigzag = zig * zig.abs()
        www = -6 + 6 * (n / max(1, d_model - 1)) ** (1 + r0 ** 0.3)
        self.mu = nn.ParameterDict({t: nn.Parameter(1.0 - ddd ** (e * r1)) for t, e in SHIFT_EXPONENTS.items()})
        factor = D / 64
        self.w_lora = _LoRA(d_model, decay_low_rank_dim or _lora_rank(d_model, 2.5, factor), torch.tanh,
                            www + 0.5 + zigzag * 2.5)
        self.a_lora = _LoRA(d_model, a_low_rank_dim or _lora_rank(d_model, 2.5, factor), nn.Identity(),
                            -0.19 + zigzag * 0.3 + linear * 0.4)
        self.g_lora = _LoRA(d_model, gate_low_rank_dim or _lora_rank(d_model, 5.0), torch.sigmoid, None)
        self.k_k = nn.Parameter(0.71 - linear * 0.1)  # ξ: the removal key's per-channel scale
        self.k_a = nn.Parameter(torch.full((d_model,), 1.02))  # α: how much a_t scales the replacement key
        self.r_k = nn.Parameter(torch.full((n_heads, D), -0.04))  # ρ: the current token's bonus
        self.r_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d_model, d_model, bias=False)
                                                              for _ in range(4))
        self.g_norm = nn.GroupNorm(n_heads, d_model, eps=D * 1e-5)
        with torch.no_grad():
            self.g_norm.weight.fill_(((layer_idx + 1) / max(1, n_layers)) ** 0.7)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"x_prev": torch.zeros(batch, self.d_model, device=device, dtype=dtype),
                "S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, _ = x.shape
        H = self.n_heads
        delta = token_shift(x, state["x_prev"]) - x
        xs = {t: x + delta * mu for t, mu in self.mu.items()}
        r, k, v = self.r_proj(xs["r"]), self.k_proj(xs["k"]), self.v_proj(xs["v"])
        log_w = -math.exp(-0.5) * torch.sigmoid(self.w_lora(xs["w"]))
        a = torch.sigmoid(self.a_lora(xs["a"]))
        g = self.g_lora(xs["g"])
        kk = F.normalize(split_heads(k * self.k_k, H), dim=-1)  # κ̂
        k = k * (1 + (a - 1) * self.k_a)  # k̃
        r, k, v, a, log_w = (split_heads(t, H) for t in (r, k, v, a, log_w))
        wkv, S = generalized_delta_rule(r, k, v, -kk, kk * a, log_decay=log_w, initial_state=state["S"],
                                        form=self.form_for(T), chunk_size=self.chunk_size_for(T))
        y = self.g_norm(merge_heads(wkv).reshape(B * T, -1)).reshape(B, T, -1)
        bonus = (r * k * self.r_k[:, None, :]).sum(-1, keepdim=True) * v
        return self.o_proj((y + merge_heads(bonus)) * g), {"x_prev": x[:, -1], "S": S}
