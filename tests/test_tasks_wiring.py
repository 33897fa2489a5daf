"""Every task of the suite trains with the models it allows (two steps, tiny sizes), and the
`trevo tasks` verb lists tasks and shows examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trevo.cli import main
from trevo.config import RunConfig
from trevo.registry import IncompatibleError
from trevo.train import train

TINY = ["model.d_model=16", "model.n_layers=1", "train.batch_size=2", "train.steps=2", "train.eval_every=2",
        "train.checkpoint_every=2", "train.eval_batches=1", "train.warmup_steps=1"]

# task options, and the model.causal settings that apply (LM probes are causal only; MLM bidirectional only)
TASKS = {
    "mqar": ({"seq_len": 32, "n_pairs": 4, "vocab_size": 16}, ["true"]),
    "selective_copy": ({"seq_len": 24, "n_data": 4}, ["true"]),
    "induction": ({"seq_len": 16, "eval_lengths": [24]}, ["true"]),
    "listops": ({"min_length": 4, "max_length": 24, "max_depth": 4}, ["true", "false"]),
    "pathfinder": ({}, ["true", "false"]),
    "digits": ({}, ["true", "false"]),
    "mlm": ({"seq_len": 32}, ["false"]),
}


def _cfg(name: str, options: dict, causal: str) -> RunConfig:
    cfg = RunConfig().override(TINY)
    return cfg.replace({"model.causal": causal, "task": {"name": name, **options}})


@pytest.mark.parametrize("name, causal", [(n, c) for n, (_, cs) in TASKS.items() for c in cs])
def test_task_trains_two_steps(tmp_path, name, causal):
    options = TASKS[name][0]
    result = train(_cfg(name, options, causal), tmp_path, progress=False)
    metric = result["metric"]
    assert math.isfinite(result["final"][metric]) and len(result["losses"]) == 2
    if name == "induction":
        assert {"acc@16", "acc@24"} <= result["final"].keys()


def test_image_file_trains(tmp_path):
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]:
        rec = np.concatenate([rng.integers(0, 10, (4, 1), dtype=np.uint8),
                              rng.integers(0, 256, (4, 3072), dtype=np.uint8)], axis=1)
        rec.tofile(tmp_path / name)
    cfg = _cfg("image_file", {"data_dir": str(tmp_path)}, "false")
    result = train(cfg, tmp_path / "run", progress=False)
    assert 0.0 <= result["final"]["accuracy"] <= 1.0


def test_lm_probes_refuse_a_bidirectional_model(tmp_path):
    with pytest.raises(IncompatibleError, match="causal"):
        train(_cfg("mqar", TASKS["mqar"][0], "false"), tmp_path, progress=False)


def test_tasks_cli(tmp_path, capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TASKS)
    assert main(["tasks", "show", "pathfinder", "--out", str(tmp_path), "-n", "4"]) == 0
    assert (tmp_path / "pathfinder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["tasks", "show", "listops", "--out", str(tmp_path), "-n", "2"]) == 0
    assert "[M" in capsys.readouterr().out and (tmp_path / "listops.txt").is_file()
    assert main(["tasks", "show", "mqar", "--out", str(tmp_path), "--set", "n_pairs=40"]) == 2
    assert "do not fit" in capsys.readouterr().err
