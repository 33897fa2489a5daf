"""ELECTRA's replaced-token detection: replacements only at the masked positions, labels 'replaced' exactly
where the sample differs from the original (a sample equal to it is original), the loss L_MLM + λ·L_Disc
against a float64 loop, no gradient from the discriminator into the generator, and a run that trains,
checkpoints and reloads its generator."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.api import load
from trevo.config import ComponentSpec
from trevo.objectives.electra import ELECTRA, generator_width
from trevo.objectives.likelihood import build_objective
from trevo.tasks.mlm import MASK
from trevo.train import build, train

MLM = ("task.name=mlm", "model.d_model=32", "model.mixer.n_heads=2")


def _electra(tiny_cfg):
    task, model = build(tiny_cfg(*MLM, "train.objective=electra"))
    return task, model, model.objective


def test_the_generator_is_a_quarter_of_the_width_and_is_attached_to_the_model(tiny_cfg):
    task, model, objective = _electra(tiny_cfg)
    assert isinstance(objective, ELECTRA) and objective.disc_weight == 50.0
    assert objective.generator.cfg.d_model == 8 == generator_width(32, 0.25, 2)
    assert any(k.startswith("objective.generator.") for k in model.state_dict())


def test_replacements_labels_and_loss_against_a_loop(tiny_cfg):
    torch.manual_seed(0)
    task, model, objective = _electra(tiny_cfg)
    batch = task.train_batch(0, 3, 0)
    terms = objective.terms(model, batch)
    corrupted, target, masked = terms["corrupted"], batch["target"], batch["loss_mask"]
    total, n = 0.0, 0
    for b in range(target.shape[0]):
        for t in range(target.shape[1]):
            if not masked[b, t]:
                assert corrupted[b, t] == target[b, t]
            assert corrupted[b, t] != MASK  # the generator never samples the mask token
            label = float(corrupted[b, t] != target[b, t])
            assert bool(terms["replaced"][b, t]) == bool(label)
            p = 1 / (1 + math.exp(-terms["scores"][b, t].item()))
            total -= label * math.log(p) + (1 - label) * math.log(1 - p)
            n += 1
    assert terms["disc_loss"].item() == pytest.approx(total / n, rel=1e-5)
    assert terms["replaced"].any()  # an untrained generator replaces most masked bytes
    torch.manual_seed(1)
    loss = objective.loss(model, batch)
    torch.manual_seed(1)
    again = objective.terms(model, batch)
    assert loss.item() == pytest.approx((again["gen_loss"] + 50 * again["disc_loss"]).item(), rel=1e-6)


def test_a_sample_equal_to_the_original_is_original(tiny_cfg, monkeypatch):
    task, model, objective = _electra(tiny_cfg)
    batch = task.train_batch(0, 2, 0)
    certain = torch.nn.functional.one_hot(batch["target"], task.info.vocab_size).float() * 1e4
    monkeypatch.setattr(objective.generator, "forward", lambda tokens, padding_mask=None: certain)
    terms = objective.terms(model, batch)
    assert torch.equal(terms["corrupted"], batch["target"]) and not terms["replaced"].any()


def test_no_gradient_reaches_the_generator_through_the_samples(tiny_cfg):
    task, model, objective = _electra(tiny_cfg)
    terms = objective.terms(model, task.train_batch(0, 2, 0))
    terms["disc_loss"].backward()
    assert all(p.grad is None for p in objective.generator.parameters())
    assert objective.detector.weight.grad.abs().sum() > 0 and model.embed.weight.grad.abs().sum() > 0


def test_electra_trains_checkpoints_and_reloads(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*MLM, "train.objective={name: electra, disc_weight: 10}", "train.steps=3",
                   "train.checkpoint_every=3", "train.eval_every=3", "train.eval_batches=1")
    result = train(cfg, tmp_path, progress=False)
    assert len(result["losses"]) == 3 and all(math.isfinite(x) for x in result["losses"])
    model, _, _ = load(tmp_path)
    assert model.objective.disc_weight == 10
    with pytest.raises(Exception, match="trains a model with a mlm head"):
        build_objective(ComponentSpec("electra"), *build(tiny_cfg()))


def test_evaluation_reports_the_detection_accuracy(tiny_cfg):
    from trevo.train import evaluate

    task, model, objective = _electra(tiny_cfg)
    state = torch.random.get_rng_state()
    metrics = evaluate(model, task, "val", 2, 1)
    assert torch.equal(torch.random.get_rng_state(), state)  # evaluation draws from its own seed
    batch = next(task.eval_batches("val", 2, 1))
    torch.manual_seed(0)
    terms = objective.terms(model.eval(), batch)
    expected = ((terms["scores"] > 0) == terms["replaced"]).float().mean().item()
    assert metrics["rtd_accuracy"] == pytest.approx(expected) and 0 <= metrics["rtd_accuracy"] <= 1
    assert metrics["generator_bpb"] == pytest.approx(terms["gen_loss"].item() / math.log(2), rel=1e-5)
    assert "bpb" in metrics  # the task's own metrics stay
