"""The two likelihood objectives every language-model task started with: causal LM (next token) and
masked LM (the masked tokens), each the mean cross-entropy over the batch's scored positions (the
task's ``loss``, ``trevo.tasks.base.cross_entropy``, so that a task that redefines it keeps its own).

An objective is an ``nn.Module`` built by ``build_objective(spec, task, model)`` with
``loss(model, batch) -> scalar``. It never holds the model (the model may hold it: an objective with
parameters, ELECTRA's generator, is attached as ``model.objective`` so that its weights train,
checkpoint and resume with the model's).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trevo.errors import IncompatibleError
from trevo.registry import Paper, create, get, register
from trevo.tasks.base import Batch, Task
from trevo.tasks.mlm import BERT


class Objective(nn.Module):
    """Base class: ``loss(model, batch)`` is the scalar training minimises. ``heads`` lists the task heads
    (``TaskInfo.head``) it can train; a subclass with other needs checks them in ``__init__``."""

    heads: tuple[str, ...] = ()

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__()
        name = type(self).registry_entry.name
        if self.heads and task.info.head not in self.heads:
            raise IncompatibleError(f"objective {name!r} trains a model with a {' or '.join(self.heads)} head; "
                                    f"this task's head is {task.info.head!r} (choose another task or "
                                    f"train.objective)")
        self.task = task

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


def model_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The model's logits on ``batch`` (``trevo.train.logits_of``: Perceiver IO decodes the scored positions)."""
    if getattr(model, "decodes_subset", False) and "loss_mask" in batch:
        return model(batch["input"], batch.get("padding_mask"), outputs=batch["loss_mask"].bool())
    return model(batch["input"], batch.get("padding_mask"))


@register("objective", "causal_lm", category="Pretrain", family="likelihood",
          paper=Paper("Language Models are Unsupervised Multitask Learners (causal LM objective)", "", 2019))
class CausalLM(Objective):
    """−(1/N) Σ_t log p(x_{t+1} | x_{≤t}): next-token cross-entropy at the scored positions."""

    heads = ("lm",)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.task.loss(model_logits(model, batch), batch)  # the task's cross-entropy (Task.loss)


@register("objective", "masked_lm", paper=BERT, category="Pretrain", family="likelihood")
class MaskedLM(Objective):
    """BERT's masked LM (Devlin et al. 2019, §3.1): −(1/|M|) Σ_{t∈M} log p(x_t | x̃), cross-entropy at the
    masked positions M only (the task's ``loss_mask``; the corruption is the task's)."""

    heads = ("mlm",)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.task.loss(model_logits(model, batch), batch)  # the task's cross-entropy (Task.loss)


def build_objective(spec: Any, task: Task, model: nn.Module) -> Objective | None:
    """The objective named by ``spec`` (a ``ComponentSpec``; None: the task's default, ``task.objective``),
    or None where neither names one (the run then minimises ``task.loss``)."""
    name, options = (spec.name, dict(spec.options)) if spec is not None else (getattr(task, "objective", None), {})
    if name is None:
        return None
    clash = sorted(set(options) & {"task", "model"})
    if clash:
        raise IncompatibleError(f"objective {name!r}: {', '.join(clash)} is given by the run, not by "
                                f"train.objective's options")
    get("objective", name)  # an unknown name: one error listing the valid ones
    return create("objective", name, task=task, model=model, **options)
