"""Momentum Transformer (Nguyen et al., "Momentum Transformer: Closing the Performance Gap Between
Self-attention and Its Linearization", arXiv:2208.00579): heavy-ball momentum on the state of causal
linear attention, on the linear-recurrence engine."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "momentum_attention",
          paper=Paper("Momentum Transformer: Closing the Performance Gap Between Self-attention and Its "
                      "Linearization", "2208.00579", 2022),
          category="MHA/RightProduct", family="momentum_transformer", causal=True, bidirectional=False,
          recurrent=True, time="O(T·C·d + T·d²/H) chunk, O(T²·d) quadratic, O(T·d²/H) recurrent",
          memory="O(2·d²/H) state (sum and momentum)", test_options={"chunk_size": 4})
class MomentumAttention(FusedQKVHeads, TokenMixer):
    """Momentum linear attention (§3): causal linear attention read as gradient descent on its state,
    with heavy-ball momentum,

        p_t = β p_{t−1} + φ(k_t) v_tᵀ,   s_t = s_{t−1} + γ p_t,   o_t = φ(q_t)ᵀ s_t / φ(q_t)ᵀ z_t,

    z_t = Σ_{i<=t} φ(k_i) (the normaliser without momentum), φ = elu + 1, β = ``momentum``,
    γ = ``step_size``. Unrolled, s_t = γ/(1−β) (A_t − β P_t) with A_t = Σ φ(k_i) v_iᵀ (plain linear
    attention) and P_t = p_t = Σ β^{t−i} φ(k_i) v_iᵀ (a decayed one): both are runs of the
    linear-recurrence engine, done as one call over 2H heads (decay 1 for the first H, β for the
    others). State: S = A, z, and p = P. β = 0 is linear attention scaled by γ."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, momentum: float = 0.6,
                 step_size: float = 1.0, eps: float = 1e-6, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if not 0 <= momentum < 1:
            raise IncompatibleError(f"momentum_attention: momentum β must be in [0, 1), got {momentum}")
        self.momentum, self.step_size, self.eps, self.chunk_size = momentum, step_size, eps, chunk_size
        self.init_heads(d_model, n_heads)

    def init_state(self, batch: int, device, dtype) -> State:
        shape = (batch, self.n_heads, self.head_dim, self.head_dim)
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return {"S": zeros, "p": zeros.clone(), "z": torch.zeros(shape[:3], device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H, beta = self.n_heads, self.momentum
        q, k, v = (split_heads(t, H) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # z rides on the plain run's last column
        B, _, T, _ = q.shape
        log_decay = torch.zeros(B, 2 * H, T, dtype=q.dtype, device=q.device)
        if beta > 0:  # (with β = 0 the momentum run is multiplied by 0: its decay does not matter)
            log_decay[:, H:] = math.log(beta)
        S0 = torch.cat([torch.cat([state["S"], state["z"][..., None]], dim=-1),
                        torch.cat([state["p"], torch.zeros_like(state["z"][..., None])], dim=-1)], dim=1)
        o, S = linear_recurrence(torch.cat([q, q], 1), torch.cat([k, k], 1), torch.cat([v1, v1], 1),
                                 log_decay=log_decay, initial_state=S0, form=self.form_for(T),
                                 chunk_size=self.chunk_size)
        plain, decayed = o[:, :H], o[:, H:]
        num = self.step_size / (1 - beta) * (plain[..., :-1] - beta * decayed[..., :-1])
        y = num / (plain[..., -1:] + self.eps)
        return self.project_out(y), {"S": S[:, :H, :, :-1], "z": S[:, :H, :, -1], "p": S[:, H:, :, :-1]}
