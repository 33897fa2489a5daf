"""The sliding LM: the mean −log p(x_i | x_{≠i}) over every position (a float64 loop), and a run that trains
a Transcormer on the masked-LM task; its own metric, sliding_lm_loss, equals a loop over every real position and
is in a run's history."""

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
    assert math.isfinite(result["final"]["sliding_lm_loss"])  # its own metric, beside the task's
    with pytest.raises(IncompatibleError, match="model.arch=transcormer"):
        build(tiny_cfg("task.name=mlm", "train.objective=sliding_lm"))


def test_its_metric_is_the_nll_of_every_real_position_by_a_loop(tiny_cfg):
    task, model = build(tiny_cfg(*SLM))
    model.eval()
    batch = task.train_batch(0, 2, 0)
    x = batch["target"]
    padding = torch.ones_like(x, dtype=torch.bool)
    padding[1, 25:] = False  # the second sequence has 25 real tokens
    with torch.no_grad():
        sums = model.objective.score(model, {**batch, "padding_mask": padding})
        total = 0.0
        for b, length in ((0, 32), (1, 25)):
            logits = model(x[b:b + 1], padding[b:b + 1])[0].double()
            total -= sum(float(torch.log_softmax(logits[t], 0)[x[b, t]]) for t in range(length))
    assert sums["sliding_lm_count"] == 57
    assert sums["sliding_lm_nll"] == pytest.approx(total, rel=1e-5)
    assert model.objective.finalize(sums)["sliding_lm_loss"] == pytest.approx(total / 57, rel=1e-5)
