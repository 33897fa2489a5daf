"""RWKV-5 (Eagle) and RWKV-6 (Finch) time-mix: matrix-valued states on the linear-recurrence engine.

Peng et al., "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence"
(arXiv:2404.05892), §4 (Eagle) and §5 (Finch). The WKV operator is the engine's bonus form
(``trevo.ops.linear_recurrence``): wkv_t = diag(u) k_tᵀ v_t + Σ_{i<t} diag(Π_{j=i+1}^{t−1} w_j) k_iᵀ v_i,
o_t = r_t · wkv_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.token_shift import token_shift
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register

EAGLE_FINCH = Paper("Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence", "2404.05892", 2024)
TARGETS = ("r", "k", "v", "g", "w")


def _ratios(layer_idx: int, n_layers: int) -> tuple[float, float]:
    r0 = layer_idx / max(1, n_layers - 1)
    return r0, 1.0 - layer_idx / max(1, n_layers)


class _RWKVTimeMix(TokenMixer):
    """Shared by RWKV-5 and -6: receptance, key, value, gate from token-shifted inputs; WKV with a
    bonus u per channel; output W_o(SiLU(g) ⊙ GroupNorm_h(wkv))."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int | None = None,
                 layer_idx: int = 0, n_layers: int = 1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        r0, r1 = _ratios(layer_idx, n_layers)
        n = torch.arange(d_model, dtype=torch.float32) / max(1, d_model - 1)
        # The published initialisation: decays from fast to slow channels, slower in deeper layers.
        self.time_decay = nn.Parameter(-6 + 5 * n ** (0.7 + 1.3 * r0))
        zigzag = ((torch.arange(d_model) + 1) % 3 - 1).float() * 0.1
        self.time_first = nn.Parameter((r0 * (1 - n) + zigzag).view(n_heads, self.head_dim))
        self.mix_base = torch.arange(d_model, dtype=torch.float32) / d_model
        self.r1 = r1
        self.receptance, self.key, self.value, self.gate, self.output = (
            nn.Linear(d_model, d_model, bias=False) for _ in range(5))
        self.ln_x = nn.GroupNorm(n_heads, d_model, eps=64e-5)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"x_prev": torch.zeros(batch, self.d_model, device=device, dtype=dtype),
                "S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)}

    def mixed(self, x: torch.Tensor, xx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The token-shifted inputs of r, k, v, g and the log decay's input (w)."""
        raise NotImplementedError

    def log_decay(self, xw: torch.Tensor) -> torch.Tensor:
        """log w ``[B, T, d]`` (every entry < 0)."""
        raise NotImplementedError

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, _ = x.shape
        m = self.mixed(x, token_shift(x, state["x_prev"]))
        H = self.n_heads
        r, k, v = split_heads(self.receptance(m["r"]), H), split_heads(self.key(m["k"]), H), split_heads(
            self.value(m["v"]), H)
        log_w = split_heads(self.log_decay(m["w"]), H)
        o, S = linear_recurrence(r, k, v, log_decay=log_w, bonus=self.time_first, initial_state=state["S"],
                                 form=self.form_for(T), chunk_size=self.chunk_size_for(T))
        y = self.ln_x(merge_heads(o).reshape(B * T, -1)).reshape(B, T, -1)
        return self.output(F.silu(self.gate(m["g"])) * y), {"x_prev": x[:, -1], "S": S}


@register("mixer", "rwkv5", paper=EAGLE_FINCH, category="LongConv", family="rwkv6", causal=True,
          bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class RWKV5TimeMix(_RWKVTimeMix):
    """RWKV-5 "Eagle" time-mix (§4): □_t = W_□ lerp(x_t, x_{t−1}, μ_□) for □ ∈ {r, k, v, g} with
    lerp(a, b, μ) = a + (b − a) ⊙ μ; a static per-channel decay w = exp(−exp(ω)); bonus u;
    o_t = W_o(SiLU(g_t) ⊙ GroupNorm(r_t · wkv_t))."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int | None = None,
                 layer_idx: int = 0, n_layers: int = 1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, chunk_size=chunk_size, layer_idx=layer_idx,
                         n_layers=n_layers, form=form)
        self.mu = nn.ParameterDict({t: nn.Parameter(1 - self.mix_base ** self.r1) for t in ("r", "k", "v", "g")})

    def mixed(self, x, xx):
        out = {t: x + (xx - x) * mu for t, mu in self.mu.items()}
        out["w"] = x  # unused: the decay is static
        return out

    def log_decay(self, xw):
        return (-self.time_decay.exp()).to(xw.dtype).expand_as(xw)


@register("mixer", "rwkv6", paper=EAGLE_FINCH, category="LongConv", family="rwkv6", causal=True,
          bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class RWKV6TimeMix(_RWKVTimeMix):
    """RWKV-6 "Finch" time-mix (§5): data-dependent token shift
    ddlerp_□(a, b) = a + (b − a) ⊙ lora_□(a + (b − a) ⊙ μ_x), lora_□(x) = λ_□ + tanh(x A_□) B_□, for
    □ ∈ {r, k, v, g, w}; data-dependent decay w_t = exp(−exp(d_t)), d_t = lora_d(ddlerp_w(x_t, x_{t−1}))
    (LoRA ranks ``mix_low_rank_dim``, ``decay_low_rank_dim``); bonus u;
    o_t = W_o(SiLU(g_t) ⊙ GroupNorm(r_t · wkv_t))."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int | None = None,
                 mix_low_rank_dim: int = 32, decay_low_rank_dim: int = 64, layer_idx: int = 0, n_layers: int = 1,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, chunk_size=chunk_size, layer_idx=layer_idx,
                         n_layers=n_layers, form=form)
        mu = 1 - self.mix_base ** self.r1
        self.mu_x = nn.Parameter(mu.clone())
        self.mu = nn.Parameter(mu.repeat(len(TARGETS), 1))  # λ_□ of the five token-shift LoRAs
        self.mix_A = nn.Parameter(torch.empty(d_model, len(TARGETS) * mix_low_rank_dim).uniform_(-1e-2, 1e-2))
        self.mix_B = nn.Parameter(torch.empty(len(TARGETS), mix_low_rank_dim, d_model).uniform_(-1e-2, 1e-2))
        self.decay_A = nn.Parameter(torch.empty(d_model, decay_low_rank_dim).uniform_(-1e-2, 1e-2))
        self.decay_B = nn.Parameter(torch.empty(decay_low_rank_dim, d_model).uniform_(-1e-2, 1e-2))

    def mixed(self, x, xx):
        dx = xx - x
        base = x + dx * self.mu_x
        lora = torch.tanh(base @ self.mix_A).unflatten(-1, (len(TARGETS), -1))  # [B, T, 5, rank]
        lora = torch.einsum("btnr,nrd->btnd", lora, self.mix_B) + self.mu
        return {t: x + dx * lora[:, :, i] for i, t in enumerate(TARGETS)}

    def log_decay(self, xw):
        return -torch.exp(self.time_decay + torch.tanh(xw @ self.decay_A) @ self.decay_B)
