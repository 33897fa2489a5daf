from __future__ import annotations

import pytest

from trevo.config import RunConfig

TINY = ["model.d_model=32", "model.n_layers=2", "task.seq_len=32", "train.batch_size=4", "train.steps=6",
        "train.eval_every=3", "train.checkpoint_every=3", "train.eval_batches=2", "train.warmup_steps=2"]


@pytest.fixture
def tiny_cfg():
    """A run that trains in a fraction of a second."""
    return lambda *more: RunConfig().override([*TINY, *more])
