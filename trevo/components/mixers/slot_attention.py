"""Slot Attention (Locatello et al. 2020): slots compete for the inputs, iteratively; tokens read them back."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register


@register("mixer", "slot_attention", paper=Paper("Object-Centric Learning with Slot Attention", "2006.15055", 2020),
          category="Others", family="slot_attention", causal=False, bidirectional=True,
          time="O(iters·T·K·d)", memory="O(T·K)", test_options={"n_slots": 3, "n_iter": 2})
class SlotAttention(TokenMixer):
    """Slot Attention (Locatello et al. 2020, Algorithm 1): K = ``n_slots`` slots attend the (layer-normed)
    inputs with a softmax over the slots, so the slots compete for each input; each slot takes the
    weighted mean of the values (attention renormalised over the inputs), then a GRU and a residual MLP
    update it, for ``n_iter`` iterations. As a token mixer each token reads the final slots back through
    its final assignment, y_i = W_o Σ_s attn_is slot_s (the per-position slot mixture of the paper's
    decoder). The initial slots are learned vectors, not samples of N(μ, σ) (trevo's deterministic
    choice). Permutation-equivariant over tokens; bidirectional only; padded tokens are assigned nothing."""

    def __init__(self, d_model: int, *, causal: bool = False, n_slots: int = 8, n_iter: int = 3,
                 expand: float = 2.0, eps: float = 1e-8) -> None:
        super().__init__(d_model, causal=causal)
        if n_slots < 1 or n_iter < 1:
            raise IncompatibleError(f"slot_attention needs n_slots >= 1 and n_iter >= 1, got {n_slots}, {n_iter}")
        self.n_iter, self.eps = n_iter, eps
        self.slots_init = nn.Parameter(torch.randn(n_slots, d_model) / d_model ** 0.5)
        self.norm_inputs, self.norm_slots, self.norm_mlp = (nn.LayerNorm(d_model) for _ in range(3))
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.gru = nn.GRUCell(d_model, d_model)
        hidden = int(expand * d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, d_model))
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def assignment(self, k: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """softmax over the slots of k_i·q(LN(slot))/√d: ``[B, T, K]``, each row summing to 1."""
        q = self.q_proj(self.norm_slots(slots))
        return torch.softmax(k @ q.transpose(1, 2) / self.d_model ** 0.5, dim=-1)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        b = x.shape[0]
        k, v = self.kv_proj(self.norm_inputs(x)).chunk(2, dim=-1)
        real = torch.ones_like(x[..., 0]) if padding_mask is None else padding_mask.to(x.dtype)
        slots = self.slots_init.to(x.dtype).expand(b, -1, -1)
        for _ in range(self.n_iter):
            attn = (self.assignment(k, slots) + self.eps) * real[..., None]
            weights = attn / attn.sum(dim=1, keepdim=True)  # a weighted mean over the inputs
            updates = weights.transpose(1, 2) @ v  # [B, K, d]
            slots = self.gru(updates.flatten(0, 1), slots.flatten(0, 1)).view_as(updates)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return self.out_proj(self.assignment(k, slots) @ slots)
