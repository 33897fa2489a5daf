"""Mixture of experts as a channel mixer: each token's FFN is its top-k of n experts, chosen by a learned
router, with the Switch Transformer's load-balancing loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import ChannelMixer
from trevo.components.residuals import output_projection
from trevo.errors import IncompatibleError
from trevo.registry import Paper, create, register


def load_balancing_loss(probabilities: torch.Tensor, chosen: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch's auxiliary loss N · Σ_i f_i · P_i (Fedus et al. 2021, eq. 4-6): f_i the fraction of the
    (token, choice) assignments that go to expert i, P_i the mean router probability of expert i; 1 when
    the routing is uniform, n when every token goes to one expert. ``probabilities`` ``[N, E]``,
    ``chosen`` ``[N, k]``."""
    fraction = F.one_hot(chosen, n_experts).to(probabilities.dtype).mean(dim=(0, 1))
    return n_experts * (fraction * probabilities.mean(dim=0)).sum()


@register("channel", "mixture_of_experts", category="FFN", family="mixture_of_experts",
          paper=Paper("Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
                      "2101.03961", 2021), time="O(T·k·d²)")
class MixtureOfExperts(ChannelMixer):
    """Top-k mixture of experts: router probabilities p = softmax(x W_r) over ``n_experts``; a token's
    output is Σ_{e ∈ top-k(p)} g_e · E_e(x) with g_e = p_e (Switch Transformer eq. 1-2; ``topk=1`` is
    Switch, ``topk=2`` the top-2 routing it compares with; ``normalize`` rescales the chosen gates to sum
    to 1, as GShard and Mixtral do). Each expert is a channel mixer (``expert``, with ``expand``).

    ``auxiliary_loss()`` is ``balance_weight`` × the load-balancing loss of the last training forward
    (eq. 4; α = 0.01 as in the paper), which training adds to the task loss. Routing is dropless (no
    expert capacity, so no token is dropped and a token's output never depends on the others)."""

    def __init__(self, d_model: int, n_experts: int = 4, topk: int = 1, expert: str = "mlp", expand: float = 4.0,
                 normalize: bool = False, balance_weight: float = 0.01) -> None:
        super().__init__(d_model)
        if not 1 <= topk <= n_experts:
            raise IncompatibleError(f"mixture_of_experts routes each token to topk of n_experts experts: need "
                                    f"1 <= topk <= n_experts, got topk={topk}, n_experts={n_experts}")
        self.n_experts, self.topk, self.normalize, self.balance_weight = n_experts, topk, normalize, balance_weight
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(create("channel", expert, d_model=d_model, expand=expand)
                                     for _ in range(n_experts))
        if type(self.experts[0]).prefill is not ChannelMixer.prefill:
            raise IncompatibleError(f"mixture_of_experts routes tokens one by one, so its experts must be "
                                    f"position-wise; channel {expert!r} carries a state from token to token: use mlp "
                                    f"or a GLU")
        self.balance: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities ``[N, E]``, the chosen experts ``[N, k]`` and their gates ``[N, k]`` of the tokens
        ``x`` ``[N, d_model]``."""
        probabilities = F.softmax(self.router(x), dim=-1)
        gates, chosen = probabilities.topk(self.topk, dim=-1)
        if self.normalize:
            gates = gates / gates.sum(dim=-1, keepdim=True)
        return probabilities, chosen, gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, self.d_model)
        probabilities, chosen, gates = self.route(tokens)
        if self.training:
            self.balance = load_balancing_loss(probabilities, chosen, self.n_experts)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, choice = (chosen == e).nonzero(as_tuple=True)  # every expert runs, on its tokens (maybe none)
            out = out.index_add(0, token, gates[token, choice, None] * expert(tokens[token]))
        return out.reshape(x.shape)

    def output_projections(self) -> list[nn.Linear]:
        """Each expert's output projection: residual placements that rescale outputs scale them all."""
        return [p for p in (output_projection(e, channel=True) for e in self.experts) if p is not None]

    def auxiliary_loss(self) -> torch.Tensor:
        if self.balance is None:
            return self.router.weight.new_zeros(())
        return self.balance_weight * self.balance
