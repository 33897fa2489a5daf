"""Checkpoints: a corrupt or missing file is a clear error."""

from __future__ import annotations

import pytest

from trevo.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from trevo.train import build, train


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_cfg):
    train(tiny_cfg(), tmp_path, progress=False)
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    _, model = build(tiny_cfg())
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.safetensors", model)
