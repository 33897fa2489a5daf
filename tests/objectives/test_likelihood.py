"""The causal and masked LM objectives: each is the mean −log p at the task's scored positions (checked
against a float64 loop), each is its task's default, and a wrong pairing is one clear error."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ComponentSpec
from trevo.errors import IncompatibleError, UnknownComponentError
from trevo.objectives.likelihood import build_objective
from trevo.train import build


def _loop_nll(logits: torch.Tensor, batch: dict) -> float:
    mask = batch.get("loss_mask", torch.ones_like(batch["target"], dtype=torch.bool))
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if mask[b, t]:
                row = logits[b, t].double()
                total -= float(row[batch["target"][b, t]] - torch.logsumexp(row, 0))
                count += 1
    return total / count


@pytest.mark.parametrize("task, name", [("byte_lm", "causal_lm"), ("mlm", "masked_lm")])
def test_the_likelihood_objectives_are_the_mean_nll_at_the_scored_positions(tiny_cfg, task, name):
    cfg = tiny_cfg(f"task.name={task}")
    task_obj, model = build(cfg)
    objective = build_objective(None, task_obj, model)
    assert type(objective).registry_entry.name == name  # the task's default
    batch = task_obj.train_batch(0, 2, 0)
    with torch.no_grad():
        loss = objective.loss(model, batch)
        assert loss.item() == pytest.approx(_loop_nll(model(batch["input"]), batch), rel=1e-5)
        assert loss.item() == pytest.approx(task_obj.loss(model(batch["input"]), batch).item(), rel=0, abs=0)


def test_a_wrong_objective_is_one_clear_error(tiny_cfg):
    task, model = build(tiny_cfg())
    with pytest.raises(IncompatibleError, match="objective 'masked_lm' trains a model with a mlm head; this task's "
                                                "head is 'lm'"):
        build_objective(ComponentSpec("masked_lm"), task, model)
    with pytest.raises(UnknownComponentError, match="unknown objective 'causal'.*causal_lm"):
        build(tiny_cfg("train.objective=causal"))
