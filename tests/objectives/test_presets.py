"""The Cramming preset (arXiv:2212.14034): what it changes and drops is what the built model has, and
`trevo train --config cramming` trains it."""

from __future__ import annotations

import json

from torch import nn

from tests.helpers import sets
from trevo.cli import main, run_preset_path
from trevo.config import RunConfig
from trevo.train import build


def test_the_cramming_preset_builds_a_biasless_prenorm_geglu_masked_lm():
    cfg = RunConfig.load(run_preset_path("cramming"))
    assert cfg.train.objective.name == "masked_lm" and cfg.task.name == "mlm" and cfg.task.options["seq_len"] == 128
    assert (cfg.train.lr, cfg.train.beta2, cfg.train.weight_decay, cfg.train.grad_clip) == (1e-3, 0.98, 0.01, 0.5)
    _, model = build(cfg.override(["model.d_model=32", "model.n_layers=1", "task.seq_len=16"]))
    linears = [m for m in model.blocks.modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.bias is None for m in linears)  # every bias dropped
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
    assert type(model.blocks[0].channel).registry_entry.name == "geglu"
    assert model.blocks[0].norm1.eps == 1e-12 and model.head.weight is model.embed.weight


def test_trevo_train_runs_the_cramming_preset(tmp_path, capsys):
    tiny = ("model.d_model=32", "model.n_layers=1", "task.seq_len=16", "train.batch_size=2", "train.steps=2",
            "train.eval_every=2", "train.checkpoint_every=2", "train.eval_batches=1", "train.warmup_steps=1")
    assert main(["train", "--quiet", "--config", "cramming", "--out", str(tmp_path), *sets(*tiny)]) == 0
    assert "bpb" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "result.json").read_text())["losses"]) == 2
