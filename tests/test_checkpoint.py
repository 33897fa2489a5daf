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


def test_checkpoint_holds_every_random_state_and_refuses_missing_cuda_devices(tmp_path, tiny_cfg):
    import torch

    from trevo.checkpoint import read_checkpoint, restore_rng

    cfg = tiny_cfg("model.dropout=0.1")
    train(cfg, tmp_path, progress=False)
    tensors, _ = read_checkpoint(tmp_path / CHECKPOINT)
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    # the CPU generator's state after the last step, as this process left it; no CUDA state on a CPU run
    assert set(rng) == {"rng.torch"} and torch.equal(rng["rng.torch"], torch.get_rng_state())
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    written_on_more_gpus = {**rng, f"rng.cuda.{devices}": torch.zeros(16, dtype=torch.uint8)}
    with pytest.raises(CheckpointError, match=f"random state of {devices + 1} CUDA device.*this machine has {devices}"):
        restore_rng(written_on_more_gpus, tmp_path / CHECKPOINT)
