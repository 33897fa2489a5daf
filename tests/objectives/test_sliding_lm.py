"""The sliding LM: the mean −log p(x_i | x_{≠i}) over every position (a float64 loop), and a run that trains
a Transcormer on the masked-LM task."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.config import ComponentSpec
from trevo.errors import IncompatibleError
from trevo.objectives.likelihood import build_objective
from trevo.train import build, train

SLM = ("task.name=mlm", "model.arch=transcormer", "model.d_model=16", "model.options.n_heads=2",
       "train.objective=sliding_lm")


def test_the_loss_is_the_mean_nll_of_every_position(tiny_cfg):
    task, model = build(tiny_cfg(*SLM))
    objective = build_objective(ComponentSpec("sliding_lm"), task, model)
    batch = task.train_batch(0, 2, 0)
    x = batch["target"]
    with torch.no_grad():
        loss = objective.loss(model, batch)
        logits = model(x).double()
    total = -sum(float(logits[b, t, x[b, t]] - torch.logsumexp(logits[b, t], 0))
                 for b in range(2) for t in range(x.shape[1]))
    assert loss.item() == pytest.approx(total / x.numel(), rel=1e-5)


def test_sliding_lm_trains_a_transcormer(tiny_cfg, tmp_path):
    result = train(tiny_cfg(*SLM, "train.steps=3", "train.eval_every=3", "train.checkpoint_every=3",
                            "train.eval_batches=1"), tmp_path, progress=False)
    assert len(result["losses"]) == 3 and all(math.isfinite(v) for v in result["losses"])
    with pytest.raises(IncompatibleError, match="model.arch=transcormer"):
        build(tiny_cfg("task.name=mlm", "train.objective=sliding_lm"))
