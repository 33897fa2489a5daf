"""kNN-LM: retrieval is the exact nearest neighbours of a brute-force loop; the interpolation equals
λ·p_kNN + (1 − λ)·p_LM computed entry by entry; λ = 0 is the LM; a datastore holding the evaluated
text itself retrieves the true next byte; the CLI reports both numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.helpers import sets
from trevo.cli import main
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.models import build_model
from trevo.registry import get
from trevo.tasks.base import TaskInfo
from trevo.tools.knn_lm import KNNLM, nearest_neighbours

LM = TaskInfo(vocab_size=256, head="lm", seq_len=16, causal="required", layout=(16,), metric="bpb")


def _lm() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(d_model=16, n_layers=1, mixer=ComponentSpec("softmax_attention")), LM)


def test_nearest_neighbours_are_the_brute_force_ones():
    torch.manual_seed(0)
    queries, keys = torch.randn(7, 5), torch.randn(40, 5)
    dist, idx = nearest_neighbours(queries, keys, 4, block=3)
    for n in range(7):
        all_d = [((queries[n] - keys[m]) ** 2).sum().item() for m in range(40)]
        order = sorted(range(40), key=all_d.__getitem__)[:4]
        assert idx[n].tolist() == order
        torch.testing.assert_close(dist[n], torch.tensor([all_d[m] for m in order]), rtol=1e-4, atol=1e-4)


def test_the_interpolation_entry_by_entry():
    knn = KNNLM(_lm(), k=3, lam=0.4, temperature=2.0)
    store = torch.randint(0, 256, (3, 17))
    knn.add(store[:, :-1], store[:, 1:])
    tokens = torch.randint(0, 256, (1, 16))
    mixed, lm = knn.log_probs(tokens)
    hidden, logits = knn.context_vectors(tokens)
    for t in (0, 7, 15):
        d = ((knn.keys - hidden[0, t]) ** 2).sum(-1)
        near = d.argsort()[:3]
        w = torch.exp(-d[near] / 2.0)
        p_knn = torch.zeros(256)
        for j, m in enumerate(near):
            p_knn[knn.values[m]] += w[j] / w.sum()
        expected = 0.4 * p_knn + 0.6 * torch.softmax(logits[0, t], -1)
        torch.testing.assert_close(mixed[0, t].exp(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(lm, torch.log_softmax(logits, -1))


def test_lambda_zero_is_the_language_model_and_a_self_datastore_retrieves_the_answer():
    model = _lm()
    tokens = torch.tensor([list(b"the quick brown fox jumps")[:17]])
    batch = {"input": tokens[:, :-1], "target": tokens[:, 1:]}
    lm_only = KNNLM(model, k=1, lam=0.0)
    lm_only.add(batch["input"], batch["target"])
    mixed, lm = lm_only.log_probs(batch["input"])
    assert torch.equal(mixed, lm)
    exact = KNNLM(model, k=1, lam=1.0)
    exact.add(batch["input"], batch["target"])
    result = exact.evaluate(iter([batch]))
    assert result["bits_knn_lm"] == pytest.approx(0.0, abs=1e-6)  # each context finds itself
    assert result["bits_lm"] > 1.0 and result["datastore"] == 16


def test_knn_lm_refuses_what_it_cannot_wrap():
    info = TaskInfo(vocab_size=17, head="classify", seq_len=8, n_classes=3, layout=(8,))
    classifier = build_model(ModelConfig(d_model=16, n_layers=1, mixer=ComponentSpec("softmax_attention")), info)
    with pytest.raises(IncompatibleError, match="causal language model"):
        KNNLM(classifier)
    with pytest.raises(TrevoError, match="lam"):
        KNNLM(_lm(), lam=1.5)
    with pytest.raises(TrevoError, match="datastore is empty"):
        KNNLM(_lm()).log_probs(torch.zeros(1, 4, dtype=torch.long))
    assert get("tool", "knn_lm").paper.arxiv == "1911.00172"


def test_the_knn_cli_reports_both_bits(tmp_path, capsys):
    from tests.helpers import TINY

    out = tmp_path / "run"
    assert main(["train", *sets(*TINY), "--quiet", "--out", str(out)]) in (0, None)
    capsys.readouterr()
    main(["knn", str(out), "--store-batches", "2", "--batch-size", "2", "--eval-batches", "1", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["datastore"] == 2 * 2 * 32 and math.isfinite(result["bits_knn_lm"])
