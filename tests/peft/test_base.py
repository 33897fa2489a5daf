"""``train.peft``: a tiny byte-LM run fine-tuned to the induction task by ``trevo train`` (CLI and API). PaFi's
entries outside its mask (recomputed from the pre-trained weights) and every other parameter stay bitwise the
pre-trained ones, and a run killed mid-way resumes to the same weights; HiWi changes only the FFN weights,
its merged model has the original architecture and gives the outputs the run evaluated (no added latency);
a run without init_from, or with a peft that does not merge, is refused before its directory is made."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import TINY, sets, train_until_killed
from trevo.api import load
from trevo.cli import main
from trevo.config import RunConfig
from trevo.errors import IncompatibleError
from trevo.peft.pafi_hiwi import PaFi, block_matrices
from trevo.tasks.induction import Induction
from trevo.train import evaluate, train

INDUCTION = "task={name: induction, seq_len: 32, vocab_size: 256, eval_lengths: [32]}"
FINE_TUNE = [*TINY, INDUCTION, "train.steps=4", "train.checkpoint_every=2", "train.eval_every=4", "train.lr=3e-3"]


def _fine_tune(run_dir, peft: str) -> RunConfig:
    return RunConfig().override([*FINE_TUNE, f"train.init_from={run_dir}", f"train.peft={peft}"])


@pytest.fixture(scope="module")
def pafi_run(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pafi")
    train(_fine_tune(run_dir, "{name: pafi, density: 0.02}"), out, progress=False)
    return out


def test_pafi_changes_only_its_masked_entries(run_dir, pafi_run):
    pretrained, merged = load(run_dir)[0], load(pafi_run)[0]
    masks = dict(zip([n for n, _ in block_matrices(pretrained)],
                     PaFi(load(run_dir)[0], density=0.02).masks, strict=True))  # the mask of the pre-trained weights
    changed = 0
    for (name, before), after in zip(pretrained.state_dict().items(), merged.state_dict().values(), strict=True):
        if name in masks:
            assert torch.equal(after[~masks[name]], before[~masks[name]]), name
            changed += int((after[masks[name]] != before[masks[name]]).sum())
        else:  # embeddings, norms, biases: not PaFi's
            assert torch.equal(after, before), name
    assert changed > 0


def test_a_killed_pafi_run_resumes_to_the_same_weights(run_dir, pafi_run, tmp_path, monkeypatch):
    cfg = _fine_tune(run_dir, "{name: pafi, density: 0.02}")
    train_until_killed(cfg, tmp_path, Induction, 3, monkeypatch)  # after the checkpoint of step 2
    train(cfg, tmp_path, resume=True, progress=False)
    for a, b in zip(load(tmp_path)[0].state_dict().values(), load(pafi_run)[0].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_hiwi_from_the_cli_changes_only_the_ffns_and_merges_into_the_architecture(run_dir, tmp_path):
    out = tmp_path / "hiwi"
    assert main(["train", "--quiet", "--out", str(out),
                 *sets(*FINE_TUNE, f"train.init_from={run_dir}", "train.peft=hiwi")]) == 0
    pretrained, (merged, cfg, task) = load(run_dir)[0], load(out)
    assert cfg.train.peft.name == "hiwi"
    assert merged.state_dict().keys() == pretrained.state_dict().keys()  # no adapter left: the original model
    ffn = {f"{name}.weight" for name, m in pretrained.named_modules()
           if ".channel." in f"{name}." and isinstance(m, torch.nn.Linear)}
    assert ffn
    for name, before in pretrained.state_dict().items():
        assert torch.equal(merged.state_dict()[name], before) != (name in ffn), name  # the FFNs moved, nothing else
    # the merged model gives the outputs the run evaluated with its adapters in place (HiWi adds no latency)
    final = json.loads((out / "result.json").read_text())["final"]
    again = evaluate(merged, task, "val", cfg.train.batch_size, cfg.train.eval_batches)
    assert again == pytest.approx({k: v for k, v in final.items() if k != "step"}, rel=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (["train.peft=hiwi"], "set train.init_from"),
    (["train.peft=meft", "train.init_from=RUN"], "cannot save it"),
])
def test_refused_before_the_run_directory_is_made(run_dir, tmp_path, overrides, message):
    overrides = [o.replace("RUN", str(run_dir)) for o in overrides]
    with pytest.raises(IncompatibleError, match=message):
        train(RunConfig().override([*FINE_TUNE, *overrides]), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
