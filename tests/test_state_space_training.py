"""Every state-space, long-convolution and spatial-shift mixer trains one step inside the backbone:
causal ones on the byte LM (through ``trevo.train.build``), 2-D ones on a pixel-classification
stand-in with an (8, 8) layout."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ComponentSpec, ModelConfig
from trevo.models import build_model
from trevo.tasks.base import TaskInfo, cross_entropy
from trevo.train import build, make_optimizer

CAUSAL = ["lru", "s4d", "s5", "mamba", "hyena", "h3"]
IMAGE = ["s2mlp", "s2mlpv2", "s4d"]


def _one_step(model, batch, loss_fn, cfg) -> tuple[float, float, float]:
    optimizer = make_optimizer(model, cfg)
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_fn(model(batch["input"], batch.get("padding_mask")), batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        after = loss_fn(model(batch["input"], batch.get("padding_mask")), batch)
    return loss.item(), after.item(), moved / len(before)


@pytest.mark.parametrize("mixer", CAUSAL)
def test_causal_mixer_trains_one_step_on_the_byte_lm(tiny_cfg, mixer):
    cfg = tiny_cfg(f"model.mixer.name={mixer}", "train.lr=1e-2", "task.seq_len=16")
    task, model = build(cfg)
    batch = task.train_batch(0, 4, 0)
    loss, after, moved = _one_step(model, batch, task.loss, cfg.train)
    assert torch.isfinite(torch.tensor([loss, after])).all() and after < loss and moved > 0.9


@pytest.mark.parametrize("mixer", IMAGE)
def test_image_mixer_trains_one_step_on_pixels(tiny_cfg, mixer):
    info = TaskInfo(vocab_size=17, head="classify", seq_len=64, n_classes=10, layout=(8, 8))
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, causal="false", mixer=ComponentSpec(mixer)), info)
    batch = {"input": torch.randint(0, 17, (8, 64)), "target": torch.randint(0, 10, (8,))}
    loss, after, moved = _one_step(model, batch, cross_entropy, tiny_cfg("train.lr=1e-2").train)
    assert torch.isfinite(torch.tensor([loss, after])).all() and after < loss and moved > 0.9
