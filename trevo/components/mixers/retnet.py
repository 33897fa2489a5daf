"""RetNet multi-scale retention (Sun et al., "Retentive Network: A Successor to Transformer for Large
Language Models", arXiv:2307.08621), on the linear-recurrence engine."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.rotary import apply_rotary
from trevo.errors import IncompatibleError
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


def retnet_decays(n_heads: int) -> torch.Tensor:
    """The per-head decays γ_h = 1 − 2^(−5−h) (§2.2, "multi-scale retention")."""
    return 1 - 2.0 ** (-5 - torch.arange(n_heads, dtype=torch.float64))


@register("mixer", "retnet",
          paper=Paper("Retentive Network: A Successor to Transformer for Large Language Models", "2307.08621", 2023),
          category="Rnn", family="retnet", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T²·d) quadratic, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class Retention(TokenMixer):
    """Multi-scale retention (eq. 5-8): Retention(X) = (Q Kᵀ ⊙ D) V with D_nm = γ^(n−m) for n >= m,
    Q = (X W_Q) ⊙ Θ, K = (X W_K) ⊙ Θ̄ (rotary phases e^{inθ}, ``trevo.components.rotary``), one γ per
    head (γ_h = 1 − 2^(−5−h)); Y = GroupNorm_h(heads); MSR(X) = (swish(X W_G) ⊙ Y) W_O. Recurrently
    S_n = γ S_{n−1} + K_nᵀ V_n, o_n = Q_n S_n. Keys are scaled by d_k^(−1/2) as in the paper's implementation."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        if self.head_dim % 2:
            raise IncompatibleError(f"RetNet needs an even head dimension for its rotary phases; "
                                    f"d_model/n_heads = {self.head_dim}")
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.g_proj = nn.Linear(d_model, d_model, bias=False)
        self.group_norm = nn.GroupNorm(n_heads, d_model)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype),
                "pos": torch.zeros((), device=device, dtype=torch.long)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, _ = x.shape
        q = apply_rotary(split_heads(self.q_proj(x), self.n_heads), state["pos"])
        k = apply_rotary(split_heads(self.k_proj(x), self.n_heads), state["pos"]) / math.sqrt(self.head_dim)
        v = split_heads(self.v_proj(x), self.n_heads)
        # Fixed decays, computed in float64 (not a buffer rounded to float32 at build time).
        log_gamma = retnet_decays(self.n_heads).log().to(device=x.device, dtype=x.dtype)
        log_decay = log_gamma[None, :, None].expand(B, self.n_heads, T)
        o, S = linear_recurrence(q, k, v, log_decay=log_decay, initial_state=state["S"],
                                 form=self.form_for(T), chunk_size=self.chunk_size_for(T))
        y = self.group_norm(merge_heads(o).reshape(B * T, -1)).reshape(B, T, -1)
        return self.out_proj(F.silu(self.g_proj(x)) * y), {"S": S, "pos": state["pos"] + T}
