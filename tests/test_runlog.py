"""What a run records: one steps.csv row per step (after a resume too) whose loss and lr are the run's,
TensorBoard events when asked, and a reproducibility stamp with the resolved component defaults."""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers import train_until_killed
from trevo.runlog import COLUMNS, STAMP, STEPS_CSV, resolved_defaults
from trevo.train import lr_at, train


def _rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    return [dict(zip(COLUMNS, map(float, r), strict=True)) for r in rows[1:]]


def test_steps_csv_has_one_row_per_step_with_the_runs_loss_and_lr(tmp_path, tiny_cfg, monkeypatch):
    from trevo.tasks.byte_lm import ByteLM

    cfg = tiny_cfg("train.steps=7")  # checkpoints at 3, 6, 7
    # killed at step 5: steps 4 and 5 are logged, then redone after the resume from step 3
    train_until_killed(cfg, tmp_path, ByteLM, 5, monkeypatch)
    assert [r["step"] for r in _rows(tmp_path / STEPS_CSV)] == [1, 2, 3, 4, 5]
    result = train(cfg, tmp_path, resume=True, progress=False)
    rows = _rows(tmp_path / STEPS_CSV)
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert [r["loss"] for r in rows] == pytest.approx(result["losses"], rel=1e-5)
    assert [r["lr"] for r in rows] == pytest.approx([lr_at(s, cfg.train) for s in range(7)], rel=1e-5)
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 and r["memory_mb"] > 0 for r in rows)


def test_the_stamp_records_versions_corpus_and_resolved_defaults(tmp_path, tiny_cfg):
    import platform

    import torch

    from trevo.tasks.corpus import load_corpus
    from trevo.tasks.tokenizer import corpus_fingerprint

    result = train(tiny_cfg("model.mixer.name=gla", "model.mixer.n_heads=2"), tmp_path, progress=False)
    stamp = json.loads((tmp_path / STAMP).read_text())
    assert stamp == result["versions"]
    assert stamp["python"] == platform.python_version() and stamp["torch"] == torch.__version__
    assert stamp["device"] == "cpu" and stamp["processes"] == 1
    assert stamp["corpus_sha256"] == corpus_fingerprint(load_corpus())
    gla = stamp["defaults"]["model.mixer"]
    # the option the config set, and a default it did not (GLA's gate_low_rank_dim, 16 in its constructor)
    assert gla["name"] == "gla" and gla["options"]["n_heads"] == 2 and gla["options"]["gate_low_rank_dim"] == 16
    assert "d_model" not in gla["options"]  # context, set by the model
    assert stamp["defaults"]["task"]["options"]["seq_len"] == 32


def test_resolved_defaults_cover_each_layer_of_a_hybrid(tiny_cfg):
    defaults = resolved_defaults(tiny_cfg("model.layers=[gla, softmax_attention]"))
    assert defaults["model.layers[0].mixer"]["name"] == "gla"
    assert defaults["model.layers[1].mixer"]["name"] == "softmax_attention"


def test_tensorboard_is_written_when_asked(tmp_path, tiny_cfg):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tiny_cfg("train.log=tensorboard"), tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(result["losses"], rel=1e-5)


def test_tensorboard_missing_is_a_config_error(tmp_path, tiny_cfg, monkeypatch):
    import sys

    from trevo.config import ConfigError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        train(tiny_cfg("train.log=tensorboard"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
