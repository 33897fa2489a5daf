"""PaFi and HiWi (Liao, Meng, Monz 2023, "Parameter-Efficient Fine-Tuning without Introducing New
Latency", arXiv:2305.16742): two ways to fine-tune that leave the model's architecture, and so its
inference cost, exactly as it was.

- PaFi: sparse fine-tuning on a task-agnostic mask. The mask depends only on the pre-trained weights: the
  fraction ``density`` of the entries of smallest magnitude of the weight matrices (the least important
  by magnitude), so every task shares it; only those entries change.
- HiWi: an adapter applied to the pre-trained parameters instead of the hidden states,
  W' = W + f(W W_down) W_up (f = ReLU, W_up zero-initialised, so W' = W at the start). After fine-tuning
  W' is computed once (``merge``) and the adapter is dropped: the merged model has the original modules
  and shapes, with no added latency.

Our choices where the stored abstract does not settle them (the paper's exact defaults were not checked):
PaFi masks every weight matrix of the blocks (not the embeddings, the head or the norms); HiWi adapts the
weight matrices of the channel mixers (FFNs), ``low_rank_dim`` = 4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from trevo.errors import TrevoError
from trevo.peft.base import PEFT
from trevo.registry import Paper, register

NO_LATENCY = Paper("Parameter-Efficient Fine-Tuning without Introducing New Latency", "2305.16742", 2023)


def block_matrices(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight matrices of the model's blocks (``blocks.*``, dim ≥ 2), by name."""
    return [(name, p) for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() >= 2]


def smallest_magnitude_masks(weights: list[torch.Tensor], density: float) -> list[torch.Tensor]:
    """Boolean masks of the ``density`` fraction of all entries with the smallest |w| (one threshold over all
    of them, ties broken by position)."""
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = max(1, round(density * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[flat.argsort(stable=True)[:k]] = True
    return [m.view_as(w) for m, w in zip(chosen.split([w.numel() for w in weights]), weights, strict=True)]


@register("peft", "pafi", paper=NO_LATENCY, category="Peft", family="pafi_hiwi")
class PaFi(PEFT):
    """PaFi (Liao et al. 2023): only the ``density`` fraction of smallest-magnitude entries of the
    blocks' weight matrices train; the mask depends on the pre-trained weights alone (shared by all tasks)."""

    def __init__(self, model: nn.Module, *, density: float = 0.005) -> None:
        super().__init__(model)
        if not 0 < density <= 1:
            raise TrevoError(f"pafi: density (the fraction of entries fine-tuned) must lie in (0, 1], got {density}")
        named = block_matrices(model)
        if not named:
            raise TrevoError("pafi: the model has no block weight matrices (blocks.*) to fine-tune")
        self.names = [n for n, _ in named]
        self.weights = [p for _, p in named]
        self.masks = smallest_magnitude_masks(self.weights, density)
        self.frozen = [w.detach().clone() for w in self.weights]  # the values outside the mask, kept exactly
        self.hooks = [w.register_hook(lambda grad, mask=mask: grad * mask)
                      for w, mask in zip(self.weights, self.masks, strict=True)]

    def parameters(self) -> list[nn.Parameter]:
        return self.weights

    def trainable_count(self) -> int:
        return int(sum(m.sum() for m in self.masks))

    @torch.no_grad()
    def after_step(self) -> None:
        for w, mask, frozen in zip(self.weights, self.masks, self.frozen, strict=True):
            w.copy_(torch.where(mask, w, frozen))

    def merge(self) -> nn.Module:
        """The model itself (its gradient masks removed): PaFi edits entries in place, and adds nothing."""
        for hook in self.hooks:
            hook.remove()
        return self.model


class WeightAdapter(nn.Module):
    """HiWi's parametrisation of a weight W ``[out, in]``: W + ReLU(W W_down) W_up, W_up zero-initialised."""

    def __init__(self, in_features: int, low_rank_dim: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(in_features, low_rank_dim) * in_features ** -0.5)
        self.up = nn.Parameter(torch.zeros(low_rank_dim, in_features))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + torch.relu(weight @ self.down) @ self.up


@register("peft", "hiwi", paper=NO_LATENCY, category="Peft", family="pafi_hiwi")
class HiWi(PEFT):
    """HiWi (Liao et al. 2023): an adapter on the pre-trained weights of the FFNs, W' = W + f(W W_down) W_up;
    ``merge()`` folds it into W, leaving the original architecture (no added latency)."""

    def __init__(self, model: nn.Module, *, low_rank_dim: int = 4) -> None:
        super().__init__(model)
        if low_rank_dim < 1:
            raise TrevoError(f"hiwi: low_rank_dim must be ≥ 1, got {low_rank_dim}")
        self.linears = [m for block in getattr(model, "blocks", []) if block.channel is not None
                        for m in block.channel.modules() if isinstance(m, nn.Linear)]
        if not self.linears:
            raise TrevoError("hiwi adapts the weights of the channel mixers (FFNs); this model has none (channel none)")
        self.adapters = []
        for linear in self.linears:
            adapter = WeightAdapter(linear.in_features, low_rank_dim).to(linear.weight)
            parametrize.register_parametrization(linear, "weight", adapter)
            self.adapters.append(adapter)

    def parameters(self) -> list[nn.Parameter]:
        return [p for a in self.adapters for p in a.parameters()]

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """Compute W' once and drop the adapters: the model with its original modules, parameters and shapes."""
        for linear in self.linears:
            if parametrize.is_parametrized(linear, "weight"):
                parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
        return self.model
