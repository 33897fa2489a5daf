"""The permutation LM: it predicts the last T/K positions of the order (K = 6), each from the query
stream, and a run trains an XLNet on the masked-LM task; its own metric, permutation_lm_loss, equals a loop
over the sequences one at a time, is deterministic, leaves the training RNG alone and is in a run's history."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.config import ComponentSpec
from trevo.errors import IncompatibleError
from trevo.objectives.likelihood import build_objective
from trevo.train import build, evaluate, train

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
    assert math.isfinite(result["final"]["permutation_lm_loss"])  # its own metric, beside the task's
    with pytest.raises(IncompatibleError, match="needs a two-stream model: set model.arch=xlnet"):
        build(tiny_cfg("task.name=mlm", "train.objective=permutation_lm"))


def test_its_metric_is_the_permutation_nll_by_a_loop_over_sequences(tiny_cfg):
    task, model = build(tiny_cfg(*XL))
    model.eval()
    batch = task.train_batch(0, 3, 0)
    x = batch["target"]
    order = torch.stack([torch.randperm(32, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    with torch.no_grad():
        sums = model.objective.score(model, batch, order)
        total, n = 0.0, 0
        for b in range(3):  # one sequence at a time: nothing leaks between the rows of a batch
            row_logits = model.two_stream(x[b:b + 1], order[b:b + 1])[0].double()
            for position in order[b, 32 - math.ceil(32 / 6):].tolist():
                total -= float(torch.log_softmax(row_logits[position], 0)[x[b, position]])
                n += 1
    assert sums["permutation_lm_count"] == n
    assert sums["permutation_lm_nll"] == pytest.approx(total, rel=1e-5)
    assert model.objective.finalize(sums)["permutation_lm_loss"] == pytest.approx(total / n, rel=1e-5)


def test_its_metric_is_deterministic_and_leaves_the_training_rng_alone(tiny_cfg):
    task, model = build(tiny_cfg(*XL))
    state = torch.get_rng_state()
    first = evaluate(model, task, "val", 2, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert evaluate(model, task, "val", 2, 1)["permutation_lm_loss"] == first["permutation_lm_loss"]
