"""XLNet's permutation language modelling (Yang et al. 2019, arXiv:1906.08237, §2.2–2.3):

    max_θ E_{z ~ Z_T} [ Σ_{t = c+1}^{T} log p_θ(x_{z_t} | x_{z<t}) ],

a factorisation order z drawn uniformly from the permutations of the T positions (one per sequence),
the query stream of a two-stream model (``model.arch=xlnet``) predicting each x_{z_t} from the tokens
before it in z. Partial prediction (§2.3): only the last T/K tokens of z are predicted, K = 6 (the
paper's pre-training setting). The sequence is the task's original (``batch["target"]`` of a
masked-LM task: the masking itself is not used).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.errors import IncompatibleError
from trevo.models.xlnet import XLNET
from trevo.objectives.likelihood import Objective
from trevo.ops.two_stream import order_ranks
from trevo.registry import register
from trevo.tasks.base import Batch, Task, cross_entropy


@register("objective", "permutation_lm", paper=XLNET, category="Pretrain", family="permutation_lm")
class PermutationLM(Objective):
    """XLNet's permutation LM (§2.2): −mean log p(x_{z_t} | x_{z<t}) over the last T/K positions of a random
    factorisation order z, read from a two-stream model's query stream."""

    heads = ("mlm",)

    def __init__(self, task: Task, model: nn.Module, *, partial_k: float = 6.0) -> None:
        super().__init__(task, model)
        if not callable(getattr(model, "two_stream", None)):
            raise IncompatibleError("objective 'permutation_lm' needs a two-stream model: set model.arch=xlnet")
        if partial_k < 1:
            raise IncompatibleError(f"objective 'permutation_lm': partial_k (K, 1/K of the tokens predicted) must "
                                    f"be ≥ 1, got {partial_k}")
        self.partial_k = partial_k

    def draw_orders(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        """One uniformly random factorisation order per sequence ``[B, T]`` (the global torch RNG)."""
        return torch.rand(batch, length).argsort(-1).to(device)

    def _predicted(self, model: nn.Module, batch: Batch, order: torch.Tensor) -> tuple[torch.Tensor, Batch]:
        """The query stream's logits for ``order`` and the scored batch: the last ⌈T/K⌉ positions of each order."""
        tokens = batch["target"]
        n_predicted = max(1, math.ceil(tokens.shape[1] / self.partial_k))
        predicted = order_ranks(order) >= tokens.shape[1] - n_predicted
        if "padding_mask" in batch:
            predicted = predicted & batch["padding_mask"].bool()
        return model.two_stream(tokens, order, batch.get("padding_mask")), {"target": tokens, "loss_mask": predicted}

    def loss(self, model: nn.Module, batch: Batch, order: torch.Tensor | None = None) -> torch.Tensor:
        tokens = batch["target"]
        order = self.draw_orders(*tokens.shape, tokens.device) if order is None else order
        return cross_entropy(*self._predicted(model, batch, order))

    def score(self, model: nn.Module, batch: Batch, order: torch.Tensor | None = None) -> dict[str, float]:
        """Evaluation sums of the permutation LM itself (its NLL over the predicted positions), over orders drawn
        from a fixed seed (evaluation is deterministic and leaves the training RNG untouched) unless given."""
        if order is None:
            with torch.random.fork_rng(devices=[]):  # the orders are drawn on the CPU
                torch.manual_seed(0)
                order = self.draw_orders(*batch["target"].shape, batch["target"].device)
        logits, scored = self._predicted(model, batch, order)
        return {"permutation_lm_nll": float(cross_entropy(logits, scored, reduction="sum")),
                "permutation_lm_count": float(scored["loss_mask"].sum())}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        """permutation_lm_loss: −mean log p(x_{z_t} | x_{z<t}) over the predicted positions (nats)."""
        return {"permutation_lm_loss": totals["permutation_lm_nll"] / max(totals["permutation_lm_count"], 1)}
