"""trevo eval: every token of a file scored once (after the first), against a token-by-token reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import trevo
from trevo.interop.evaluate import evaluate_run, lm_metrics, score_lm


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    cfg = trevo.api.run_config({"model": {"d_model": 32, "n_layers": 1}, "task": {"name": "byte_lm", "seq_len": 16},
                                "train": {"steps": 2, "batch_size": 2, "eval_batches": 1, "warmup_steps": 1}})
    trevo.train(cfg, root / "run")
    return root / "run"


def test_score_lm_is_the_sum_over_windows(run):
    model = trevo.load(run)[0]
    ids = np.frombuffer(b"def f(x):\n    return x + 1\n" * 3, dtype=np.uint8).astype(np.int64)
    totals = score_lm(model, ids, seq_len=16, batch_size=3)
    assert totals["count"] == len(ids) - 1
    expected = 0.0
    for start in range(0, len(ids) - 1, 16):  # each window sees only its own tokens as context
        window = torch.from_numpy(ids[start:start + 17])
        with torch.no_grad():
            logp = torch.log_softmax(model(window[None, :-1])[0], -1)
        expected -= float(logp.gather(1, window[1:, None]).sum())
    assert totals["nll"] == pytest.approx(expected, rel=1e-6)


def test_metrics_of_a_file(run, tmp_path):
    text = tmp_path / "mine.py"
    text.write_text("import os\nprint(os.getcwd())\n" * 20)
    metrics = evaluate_run(run, str(text))
    n = len(text.read_bytes())
    assert metrics["tokens"] == n - 1 and metrics["bytes"] == n
    assert metrics["bpb"] == pytest.approx(metrics["loss"] / math.log(2) * (n - 1) / n)
    assert metrics["ppl"] == pytest.approx(math.exp(metrics["loss"]))


def test_the_test_split_and_the_cli(run, capsys):
    from trevo.cli import main

    assert main(["eval", str(run), "--json", "--max-batches", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tokens"] == 2 * 8 * 16 and 0 < printed["bpb"] < 9
    # the bits are divided by the bytes of the windows scored, not by the whole split's
    assert printed["bpb"] == pytest.approx(printed["bpt"] * printed["tokens"] / (printed["tokens"] + 1))
    assert lm_metrics({"nll": 0.0, "count": 1.0, "correct": 1.0}, None)["ppl"] == 1.0


def test_seq_len_scores_longer_windows_than_trained(tmp_path):
    """Length extrapolation: the same split cut into windows of 64 tokens for a model trained on 16."""
    cfg = trevo.api.run_config({"model": {"d_model": 32, "n_layers": 1, "position": "alibi"},
                                "task": {"name": "byte_lm", "seq_len": 16},
                                "train": {"steps": 1, "batch_size": 2, "eval_batches": 1, "warmup_steps": 0}})
    trevo.train(cfg, tmp_path / "alibi")
    model, _, task = trevo.load(tmp_path / "alibi")
    metrics = evaluate_run(tmp_path / "alibi", max_batches=1, batch_size=2, seq_len=64)
    expected = score_lm(model, task.corpus.split("test").numpy(), seq_len=64, batch_size=2, max_windows=2)
    assert metrics["tokens"] == 2 * 64 == expected["count"]
    assert metrics["loss"] == pytest.approx(expected["nll"] / expected["count"], rel=1e-6)


def test_seq_len_past_a_learned_table_or_not_positive_is_refused(run, tmp_path):
    from trevo.errors import TrevoError

    cfg = trevo.api.run_config({"model": {"d_model": 32, "n_layers": 1, "position": "learned"},
                                "task": {"name": "byte_lm", "seq_len": 16},
                                "train": {"steps": 1, "batch_size": 2, "eval_batches": 1, "warmup_steps": 0}})
    trevo.train(cfg, tmp_path / "learned")
    with pytest.raises(TrevoError, match="learned position table of length 16"):
        evaluate_run(tmp_path / "learned", max_batches=1, seq_len=64)
    with pytest.raises(TrevoError, match="positive"):
        evaluate_run(run, max_batches=1, seq_len=0)
