"""Transcormer's sliding language modelling (Song et al. 2022, arXiv:2205.12986):

    L = −(1/T) Σ_i log p(x_i | x_{<i}, x_{>i}),

every position predicted in one pass from the query stream of a triple-stream model
(``model.arch=transcormer``), which sees the forward stream before i and the backward stream after it.
The sequence is the task's original (``batch["target"]`` of a masked-LM task: its masking is not used).
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.errors import IncompatibleError
from trevo.models.transcormer import TRANSCORMER
from trevo.objectives.likelihood import Objective
from trevo.registry import register
from trevo.tasks.base import Batch, Task, cross_entropy, scored_mask


@register("objective", "sliding_lm", paper=TRANSCORMER, category="Pretrain", family="sliding_lm")
class SlidingLM(Objective):
    """Transcormer's sliding LM: −mean log p(x_i | x_{≠i}) over every real position, in one pass."""

    heads = ("mlm",)

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__(task, model)
        if not callable(getattr(model, "streams", None)) or type(model).registry_entry.name != "transcormer":
            raise IncompatibleError("objective 'sliding_lm' needs the triple-stream model: set model.arch=transcormer")

    def _scored(self, batch: Batch) -> Batch:
        scored = {"target": batch["target"]}
        if "padding_mask" in batch:
            scored["loss_mask"] = batch["padding_mask"].bool()
        return scored

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return cross_entropy(model(batch["target"], batch.get("padding_mask")), self._scored(batch))

    def score(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        """Evaluation sums of the sliding LM itself: its NLL over every real position, and their count."""
        scored = self._scored(batch)
        nll = cross_entropy(model(batch["target"], batch.get("padding_mask")), scored, reduction="sum")
        return {"sliding_lm_nll": float(nll), "sliding_lm_count": float(scored_mask(scored).sum())}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        """sliding_lm_loss: −mean log p(x_i | x_{<i}, x_{>i}) over the real positions (nats)."""
        return {"sliding_lm_loss": totals["sliding_lm_nll"] / max(totals["sliding_lm_count"], 1)}
