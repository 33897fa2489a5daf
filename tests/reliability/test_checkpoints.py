"""Checkpoints are verified on load, never hold non-finite state, leave no stale temporary files, and
carry the run's time across a resume."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.helpers import TINY, sets, train_until_killed
from trevo.checkpoint import (
    CHECKPOINT,
    TEMP_PREFIX,
    CheckpointError,
    NonFiniteStateError,
    clean_stale_temps,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from trevo.cli import main
from trevo.train import TrainingDiverged, build, make_optimizer, train


def _flip(path, tensor: str, n: int = 1) -> None:
    """Flip ``n`` bytes inside ``tensor``'s data (located from the safetensors header)."""
    raw = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", raw[:8])[0]
    start, _ = json.loads(raw[8:8 + header_len])[tensor]["data_offsets"]
    for i in range(n):
        raw[8 + header_len + start + i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_is_caught_on_load(tmp_path, tiny_cfg, capsys):
    train(tiny_cfg(), tmp_path, progress=False)
    _flip(tmp_path / CHECKPOINT, "model.blocks.1.channel.down.weight")
    _, model = build(tiny_cfg())
    with pytest.raises(CheckpointError, match=r"corrupt: 1 tensors fail their SHA-256 checksum "
                                              r"\(model.blocks.1.channel.down.weight\)"):
        load_checkpoint(tmp_path / CHECKPOINT, model)
    assert main(["generate", "--run", str(tmp_path), "--tokens", "4"]) == 2
    assert "fail their SHA-256 checksum" in capsys.readouterr().err
    assert main(["train", "--quiet", "--resume", "--out", str(tmp_path), *sets(*TINY)]) == 2


def test_truncated_and_foreign_checkpoints(tmp_path, tiny_cfg):
    train(tiny_cfg(), tmp_path, progress=False)
    path = tmp_path / CHECKPOINT
    _, model = build(tiny_cfg())
    tensors = load_file(path)
    save_file(tensors, tmp_path / "foreign.safetensors", metadata={"trevo": json.dumps({"step": 3})})
    with pytest.raises(CheckpointError, match="lacks the metadata format, config_hash, history, losses"):
        load_checkpoint(tmp_path / "foreign.safetensors", model)
    save_file(tensors, tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "bare.safetensors", model)
    for keep in (0.5, 0.99):
        data = path.read_bytes()
        (tmp_path / "cut.safetensors").write_bytes(data[:int(len(data) * keep)])
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(tmp_path / "cut.safetensors", model)


def test_non_finite_weights_are_never_checkpointed(tmp_path, tiny_cfg):
    cfg = tiny_cfg("train.lr=1e6", "train.checkpoint_every=1", "train.grad_clip=0")
    with pytest.raises(TrainingDiverged, match="made the model non-finite .*last good checkpoint is kept") as e:
        train(cfg, tmp_path, progress=False)
    tensors, meta = read_checkpoint(tmp_path / CHECKPOINT)
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    assert f"step {meta['step']}" in str(e.value)  # the update after the kept checkpoint's step
    with pytest.raises(TrainingDiverged):  # resuming replays the same update, and keeps the same checkpoint
        train(cfg, tmp_path, resume=True, progress=False)
    assert read_checkpoint(tmp_path / CHECKPOINT)[1]["step"] == meta["step"]


def test_save_refuses_nan_state(tmp_path, tiny_cfg):
    _, model = build(tiny_cfg())
    optimizer = make_optimizer(model, tiny_cfg().train)
    with torch.no_grad():
        next(model.parameters())[0] = float("inf")
    with pytest.raises(NonFiniteStateError):
        save_checkpoint(tmp_path / CHECKPOINT, model, optimizer, {"step": 0})
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_cleaned(tmp_path, tiny_cfg):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{TEMP_PREFIX}{int(dead.stdout)}-0000-{CHECKPOINT}"
    live = tmp_path / f"{TEMP_PREFIX}{os.getppid()}-0000-{CHECKPOINT}"  # a writer that still runs
    other = tmp_path / ".checkpoint.safetensors.x"  # not trevo's
    for p in (stale, live, other):
        p.write_bytes(b"\0" * 100)
    assert clean_stale_temps(tmp_path) == [stale]
    train(tiny_cfg(), tmp_path, progress=False)
    assert not stale.exists() and live.exists() and other.exists()


def test_throughput_and_wall_time_survive_a_resume(tmp_path, tiny_cfg, monkeypatch):
    cfg = tiny_cfg()
    straight = train(cfg, tmp_path / "a", progress=False)
    assert straight["tokens_per_s"] == pytest.approx(straight["tokens"] / straight["train_s"])
    assert 0 < straight["train_s"] < straight["wall_s"]
    # Killed after training, before the result was written: the result comes from the checkpoint.
    (tmp_path / "a" / "result.json").unlink()
    again = train(cfg, tmp_path / "a", resume=True, progress=False)
    assert again["train_s"] == straight["train_s"] and again["tokens_per_s"] == straight["tokens_per_s"]
    final_meta = read_checkpoint(tmp_path / "a" / CHECKPOINT)[1]
    assert 0 < final_meta["wall_s"] <= again["wall_s"]  # the time until the last checkpoint, and the resume's
    # Killed part-way: the resumed result adds the first session's training time.
    from trevo.tasks.byte_lm import ByteLM

    train_until_killed(cfg, tmp_path / "b", ByteLM, 4, monkeypatch)
    with safe_open(str(tmp_path / "b" / CHECKPOINT), framework="pt") as f:
        first = json.loads(f.metadata()["trevo"])
    assert first["step"] == 3 and first["train_s"] > 0
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed["train_s"] > first["train_s"] and resumed["wall_s"] > first["wall_s"]
    assert resumed["tokens_per_s"] == pytest.approx(resumed["tokens"] / resumed["train_s"])
