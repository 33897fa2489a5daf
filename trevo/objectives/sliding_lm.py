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
from trevo.tasks.base import Batch, Task, cross_entropy


@register("objective", "sliding_lm", paper=TRANSCORMER, category="Pretrain", family="sliding_lm")
class SlidingLM(Objective):
    """Transcormer's sliding LM: −mean log p(x_i | x_{≠i}) over every real position, in one pass."""

    heads = ("mlm",)

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__(task, model)
        if not callable(getattr(model, "streams", None)) or type(model).registry_entry.name != "transcormer":
            raise IncompatibleError("objective 'sliding_lm' needs the triple-stream model: set model.arch=transcormer")

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        tokens = batch["target"]
        scored = {"target": tokens}
        if "padding_mask" in batch:
            scored["loss_mask"] = batch["padding_mask"].bool()
        return cross_entropy(model(tokens, batch.get("padding_mask")), scored)
