"""The permutation LM: it predicts the last T/K positions of the order (K = 6), each from the query
stream, and a run trains an XLNet on the masked-LM task."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.config import ComponentSpec
from trevo.errors import IncompatibleError
from trevo.objectives.likelihood import build_objective
from trevo.train import build, train

XL = ("task.name=mlm", "model.arch=xlnet", "model.d_model=16", "model.options.n_heads=2",
      "train.objective=permutation_lm")


def test_the_loss_is_the_query_streams_nll_on_the_last_sixth_of_the_order(tiny_cfg):
    task, model = build(tiny_cfg(*XL))
    objective = build_objective(ComponentSpec("permutation_lm"), task, model)
    batch = task.train_batch(0, 2, 0)
    x = batch["target"]
    order = torch.stack([torch.randperm(32, generator=torch.Generator().manual_seed(s)) for s in range(2)])
    with torch.no_grad():
        loss = objective.loss(model, batch, order)
        logits = model.two_stream(x, order).double()
    total, n = 0.0, 0
    for b in range(2):
        for position in order[b, 32 - math.ceil(32 / 6):].tolist():  # the last ⌈T/K⌉ of the order
            row = logits[b, position]
            total -= float(row[x[b, position]] - torch.logsumexp(row, 0))
            n += 1
    assert n == 12 and loss.item() == pytest.approx(total / n, rel=1e-5)


def test_permutation_lm_trains_an_xlnet(tiny_cfg, tmp_path):
    result = train(tiny_cfg(*XL, "train.steps=3", "train.eval_every=3", "train.checkpoint_every=3",
                            "train.eval_batches=1"), tmp_path, progress=False)
    assert len(result["losses"]) == 3 and all(math.isfinite(v) for v in result["losses"])
    with pytest.raises(IncompatibleError, match="needs a two-stream model: set model.arch=xlnet"):
        build(tiny_cfg("task.name=mlm", "train.objective=permutation_lm"))
